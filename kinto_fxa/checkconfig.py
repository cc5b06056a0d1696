"""``kinto-fxa check-config <ini>``: what a Kinto ini file makes kinto-fxa do, before deploying.

The ``[app:main]`` settings are read as Kinto reads them (its defaults, ``kinto.`` prefixes,
environment variables) and parsed by :func:`kinto_fxa.settings.parse_settings`, the code
the server runs; nothing is started and no database is opened. The report says:

- the clients, and which token becomes which Kinto user id;
- where verifications, login states and revocation cutoffs are kept, for how long, and the
  revocation bound that follows;
- warnings for what lets other services' tokens in or sends users' tokens where they
  should not go;
- with ``online=True``, whether FxA answers (heartbeat, JWKS), with timings.

Exit status (:attr:`Report.status`): 0 fine, 1 warnings, 2 errors (unreadable ini, invalid
settings, FxA unreachable with ``--online``), so that it can gate a deploy.
"""

import ipaddress
import json
import os
import textwrap
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit

import requests
from fxa import errors as fxa_errors
from pyramid.exceptions import ConfigurationError
from pyramid.settings import aslist

from kinto_fxa.authentication import MEMORY_CACHE_MODULE
from kinto_fxa.fxa_api import PRODUCTION_OAUTH_URI, build_api_client, heartbeat_url
from kinto_fxa.redirects import SETTING_NAME as DOMAINS_SETTING
from kinto_fxa.redirects import DomainPattern, parse_patterns
from kinto_fxa.settings import PREFIX, ClientConfig, FxASettings, parse_settings


OK, WARNINGS, ERRORS = 0, 1, 2
MEMORY_STORAGE_MODULE = "kinto.core.storage.memory"
LOOPBACK_NAMES = ("localhost",)
WIDTH = 100


