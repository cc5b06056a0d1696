"""Parse the ``fxa-oauth.*`` settings once, into a typed, validated object.

Every other module reads :class:`FxASettings` (``registry.fxa_settings``), never the raw
settings dict: a bad value fails at startup with a message naming the setting.
"""

import json
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit

from fxa._utils import scope_matches
from fxa.constants import ENVIRONMENT_URLS
from pyramid.exceptions import ConfigurationError
from pyramid.settings import asbool, aslist

from kinto_fxa.fxa_api import PRODUCTION_ISSUER, PRODUCTION_OAUTH_URI
from kinto_fxa.redirects import DomainPattern, check_authorized_domains


PREFIX = "fxa-oauth."
DEFAULT_CLIENT = "default"
DEFAULT_POLICY_NAME = "fxa"
#: The top-level client's default ``requested_scope`` and ``required_scope``.
DEFAULT_SCOPE = "profile"
DEFAULT_WEBHOOK_ISSUER = "https://accounts.firefox.com/"
#: The ``iss`` of each FxA environment's tokens (its content server), by the host of its
#: OAuth server: ``oauth.accounts.firefox.com``, ``oauth.stage.mozaws.net``.
KNOWN_ISSUERS: dict[str, str] = {
    str(urlsplit(urls["oauth"]).hostname): urls["content"].rstrip("/")
    for urls in ENVIRONMENT_URLS.values()
}
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
POLICY_CLASS_NAME = "FxAOAuthAuthenticationPolicy"

CLIENT_KEYS = (
    "client_id",
    "client_secret",
    "requested_scope",
    "required_scope",
    "redirect_uri",
    "allowed_client_ids",
)
#: Scopes FxA grants to any client that asks: requiring only these lets any FxA relying
#: service replay its users' tokens here, unless ``allowed_client_ids`` restricts them.
OPEN_SCOPES = ("profile", "email", "openid")


@dataclass(frozen=True)
class ClientConfig:
    """One FxA OAuth client this server accepts tokens for.

    ``name`` is ``"default"`` for the top-level ``fxa-oauth.*`` client; tokens routed to
    any other client get the user id ``<uid>-<name>``.
    """

    name: str
    client_id: str | None
    client_secret: str | None
    requested_scope: tuple[str, ...]
    required_scope: tuple[str, ...]
    redirect_uri: str | None = None
    #: FxA client ids whose tokens this config accepts; empty: any client.
    allowed_client_ids: tuple[str, ...] = ()

    @property
    def is_default(self) -> bool:
        return self.name == DEFAULT_CLIENT

    def user_id(self, uid: str) -> str:
        """The (unprefixed) Kinto user id of FxA user ``uid`` using this client."""
        return uid if self.is_default else f"{uid}-{self.name}"

    def accepts(self, scopes: list[str]) -> bool:
        """Whether a token granting ``scopes`` satisfies this client's required scope."""
        return scope_matches(scopes, list(self.required_scope))

    def admits(self, client_id: str) -> bool:
        """Whether tokens issued to FxA client ``client_id`` may be routed here."""
        return not self.allowed_client_ids or client_id in self.allowed_client_ids

    @property
    def open_to_any_client(self) -> bool:
        """Whether any FxA client's token can satisfy this config (see :data:`OPEN_SCOPES`)."""
        if self.allowed_client_ids:
            return False
        return all(scope.split(":")[0] in OPEN_SCOPES for scope in self.required_scope)


# Parsers of the scalar settings: ``(raw value, full setting name) -> value``.


def _whole(minimum: int = 0) -> Callable[[Any, str], int]:
    def parse(raw: Any, name: str) -> int:
        try:
            value = int(str(raw).strip())
        except (TypeError, ValueError):
            raise ConfigurationError(f"{name} must be a whole number, got {raw!r}") from None
        if value < minimum:
            raise ConfigurationError(f"{name} must be >= {minimum}, got {value}")
        return value

    return parse


def _positive(raw: Any, name: str) -> float:
    try:
        value = float(str(raw).strip())
    except (TypeError, ValueError):
        raise ConfigurationError(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise ConfigurationError(f"{name} must be > 0, got {value}")
    return value


def _flag(raw: Any, name: str) -> bool:
    return asbool(raw)


def _words(raw: Any, name: str) -> tuple[str, ...]:
    return tuple(aslist(raw or ""))


def _as_url(value: Any, name: str) -> str | None:
    if value is None or str(value).strip() == "":
        return None
    url = str(value).strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"{name} must be an http(s) URL, got {url!r}")
    return url


