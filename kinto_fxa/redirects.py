"""Decide whether the login endpoint may send a user (and a token) to a URL.

The tokens Kinto obtains for a web app are appended to the app's ``redirect`` URL: a URL
that fools the check hands a user's token to whoever owns it. So the decision is taken on
the URL *as a browser will read it*, never on the raw string:

- Only printable ASCII from RFC 3986 is accepted: no whitespace, control characters,
  backslashes (browsers read ``\\`` as ``/`` in http(s) URLs), quotes or non-ASCII
  (look-alike hosts must come as punycode ``xn--``). ``%`` must start an escape.
- The scheme is ``http`` or ``https`` and the URL starts with ``<scheme>://``
  (scheme-relative ``//host``, ``https:host`` and ``javascript:`` are refused).
- No userinfo (``https://good.com@evil.com``), an ASCII host name made of non-empty labels
  of letters, digits and ``-`` (no trailing dot), a canonical dotted IPv4 address, or a
  bracketed IPv6 address; a numeric port within 1-65535.
- The fragment is where the token lands: the URL must contain exactly one ``#`` and the
  token is appended after it (``http://app/#`` gives ``http://app/#<token>``, Kinto Admin's
  ``http://app/#/auth/<payload>/`` gives ``http://app/#/auth/<payload>/<token>``). A URL
  without ``#`` is refused: the token would land in the path or querystring, be sent to the
  app's server, written in its access logs and leaked through ``Referer``. Once the host is
  decided on the parsed URL a fragment cannot change where the browser goes, so any
  RFC 3986 fragment is allowed; a second ``#`` is not.

Patterns (``fxa-oauth.webapp.authorized_domains``) are ``host`` or ``host:port``:

- Hosts compare label by label, case-insensitively. ``*`` inside a label matches any run
  of characters within that label (``app-*.example.com``). A leading ``*.`` label matches
  one or more labels: ``*.example.com`` covers ``a.example.com`` and ``a.b.example.com``,
  never ``example.com`` nor ``example.com.evil.com``.
- Without a port only the scheme's default port is allowed; ``host:8080`` allows port
  8080; ``host:*`` any port.
- ``[::1]`` / ``[::1]:*``: IPv6 literals compare as addresses.
- ``*`` alone authorizes every host and port: it logs a warning at startup. An empty list
  authorizes nothing.
"""

import ipaddress
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from urllib.parse import SplitResult, urlsplit

from pyramid.exceptions import ConfigurationError


logger = logging.getLogger(__name__)

SETTING_NAME = "fxa-oauth.webapp.authorized_domains"
MAX_URL_LENGTH = 2048
DEFAULT_PORTS = {"http": 80, "https": 443}

# RFC 3986 characters (unreserved, reserved and ``%``): no space, ``\``, quotes, ``<>``,
# ``{}``, ``|``, ``^``, backtick, controls or non-ASCII.
_URL_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_PATTERN_LABEL = re.compile(r"[a-z0-9*][a-z0-9*-]{0,62}")
_PORT = re.compile(r"[0-9]{1,5}")
_NUMERIC_LABEL = re.compile(r"(?:[0-9]+|0x[0-9a-f]*)")


class UnauthorizedRedirect(ValueError):
    """The redirect URL is malformed, ambiguous or not authorized (the message says why)."""


@dataclass(frozen=True)
class RedirectTarget:
    """Where a browser following the URL would go."""

    scheme: str
    host: str  # Lowercase name, dotted IPv4, or IPv6 without brackets.
    port: int
    is_ipv6: bool = False


@dataclass(frozen=True)
class DomainPattern:
    """One parsed ``authorized_domains`` entry."""

    raw: str
    host: str  # Lowercase glob; ``*`` alone for any host; IPv6 in compressed form.
    port: str | None  # ``None`` (default port only), ``"*"`` or digits.
    is_ipv6: bool = False

    @property
    def matches_any_host(self) -> bool:
        """Whether the pattern lets tokens go to any (or nearly any) host."""
        return set(self.host) <= {"*", "."}

    def matches(self, target: RedirectTarget) -> bool:
        return self._port_matches(target) and self._host_matches(target)

    def _port_matches(self, target: RedirectTarget) -> bool:
        if self.port == "*":
            return True
        wanted = DEFAULT_PORTS[target.scheme] if self.port is None else int(self.port)
        return target.port == wanted

    def _host_matches(self, target: RedirectTarget) -> bool:
        if self.host == "*":
            return True
        if self.is_ipv6 or target.is_ipv6:
            return self.is_ipv6 and target.is_ipv6 and self.host == target.host
        return _labels_match(target.host.split("."), self.host.split("."))


def _labels_match(labels: list[str], pattern: list[str]) -> bool:
    if pattern[0] == "*" and len(pattern) > 1:
        # Wildcard subdomain: one or more labels in front of the fixed suffix.
        suffix = pattern[1:]
        if len(labels) <= len(suffix):
            return False
        return _labels_match(labels[-len(suffix) :], suffix)
    if len(labels) != len(pattern):
        return False
    return all(fnmatchcase(label, glob) for label, glob in zip(labels, pattern, strict=True))