@dataclass
class Report:
    """What ``check-config`` prints, by section, then warnings and errors."""

    ini: str
    sections: list[tuple[str, list[str]]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: The parsed settings, as the server would hold them (``None`` if they are invalid).
    settings: FxASettings | None = None

    def section(self, title: str, lines: list[str]) -> None:
        self.sections.append((title, lines))

    @property
    def status(self) -> int:
        if self.errors:
            return ERRORS
        return WARNINGS if self.warnings else OK

    def render(self) -> str:
        out = [f"kinto-fxa check-config {self.ini}"]
        for title, lines in self.sections:
            out += ["", title]
            out += [_wrap(line, "  ", "        ") for line in lines]
        for title, items, mark in (
            ("Warnings", self.warnings, "WARNING"),
            ("Errors", self.errors, "ERROR"),
        ):
            if items:
                out += ["", f"{title} ({len(items)})"]
                out += [_wrap(f"{mark}: {item}", "  ", "    ") for item in items]
        verdict = {
            OK: "OK",
            WARNINGS: f"{len(self.warnings)} warning(s)",
            ERRORS: f"{len(self.errors)} error(s)",
        }[self.status]
        out += ["", f"Result: {verdict} (exit status {self.status})"]
        return "\n".join(out) + "\n"


# --- Reading the settings as the server does --------------------------------------------


def read_app_settings(ini: str) -> dict[str, Any]:
    """The ``[app:main]`` settings of ``ini`` (with ``[DEFAULT]`` and ``%(here)s``).

    :raises ValueError: when the file cannot be read or parsed.
    """
    if not os.path.isfile(ini):
        raise ValueError(f"Configuration file not found: {ini}")
    from pyramid.paster import get_appsettings

    try:
        return dict(get_appsettings(ini, name="main"))
    except Exception as e:
        raise ValueError(f"Cannot read {ini}: {e.__class__.__name__}: {e}") from None


def server_settings(app_settings: Mapping[str, Any]) -> dict[str, Any]:
    """The settings a Kinto started on ``app_settings`` works with: Kinto's defaults filled
    in, ``kinto.`` prefixes removed, environment variables applied, values coerced, by
    Kinto's own ``load_default_settings`` (no backend is created).

    :raises ValueError: for settings Kinto refuses (a key set with and without prefix).
    """
    from kinto import DEFAULT_SETTINGS as KINTO_DEFAULTS
    from kinto.core import DEFAULT_SETTINGS as CORE_DEFAULTS
    from kinto.core.initialization import load_default_settings

    settings = dict(app_settings)
    settings.pop("kinto.settings_prefix", None)
    settings["settings_prefix"] = "kinto"  # As ``kinto.main`` forces it.
    # What ``load_default_settings`` uses of a Configurator: a real one would run the
    # ``pyramid.includes`` of the file.
    load_default_settings(
        cast(Any, _SettingsHolder(settings)), {**CORE_DEFAULTS, **KINTO_DEFAULTS}
    )
    return settings


class _SettingsHolder:
    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = settings

    def get_settings(self) -> dict[str, Any]:
        return self.settings

    def add_settings(self, settings: Mapping[str, Any]) -> None:
        self.settings.update(settings)


# --- The report ---------------------------------------------------------------------------


def check(ini: str, online: bool = False) -> Report:
    """Check ``ini``; with ``online``, also reach FxA."""
    report = Report(ini)
    try:
        settings = server_settings(read_app_settings(ini))
    except ValueError as e:
        report.errors.append(str(e))
        return report

    includes = aslist(settings.get("includes") or "")
    if "kinto_fxa" in aslist(settings.get("pyramid.includes") or ""):
        report.errors.append(
            "kinto_fxa is in pyramid.includes: the server refuses to start. "
            "List it in kinto.includes."
        )
    elif "kinto_fxa" not in includes:
        report.errors.append(f"kinto_fxa is not in the kinto.includes setting of {ini}")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fxa = parse_settings(settings)
        if fxa.relier_enabled:
            patterns = parse_patterns(fxa.authorized_domains)
    except ConfigurationError as e:
        report.errors.append(f"Invalid setting: {e}")
        return report
    report.warnings += [str(w.message) for w in caught]
    report.settings = fxa

    _server_section(report, fxa, settings)
    _clients_section(report, fxa)
    _routing_section(report, fxa)
    _caches_section(report, fxa, settings)
    _endpoints_section(report, fxa, settings)
    _policy_warnings(report, fxa, settings)
    report.warnings += fxa.exposure_warnings()
    if fxa.relier_enabled:
        _relier_warnings(report, fxa, list(patterns))
    if online:
        _online_section(report, fxa)
    return report


def _server_section(report: Report, fxa: FxASettings, settings: Mapping[str, Any]) -> None:
    if fxa.oauth_uri is None:
        lines = [
            f"oauth_uri: not set: FxA production ({PRODUCTION_OAUTH_URI}); the oauth "
            "heartbeat reports null"
        ]
    else:
        lines = [f"oauth_uri: {fxa.oauth_uri} (heartbeat: {heartbeat_url(fxa.oauth_uri)})"]
    if fxa.jwks is not None:
        kids = ", ".join(str(k.get("kid")) for k in fxa.jwks)
        lines.append(f"JWKS: static, {len(fxa.jwks)} key(s) ({kids}); FxA's /jwks is never read")
    else:
        lines.append(
            "JWKS: fetched from FxA on the first JWT, refetched for an unknown key id at "
            f"most every {fxa.jwks_refresh_interval_seconds} s"
        )
    lines.append(
        f"timeouts: {_seconds(fxa.request_timeout_seconds)} per call to FxA (no retries), "
        f"{_seconds(fxa.heartbeat_timeout_seconds)} for the heartbeat"
    )
    report.section("FxA", lines)


def _clients_section(report: Report, fxa: FxASettings) -> None:
    lines = []
    for client in fxa.clients:
        name = (
            "default (fxa-oauth.*)" if client.is_default else f"{client.name} ({_prefix(client)}*)"
        )
        lines.append(name)
        lines.append(f"    client_id: {client.client_id or '(none)'}")
        lines.append(f"    client_secret: {'set' if client.client_secret else '(none)'}")
        lines.append(f"    requested_scope: {' '.join(client.requested_scope)}")
        lines.append(f"    required_scope: {' '.join(client.required_scope)}")
        lines.append(
            f"    redirect_uri: {client.redirect_uri or '(none: FxA uses the registered one)'}"
        )
        allowed = " ".join(client.allowed_client_ids) or "any FxA client"
        lines.append(f"    tokens issued to: {allowed}")
    report.section("Clients", lines)


def _routing_section(report: Report, fxa: FxASettings) -> None:
    policy = fxa.policy_names[0]
    routed = fxa.routed_clients
    if fxa.extra_clients and not fxa.accept_top_level_tokens:
        lines = [
            "Named clients exist: tokens are routed among them only (as in kinto-fxa 2.x); "
            "the top-level required_scope does not admit tokens."
        ]
    elif fxa.extra_clients:
        lines = ["accept_top_level_tokens: tokens are routed among every client."]
    else:
        lines = ["One client: every token is checked against its required scope."]
    for client in routed:
        user = f"{policy}:{client.user_id('<uid>')}"
        extra = ""
        if not client.is_default and fxa.shares_person_principal:
            extra = f" (also principal {policy}:<uid>)"
        issued = (
            f", issued to {' or '.join(client.allowed_client_ids)}"
            if client.allowed_client_ids
            else ""
        )
        lines.append(
            f"token granting {' '.join(client.required_scope)!r}{issued} -> {user}{extra}"
        )
    lines.append("any other token -> refused (401)")
    if len(fxa.policy_names) > 1:
        lines.append(f"policies: {', '.join(fxa.policy_names)} (user ids prefixed by each)")
    report.section("Token routing", lines)


def _caches_section(report: Report, fxa: FxASettings, settings: Mapping[str, Any]) -> None:
    cache_backend = str(settings.get("cache_backend") or "")
    storage_backend = str(settings.get("storage_backend") or "")
    bound = fxa.revocation_bound_seconds
    lines = [f"Kinto cache: {cache_backend or '(none)'}; Kinto storage: {storage_backend}"]
    if cache_backend == MEMORY_CACHE_MODULE or not cache_backend:
        lines.append(
            f"verifications: in-process only, {fxa.cache_ttl_seconds} s (cache_ttl_seconds), "
            f"{fxa.local_cache_size} tokens at most; Kinto's memory cache is not used for them"
        )
    else:
        lines.append(
            f"verifications: in-process {bound} s (min(local_cache_ttl_seconds, "
            f"cache_ttl_seconds)), {fxa.local_cache_size} tokens at most; then, opaque tokens "
            f"only, in the Kinto cache {fxa.cache_ttl_seconds} s (cache_ttl_seconds); JWTs "
            "are checked locally"
        )
    lines.append("never past a token's expiry")
    lines.append(f"refused tokens: remembered {fxa.negative_cache_ttl_seconds} s")
    if fxa.relier_enabled:
        lines.append(f"login states: Kinto cache, {fxa.state_ttl_seconds} s (state.ttl_seconds)")
    lines.append("revocation cutoffs: Kinto storage (never evicted)")
    if storage_backend == MEMORY_STORAGE_MODULE:
        lines.append(
            "revocation bound: immediate, in this one process (memory storage is not shared: "
            "run one process only)"
        )
    else:
        lines.append(
            f"revocation bound: {bound} s: after a password change, reset or deletion, "
            "the process handling it refuses older tokens at once, every other process "
            f"sharing the storage within {bound} s"
        )
    if (cache_backend == MEMORY_CACHE_MODULE or not cache_backend) and fxa.relier_enabled:
        lines.append("with the memory cache, a login's two steps must reach the same process")
    report.section("Caches and revocation", lines)


def _endpoints_section(report: Report, fxa: FxASettings, settings: Mapping[str, Any]) -> None:
    lines = ["GET /v1/fxa-oauth/params"]
    if fxa.relier_enabled:
        domains = " ".join(fxa.authorized_domains) or "(none: every redirect is refused)"
        lines.append(
            f"GET /v1/fxa-oauth/login, /v1/fxa-oauth/token; authorized domains: {domains}"
        )
    else:
        lines.append("login and token endpoints: disabled (fxa-oauth.relier.enabled = false)")
    if fxa.webhook_enabled:
        lines.append(f"POST /v1/fxa-oauth/events (webhook), issuer {fxa.webhook_issuer}")
    elif settings.get("storage_backend") == MEMORY_STORAGE_MODULE:
        lines.append(
            "webhook: disabled, and process-account-events would apply events to a memory "
            "storage of its own: no account event reaches this server"
        )
    else:
        lines.append("webhook: disabled (account events through process-account-events only)")
    lines.append("heartbeat: oauth in /v1/__heartbeat__")
    report.section("Endpoints", lines)


def _policy_warnings(report: Report, fxa: FxASettings, settings: Mapping[str, Any]) -> None:
    policies = aslist(settings.get("multiauth.policies") or "")
    if not any(
        str(settings.get(f"multiauth.policy.{name}.use", "")).endswith(
            "FxAOAuthAuthenticationPolicy"
        )
        for name in policies
    ):
        report.warnings.append(
            "No multiauth policy uses kinto_fxa.authentication.FxAOAuthAuthenticationPolicy: "
            "FxA tokens are not accepted. Set multiauth.policies = fxa and "
            "multiauth.policy.fxa.use = kinto_fxa.authentication.FxAOAuthAuthenticationPolicy."
        )
    for name, url in (
        ("oauth_uri", fxa.oauth_uri),
        *((f"{_prefix(c)}redirect_uri", c.redirect_uri) for c in fxa.clients),
    ):
        if url is not None and _plain_http(url):
            report.warnings.append(
                f"{PREFIX}{name} is plain http ({url}): tokens or codes cross the network "
                "unencrypted. Use https."
            )


def _relier_warnings(report: Report, fxa: FxASettings, patterns: list[DomainPattern]) -> None:
    for pattern in patterns:
        if pattern.matches_any_host:
            report.warnings.append(
                f"{DOMAINS_SETTING} contains {pattern.raw!r}: the login endpoint sends access "
                "tokens to ANY web site that asks. List your web apps' hosts instead."
            )
        elif pattern.port in ("80", "*") and not _loopback(pattern.host):
            report.warnings.append(
                f"{DOMAINS_SETTING} contains {pattern.raw!r}: tokens may be sent to plain-http "
                f"pages there (port {pattern.port}), readable on the network. Authorize the "
                "https host only."
            )
    default = fxa.default_client
    if default.client_id is None:
        report.warnings.append(
            "The relier is on but fxa-oauth.client_id is not set: /v1/fxa-oauth/login "
            "answers 503. Set it, or fxa-oauth.relier.enabled = false."
        )
    for client in fxa.clients:
        if client.client_id is not None and client.client_secret is None:
            query = "" if client.is_default else f"?client={client.name}"
            report.warnings.append(
                f"Client {client.name!r} has no {_prefix(client)}client_secret while the relier "
                f"is on: /v1/fxa-oauth/login{query} trades codes as a public client (PKCE "
                "only), which FxA refuses for a confidential client. Set the secret, or "
                "check that FxA registered the client as public."
            )


# --- Online ---------------------------------------------------------------------------------


def _online_section(report: Report, fxa: FxASettings) -> None:
    oauth_uri = fxa.oauth_uri or PRODUCTION_OAUTH_URI
    lines = []
    url = heartbeat_url(oauth_uri)
    started = time.monotonic()
    try:
        response = requests.get(url, timeout=fxa.heartbeat_timeout_seconds)
    except requests.RequestException as e:
        report.errors.append(
            f"FxA heartbeat {url} unreachable after {_elapsed(started)}: {_why(e)}"
        )
        lines.append(f"heartbeat {url}: unreachable ({_elapsed(started)})")
    else:
        lines.append(f"heartbeat {url}: {response.status_code} in {_elapsed(started)}")
        if not response.ok:
            report.errors.append(f"FxA heartbeat {url} answered {response.status_code}")

    apiclient = build_api_client(oauth_uri, fxa.request_timeout_seconds)
    jwks_url = apiclient.server_url + "/jwks"
    started = time.monotonic()
    try:
        body = apiclient.get("/jwks")
        kids = _usable_kids(body)
    except (requests.RequestException, fxa_errors.Error, ValueError) as e:
        report.errors.append(f"FxA JWKS {jwks_url} unusable after {_elapsed(started)}: {_why(e)}")
        lines.append(f"JWKS {jwks_url}: failed ({_elapsed(started)})")
    else:
        lines.append(
            f"JWKS {jwks_url}: {len(kids)} key(s) ({', '.join(kids)}) in {_elapsed(started)}"
        )
        if fxa.jwks is not None:
            static = {k.get("kid") for k in fxa.jwks}
            missing = [kid for kid in kids if kid not in static]
            if missing:
                report.warnings.append(
                    f"{PREFIX}jwks lacks key(s) FxA publishes ({', '.join(missing)}): tokens "
                    "signed with them are refused."
                )
    finally:
        apiclient._session.close()
    report.section("FxA, online", lines)


def _usable_kids(body: Any) -> list[str]:
    """The key ids of the RSA keys in a JWKS answer.

    :raises ValueError: when the answer holds none.
    """
    from jwt.algorithms import RSAAlgorithm

    keys = body.get("keys") if isinstance(body, dict) else None
    if not isinstance(keys, list):
        raise ValueError("the answer is not a JWKS (no keys list)")
    kids = []
    for key in keys:
        try:
            RSAAlgorithm.from_jwk(json.dumps(key))
        except Exception:
            continue
        if isinstance(key, dict) and isinstance(key.get("kid"), str):
            kids.append(key["kid"])
    if not kids:
        raise ValueError("no usable RSA key with a kid")
    return kids


# --- Helpers --------------------------------------------------------------------------------


def _wrap(text: str, indent: str, subsequent: str) -> str:
    """``text`` on lines of at most :data:`WIDTH` columns (a long URL stays whole)."""
    return textwrap.fill(
        text,
        WIDTH,
        initial_indent=indent,
        subsequent_indent=subsequent,
        break_long_words=False,
        break_on_hyphens=False,
    )


def _prefix(client: ClientConfig) -> str:
    return PREFIX if client.is_default else f"{PREFIX}clients.{client.name}."


def _seconds(value: float) -> str:
    return f"{value:g} s"


def _elapsed(started: float) -> str:
    return f"{(time.monotonic() - started) * 1000:.0f} ms"


def _why(error: Exception) -> str:
    return f"{error.__class__.__name__}: {error}"


def _loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _plain_http(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "http" and not _loopback(parts.hostname or "")