def _as_str(value: Any, name: str = "") -> str | None:
    if value is None:
        return None
    value = str(value).strip()
    return value or None


def _parse_jwks(raw: Any, name: str) -> tuple[dict[str, Any], ...] | None:
    if raw is None or str(raw).strip() == "":
        return None
    try:
        parsed = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError as e:
        raise ConfigurationError(f"{name} must be JSON ({e})") from None
    keys = parsed.get("keys") if isinstance(parsed, dict) else parsed
    if not isinstance(keys, list) or not all(isinstance(k, dict) for k in keys):
        raise ConfigurationError(f"{name} must be a JWKS object or a list of JWK objects")
    from jwt.algorithms import RSAAlgorithm  # Fail now rather than on the first token.

    for key in keys:
        try:
            RSAAlgorithm.from_jwk(json.dumps(key))
        except Exception as e:
            raise ConfigurationError(f"{name} holds an unusable key ({e})") from None
    return tuple(keys)


def setting(key: str, parse: Callable[[Any, str], Any], default: Any) -> Any:
    """A field of :class:`FxASettings` read from ``fxa-oauth.<key>``: its one declaration
    (name, parser, default); :func:`parse_settings` reads every such field."""
    return field(
        default=parse(default, PREFIX + key),
        metadata={"key": key, "parse": parse, "default": default},
    )