def parse_pattern(raw: str) -> DomainPattern:
    """Parse one ``authorized_domains`` entry.

    :raises ValueError: if it is not ``host`` or ``host:port`` as documented above.
    """
    text = raw.strip().lower()
    if text == "*":
        return DomainPattern(raw=raw, host="*", port="*")
    if text.startswith("["):
        address, bracket, rest = text[1:].partition("]")
        try:
            if not bracket:
                raise ValueError
            host = ipaddress.IPv6Address(address).compressed
        except ValueError:
            raise ValueError(f"invalid IPv6 address in {raw!r}") from None
        port = _parse_pattern_port(raw, rest)
        return DomainPattern(raw=raw, host=host, port=port, is_ipv6=True)
    host, colon, port_text = text.partition(":")
    port = _parse_pattern_port(raw, colon + port_text)
    labels = host.split(".")
    if not all(_PATTERN_LABEL.fullmatch(label) for label in labels):
        raise ValueError(
            f"{raw!r} is not a host pattern (expected labels of letters, digits, - and *, "
            "with an optional :port, no scheme or path)"
        )
    return DomainPattern(raw=raw, host=host, port=port)


def _parse_pattern_port(raw: str, rest: str) -> str | None:
    if rest == "":
        return None
    if not rest.startswith(":"):
        raise ValueError(f"unexpected text after the IPv6 address in {raw!r}")
    port = rest[1:]
    if port == "*":
        return port
    if not _PORT.fullmatch(port) or not 0 < int(port) < 65536:
        raise ValueError(f"invalid port in {raw!r}")
    return port


def parse_patterns(patterns: Iterable[str]) -> tuple[DomainPattern, ...]:
    """Parse every pattern.

    :raises pyramid.exceptions.ConfigurationError: naming the setting and the bad pattern.
    """
    parsed = []
    for raw in patterns:
        try:
            parsed.append(parse_pattern(raw))
        except ValueError as e:
            raise ConfigurationError(f"{SETTING_NAME}: {e}") from None
    return tuple(parsed)


def check_authorized_domains(patterns: Iterable[str]) -> tuple[DomainPattern, ...]:
    """Validate the setting at startup; warn when it lets tokens go to any host.

    :raises pyramid.exceptions.ConfigurationError: on a malformed pattern.
    """
    parsed = parse_patterns(patterns)
    for pattern in parsed:
        if pattern.matches_any_host:
            logger.warning(
                "%s contains %r: access tokens may be sent to ANY web site. "
                "List the web app domains instead.",
                SETTING_NAME,
                pattern.raw,
            )
    return parsed


def parse_redirect(url: str) -> RedirectTarget:
    """Where a browser would go, if ``url`` is unambiguous.

    :raises UnauthorizedRedirect: if the URL is malformed or ambiguous.
    """
    if len(url) > MAX_URL_LENGTH:
        raise UnauthorizedRedirect(f"URL longer than {MAX_URL_LENGTH} characters")
    if not _URL_CHARS.fullmatch(url) or _BAD_ESCAPE.search(url):
        raise UnauthorizedRedirect("URL contains characters that are not allowed")
    try:
        parts = urlsplit(url)
        port = parts.port  # Raises ValueError when not a number in range.
    except ValueError:
        raise UnauthorizedRedirect("malformed URL") from None
    if parts.scheme not in DEFAULT_PORTS or not url.lower().startswith(parts.scheme + "://"):
        raise UnauthorizedRedirect("only http:// and https:// URLs are allowed")
    if "@" in parts.netloc:
        raise UnauthorizedRedirect("user names or passwords are not allowed in the URL")
    _check_fragment(url)
    host, is_ipv6 = _parse_host(parts)
    if port == 0:
        raise UnauthorizedRedirect("invalid port")
    return RedirectTarget(
        scheme=parts.scheme,
        host=host,
        port=DEFAULT_PORTS[parts.scheme] if port is None else port,
        is_ipv6=is_ipv6,
    )


def _check_fragment(url: str) -> None:
    count = url.count("#")
    if count == 0:
        raise UnauthorizedRedirect(
            "the URL must contain a fragment (#), where the token is appended"
        )
    if count > 1:
        raise UnauthorizedRedirect("the URL must contain a single #")


def _parse_host(parts: SplitResult) -> tuple[str, bool]:
    hostname = parts.hostname or ""
    if parts.netloc.startswith("["):
        if "%" in hostname:
            raise UnauthorizedRedirect("IPv6 zone identifiers are not allowed")
        try:
            return ipaddress.IPv6Address(hostname).compressed, True
        except ValueError:
            raise UnauthorizedRedirect("invalid IPv6 address") from None
    labels = hostname.split(".")
    if not all(_LABEL.fullmatch(label) for label in labels):
        raise UnauthorizedRedirect("invalid host name")
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        # Browsers read a host ending in a number as an IPv4 address, in any of its
        # historical forms (``0x7f.1``, ``2130706433``): only the canonical one is allowed.
        try:
            canonical = str(ipaddress.IPv4Address(hostname))
        except ValueError:
            canonical = None
        if canonical != hostname:
            raise UnauthorizedRedirect("invalid IPv4 address")
    return hostname, False


def authorize_redirect(url: str, patterns: Iterable[DomainPattern]) -> RedirectTarget:
    """Check that ``url`` is well-formed and its host matches one of ``patterns``.

    :raises UnauthorizedRedirect: saying why it is refused.
    """
    target = parse_redirect(url)
    if not any(pattern.matches(target) for pattern in patterns):
        raise UnauthorizedRedirect(
            f"{target.scheme}://{_display_host(target)} is not an authorized domain"
        )
    return target


def _display_host(target: RedirectTarget) -> str:
    host = f"[{target.host}]" if target.is_ipv6 else target.host
    if target.port != DEFAULT_PORTS[target.scheme]:
        host += f":{target.port}"
    return host