@dataclass(frozen=True)
class FxASettings:
    """Every ``fxa-oauth.*`` setting, parsed. The simple ones are declared once, below,
    with :func:`setting`; the clients and what follows from other settings are derived."""

    default_client: ClientConfig
    extra_clients: tuple[ClientConfig, ...] = ()
    #: The multiauth names of the FxA policies (prefixes of user ids).
    policy_names: tuple[str, ...] = (DEFAULT_POLICY_NAME,)
    userid_hmac_secret: str = ""

    oauth_uri: str | None = setting("oauth_uri", _as_url, None)
    cache_ttl_seconds: int = setting("cache_ttl_seconds", _whole(), 300)
    negative_cache_ttl_seconds: int = setting("negative_cache_ttl_seconds", _whole(), 60)
    local_cache_ttl_seconds: int = setting("local_cache_ttl_seconds", _whole(), 10)
    local_cache_size: int = setting("local_cache_size", _whole(), 10000)
    state_ttl_seconds: int = setting("state.ttl_seconds", _whole(minimum=1), 3600)
    heartbeat_timeout_seconds: float = setting("heartbeat_timeout_seconds", _positive, 3)
    request_timeout_seconds: float = setting("request_timeout_seconds", _positive, 5)
    jwks: tuple[dict[str, Any], ...] | None = setting("jwks", _parse_jwks, None)
    jwks_refresh_interval_seconds: int = setting("jwks_refresh_interval_seconds", _whole(), 60)
    #: Keys fetched that long ago are refreshed in the background; 0: never.
    jwks_max_age_seconds: int = setting("jwks_max_age_seconds", _whole(), 300)
    #: ``fxa-oauth.issuer`` as configured (see :attr:`issuer`).
    configured_issuer: str | None = setting("issuer", _as_url, None)
    relier_enabled: bool = setting("relier.enabled", _flag, True)
    accept_top_level_tokens: bool = setting("accept_top_level_tokens", _flag, False)
    authorized_domains: tuple[str, ...] = setting("webapp.authorized_domains", _words, "")
    webhook_enabled: bool = setting("webhook.enabled", _flag, False)
    #: ``fxa-oauth.webhook.issuer`` as configured (see :attr:`webhook_issuer`).
    configured_webhook_issuer: str | None = setting("webhook.issuer", _as_str, None)

    #: The ``authorized_domains`` patterns, parsed once (none when the relier is off).
    authorized_patterns: tuple[DomainPattern, ...] = field(default=(), compare=False)
    clients_by_name: dict[str, ClientConfig] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        by_name = {c.name: c for c in self.clients}
        object.__setattr__(self, "clients_by_name", by_name)
        if self.relier_enabled and not self.authorized_patterns:
            object.__setattr__(
                self, "authorized_patterns", check_authorized_domains(self.authorized_domains)
            )

    @property
    def oauth_server_url(self) -> str:
        """The FxA OAuth server to talk to: ``oauth_uri``, else FxA production's."""
        return self.oauth_uri or PRODUCTION_OAUTH_URI

    @property
    def issuer(self) -> str:
        """The ``iss`` JWT access tokens must carry (compared ignoring one trailing slash):
        ``fxa-oauth.issuer``, else that of the FxA environment ``oauth_uri`` names, else
        FxA production's (another FxA's tokens are then refused until it is set)."""
        if self.configured_issuer is not None:
            return self.configured_issuer
        host = urlsplit(self.oauth_uri).hostname if self.oauth_uri is not None else None
        return KNOWN_ISSUERS.get(str(host), PRODUCTION_ISSUER)

    @property
    def issuer_is_default(self) -> bool:
        """Whether :attr:`issuer` was derived (``fxa-oauth.issuer`` unset), not set."""
        return self.configured_issuer is None

    @property
    def webhook_issuer(self) -> str:
        """``fxa-oauth.webhook.issuer``, by default :attr:`issuer` (FxA's Security Event
        Tokens end it with ``/``)."""
        if self.configured_webhook_issuer is not None:
            return self.configured_webhook_issuer
        return self.issuer.rstrip("/") + "/"

    @property
    def clients(self) -> tuple[ClientConfig, ...]:
        """Every client, the default one first."""
        return (self.default_client, *self.extra_clients)

    @property
    def client_ids(self) -> set[str]:
        return {c.client_id for c in self.clients if c.client_id}

    @property
    def routed_clients(self) -> tuple[ClientConfig, ...]:
        """The clients tokens are routed among.

        As in kinto-fxa 2.x: the named ``clients.<name>`` when there are any, else the
        top-level one. ``accept_top_level_tokens`` adds the top-level one to named clients.
        """
        if not self.extra_clients:
            return (self.default_client,)
        if self.accept_top_level_tokens:
            return self.clients
        return self.extra_clients

    @property
    def shares_person_principal(self) -> bool:
        """Whether a token of a named client also gets ``<policy>:<uid>`` as principal.

        Not when top-level tokens are accepted too: ``<policy>:<uid>`` is then the user id
        of the top-level app, and an app's token must not act as that user.
        """
        return not self.accept_top_level_tokens

    @property
    def revocation_bound_seconds(self) -> int:
        """The longest a process may go on accepting a token revoked elsewhere."""
        return min(self.local_cache_ttl_seconds, self.cache_ttl_seconds)

    def route(self, scopes: list[str]) -> list[ClientConfig]:
        """The routed clients whose required scope a token granting ``scopes`` satisfies."""
        return [c for c in self.routed_clients if c.accepts(scopes)]

    def exposure_warnings(self) -> list[str]:
        """What in this configuration lets tokens issued to other services in."""
        return [
            f"Client {c.name!r} requires only {' '.join(c.required_scope)!r}, which FxA grants "
            "to every client: tokens issued to any FxA relying service are accepted. Set "
            f"{PREFIX}{'' if c.is_default else f'clients.{c.name}.'}allowed_client_ids to "
            "the client ids of your apps."
            for c in self.routed_clients
            if c.open_to_any_client
        ]

    def issuer_warnings(self) -> list[str]:
        """When the expected issuer is a guess: tokens of another FxA are then refused."""
        if not self.issuer_is_default or self.oauth_uri is None:
            return []
        host = urlsplit(self.oauth_uri).hostname
        if host in KNOWN_ISSUERS or host in LOOPBACK_HOSTS:
            return []  # Loopback: the local FxA server, which imitates production.
        return [
            f"{PREFIX}issuer is not set and {PREFIX}oauth_uri ({self.oauth_uri}) is not a "
            f"known FxA environment: JWT access tokens must come from {self.issuer!r} (FxA "
            f"production's issuer), those of another FxA are refused. Set {PREFIX}issuer "
            "to the iss of your FxA's tokens."
        ]

    def user_ids(self, uid: str) -> list[str]:
        """Every prefixed Kinto user id FxA user ``uid`` can have on this server."""
        return [f"{policy}:{c.user_id(uid)}" for policy in self.policy_names for c in self.clients]


def _client(
    settings: Mapping[str, Any], prefix: str, name: str, default_scope: str = ""
) -> ClientConfig:
    def get(key: str, default: Any = None) -> Any:
        return settings.get(prefix + key, default)

    requested = tuple(aslist(get("requested_scope", default_scope) or ""))
    required = tuple(aslist(get("required_scope", default_scope) or ""))
    if not required:
        raise ConfigurationError(f"{PREFIX}{prefix}required_scope must not be empty")
    return ClientConfig(
        name=name,
        client_id=_as_str(get("client_id")),
        client_secret=_as_str(get("client_secret")),
        requested_scope=requested or required,
        required_scope=required,
        redirect_uri=_as_url(get("redirect_uri"), f"{PREFIX}{prefix}redirect_uri"),
        allowed_client_ids=tuple(aslist(get("allowed_client_ids", "") or "")),
    )


def _extra_clients(settings: Mapping[str, Any]) -> tuple[ClientConfig, ...]:
    """The ``clients.<name>.*`` configs (``settings`` keys have no ``fxa-oauth.`` prefix)."""
    names: set[str] = set()
    for key in settings:
        if not key.startswith("clients."):
            continue
        name, _, option = key[len("clients.") :].partition(".")
        if option not in CLIENT_KEYS:
            raise ConfigurationError(
                f"Unknown setting {PREFIX}{key!s} (expected one of: {', '.join(CLIENT_KEYS)})"
            )
        if not name or not name.replace("_", "").replace("-", "").isalnum():
            raise ConfigurationError(
                f"Invalid client name in {PREFIX}{key} (use letters, digits, - or _)"
            )
        if name == DEFAULT_CLIENT:
            raise ConfigurationError(f"{PREFIX}{key}: the client name 'default' is reserved")
        names.add(name)
    return tuple(_client(settings, f"clients.{name}.", name) for name in sorted(names))


def _check_routing(settings: FxASettings) -> None:
    """Refuse configurations where some token could be routed to two clients."""
    clients = settings.routed_clients
    for i, a in enumerate(clients):
        for b in clients[i + 1 :]:
            if set(a.required_scope) == set(b.required_scope):
                raise ConfigurationError(
                    f"Clients {a.name!r} and {b.name!r} require the same scope "
                    f"{' '.join(a.required_scope)!r}: tokens could not be routed"
                )
    if settings.accept_top_level_tokens and settings.extra_clients:
        top = settings.default_client
        for named in settings.extra_clients:
            # A token granting a named client's scopes would also satisfy the top-level one
            # (or the reverse): it could be read as either user.
            if named.accepts(list(top.required_scope)) or top.accepts(list(named.required_scope)):
                raise ConfigurationError(
                    f"{PREFIX}accept_top_level_tokens: the top-level required scope "
                    f"{' '.join(top.required_scope)!r} and client {named.name!r}'s "
                    f"{' '.join(named.required_scope)!r} imply each other, so tokens could "
                    "not be routed: require disjoint scopes"
                )


def _policy_names(settings: Mapping[str, Any]) -> tuple[str, ...]:
    names = tuple(
        name
        for name in aslist(settings.get("multiauth.policies", ""))
        if str(settings.get(f"multiauth.policy.{name}.use", "")).endswith(POLICY_CLASS_NAME)
    )
    return names or (DEFAULT_POLICY_NAME,)


def parse_settings(raw_settings: Mapping[str, Any]) -> FxASettings:
    """Read and validate every ``fxa-oauth.*`` setting.

    :raises pyramid.exceptions.ConfigurationError: naming the bad setting.
    """
    settings = {k[len(PREFIX) :]: v for k, v in raw_settings.items() if k.startswith(PREFIX)}

    if "scope" in settings:
        warnings.warn(
            '"fxa-oauth.scope" is deprecated: use "fxa-oauth.requested_scope" and '
            '"fxa-oauth.required_scope" instead.',
            DeprecationWarning,
            stacklevel=2,
        )
        settings["requested_scope"] = settings["required_scope"] = settings["scope"]

    values = {
        f.name: f.metadata["parse"](
            settings.get(f.metadata["key"], f.metadata["default"]), PREFIX + f.metadata["key"]
        )
        for f in fields(FxASettings)
        if "key" in f.metadata
    }
    parsed = FxASettings(
        default_client=_client(settings, "", DEFAULT_CLIENT, DEFAULT_SCOPE),
        extra_clients=_extra_clients(settings),
        policy_names=_policy_names(raw_settings),
        userid_hmac_secret=str(raw_settings.get("userid_hmac_secret", "") or ""),
        **values,
    )
    _check_routing(parsed)
    return parsed
