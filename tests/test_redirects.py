"""Redirect URL validation (``fxa-oauth.webapp.authorized_domains``), unit and endpoint."""

import logging
from collections.abc import Callable
from typing import Any

import pytest
import webtest
from pyramid.exceptions import ConfigurationError

from kinto_fxa.redirects import (
    MAX_URL_LENGTH,
    RedirectTarget,
    UnauthorizedRedirect,
    authorize_redirect,
    check_authorized_domains,
    parse_pattern,
    parse_patterns,
)
from kinto_fxa.settings import parse_settings
from tests.conftest import kinto_settings


DOMAINS = ("good.com", "*.example.com", "localhost:8080", "[::1]:*", "127.0.0.1:8000")

#: Values a hostile page could pass as ``redirect``: none may be accepted with ``DOMAINS``.
HOSTILE_REDIRECTS = [
    "https://good.com@evil.com/#",  # userinfo: the browser goes to evil.com
    "https://good.com:443@evil.com/#",
    "https://a.example.com@evil.com/#",
    "http://localhost:8080@evil.com/#",
    "https://evil.com\\@good.com/#",  # browsers read \ as /: evil.com
    "https://evil.com\\.good.com/#",
    "https:\\\\evil.com/#",
    "https://good.com.evil.com/#",  # look-alike hosts
    "https://evilgood.com/#",
    "https://good.com-evil.com/#",
    "https://good.co/#",
    "https://example.com.evil.com/#",
    "https://a.example.com.evil.com/#",
    "https://example.com/#",  # *.example.com is not example.com
    "https://evil.com/good.com/#",
    "https://evil.com/?good.com#",
    "https://evil.com#@good.com",
    "https://evil.com#.good.com",
    "//good.com/#",  # scheme-relative
    "///good.com/#",
    "https:good.com/#",  # no authority: browsers would fix it up
    "https:/good.com/#",
    "javascript:alert(document.cookie)//good.com/#",
    "JavaScript://good.com/%0Aalert(1)#",
    "data:text/html,<script>alert(1)</script>#",
    "ftp://good.com/#",
    "file:///etc/passwd#",
    "good.com/#",
    "https://good.com/",  # no fragment: the token would go to the server, logs, Referer
    "https://good.com/?token=",
    "https://good.com/#a#",  # a second #
    "https://good.com:8443/#",  # port not named by the pattern
    "http://localhost:8081/#",
    "http://localhost/#",
    "https://good.com:443:8080/#",
    "https://good.com:0/#",
    "https://good.com:99999/#",
    "https://good.com:-1/#",
    "https://good.com./#",  # trailing dot
    "https://.good.com/#",
    "https://good..com/#",
    "https://g\u043e\u043ed.com/#",  # Cyrillic look-alike
    "https://xn--gd-nmcb.com/#",  # its punycode: a different host
    "https://good.com%2Eevil.com/#",  # percent-encoded host
    "https://%67ood.com/#",
    "https://good.com%00.evil.com/#",
    "https://good.com\x00/#",  # control characters and whitespace
    "https://good.com/\n#",
    "https://good.com\t/#",
    " https://good.com/#",
    "https://good.com/# ",
    "https://good.com/#<script>",
    "https://good.com/#%zz",
    "http://0x7f.0.0.1:8000/#",  # IPv4 in a non-canonical form
    "http://2130706433:8000/#",
    "http://127.1:8000/#",
    "http://[::2]:8000/#",
    "http://[::1%25eth0]:8000/#",
    "http://[::1/#",
    "http://[zz::1]/#",
    "http://[127.0.0.1]/#",
    "http://[v1.fe]/#",
    "https://*.example.com/#",
    "",
    "#",
    "https://good.com/" + "a" * MAX_URL_LENGTH + "#",
]

ACCEPTED_REDIRECTS = [
    ("https://good.com/#", RedirectTarget("https", "good.com", 443)),
    ("http://good.com/#", RedirectTarget("http", "good.com", 80)),
    ("https://good.com:443/#", RedirectTarget("https", "good.com", 443)),
    ("HTTPS://GOOD.COM/#", RedirectTarget("https", "good.com", 443)),
    ("https://good.com#", RedirectTarget("https", "good.com", 443)),
    ("https://good.com/app/?lang=fr#", RedirectTarget("https", "good.com", 443)),
    ("https://good.com/#/auth/eyJzZXJ2ZXIiOiJ4In0=/", RedirectTarget("https", "good.com", 443)),
    ("https://good.com/#token=", RedirectTarget("https", "good.com", 443)),
    ("https://a.example.com/#", RedirectTarget("https", "a.example.com", 443)),
    ("https://a.b.example.com/#", RedirectTarget("https", "a.b.example.com", 443)),
    ("http://localhost:8080/#", RedirectTarget("http", "localhost", 8080)),
    ("http://[::1]:3000/#", RedirectTarget("http", "::1", 3000, is_ipv6=True)),
    ("http://[0:0::1]/#", RedirectTarget("http", "::1", 80, is_ipv6=True)),
    ("http://127.0.0.1:8000/#", RedirectTarget("http", "127.0.0.1", 8000)),
]


def authorize(url: str, domains: tuple[str, ...] = DOMAINS) -> RedirectTarget:
    return authorize_redirect(url, parse_patterns(domains))


@pytest.mark.parametrize("url", HOSTILE_REDIRECTS)
def test_hostile_redirects_are_refused(url: str) -> None:
    with pytest.raises(UnauthorizedRedirect):
        authorize(url)


def test_the_hostile_table_is_large_enough() -> None:
    assert len(set(HOSTILE_REDIRECTS)) >= 20


@pytest.mark.parametrize(("url", "target"), ACCEPTED_REDIRECTS)
def test_authorized_redirects_are_accepted(url: str, target: RedirectTarget) -> None:
    assert authorize(url) == target


@pytest.mark.parametrize(
    "url",
    [
        "https://good.com@evil.com/#",
        "https://evil.com\\@good.com/#",
        "javascript:alert(1)//evil.com/#",
        "//evil.com/#",
        "https://evil.com/",
        "http://0x7f.1/#",
    ],
)
def test_a_star_pattern_still_refuses_malformed_urls(url: str) -> None:
    with pytest.raises(UnauthorizedRedirect):
        authorize(url, ("*",))


@pytest.mark.parametrize(
    "url", ["https://evil.com/#", "http://evil.com:1234/#", "http://[::2]:8/#", "http://1.2.3.4/#"]
)
def test_a_star_pattern_authorizes_any_host_and_port(url: str) -> None:
    authorize(url, ("*",))


def test_an_empty_list_authorizes_nothing() -> None:
    with pytest.raises(UnauthorizedRedirect, match="not an authorized domain"):
        authorize("https://good.com/#", ())


@pytest.mark.parametrize(
    ("pattern", "accepted", "refused"),
    [
        ("good.com", "https://good.com/#", "https://good.com:8443/#"),
        ("good.com:8443", "https://good.com:8443/#", "https://good.com/#"),
        ("good.com:443", "https://good.com/#", "http://good.com/#"),
        ("good.com:*", "http://good.com:1234/#", "http://www.good.com:1234/#"),
        ("*:8080", "http://anything.test:8080/#", "http://anything.test/#"),
        ("app-*.test.org", "https://app-1.test.org/#", "https://app.x.test.org/#"),
        ("a.*.test.org", "https://a.b.test.org/#", "https://a.b.c.test.org/#"),
        ("*.example.com", "https://x.y.example.com/#", "https://example.com/#"),
        ("GOOD.COM", "https://good.com/#", "https://good.com.evil/#"),
        ("[::1]", "http://[::1]/#", "http://[::1]:8080/#"),
        ("[::1]:*", "http://[::1]:9/#", "http://localhost:9/#"),
        ("localhost:*", "http://localhost:9/#", "http://[::1]:9/#"),
        ("10.0.0.*", "http://10.0.0.7/#", "http://10.0.0.0x7/#"),
    ],
)
def test_pattern_semantics(pattern: str, accepted: str, refused: str) -> None:
    authorize(accepted, (pattern,))
    with pytest.raises(UnauthorizedRedirect):
        authorize(refused, (pattern,))


@pytest.mark.parametrize(
    "pattern",
    [
        "https://good.com",
        "good.com/path",
        "user@good.com",
        "good.com:abc",
        "good.com:0",
        "good.com:65536",
        "good.com:",
        "[::1",
        "[zz::1]",
        "[::1]8080",
        "good..com",
        "",
    ],
)
def test_malformed_patterns_fail_at_startup(pattern: str) -> None:
    with pytest.raises(ConfigurationError, match=r"fxa-oauth\.webapp\.authorized_domains"):
        check_authorized_domains(["good.com", pattern])


def test_patterns_are_parsed_once_into_the_settings() -> None:
    settings = parse_settings(
        {"fxa-oauth.webapp.authorized_domains": "*.example.com app.test:8000"}
    )
    assert [p.raw for p in settings.authorized_patterns] == ["*.example.com", "app.test:8000"]
    authorize_redirect("https://a.example.com/#", settings.authorized_patterns)
    with pytest.raises(UnauthorizedRedirect):
        authorize_redirect("https://example.com/#", settings.authorized_patterns)


def test_patterns_are_not_parsed_with_the_relier_off() -> None:
    settings = parse_settings(
        {"fxa-oauth.relier.enabled": "false", "fxa-oauth.webapp.authorized_domains": "a b:c"}
    )
    assert settings.authorized_patterns == ()


@pytest.mark.parametrize("pattern", ["*", "*:*", "*.*", "*:8080"])
def test_any_host_patterns_log_a_warning_at_startup(
    pattern: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="kinto_fxa.redirects"):
        parsed = check_authorized_domains(["good.com", pattern])
    assert [p.raw for p in parsed] == ["good.com", pattern]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "ANY web site" in warnings[0].getMessage()
    assert repr(pattern) in warnings[0].getMessage()


def test_specific_patterns_log_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="kinto_fxa.redirects"):
        check_authorized_domains(DOMAINS)
    assert caplog.records == []


def test_ipv6_patterns_compare_as_addresses() -> None:
    assert parse_pattern("[0:0:0::1]:*").host == "::1"
    authorize("http://[::0:1]:5/#", ("[0::1]:*",))


# --- Through the login endpoint -------------------------------------------------------


@pytest.fixture
def login_app(make_app: Callable[..., webtest.TestApp], fxa_server: Any) -> webtest.TestApp:
    return make_app(
        kinto_settings(
            fxa_server.oauth_uri, **{"fxa-oauth.webapp.authorized_domains": " ".join(DOMAINS)}
        )
    )


def test_the_login_endpoint_refuses_every_hostile_redirect(login_app: webtest.TestApp) -> None:
    for url in HOSTILE_REDIRECTS:
        response = login_app.get("/v1/fxa-oauth/login", params={"redirect": url}, status=400)
        body = response.json
        assert body["errno"] == 107, url
        assert body["details"][0]["location"] == "querystring", url
        assert body["details"][0]["name"] == "redirect", url
        assert "Location" not in response.headers
        assert "Set-Cookie" not in response.headers


def test_the_login_endpoint_accepts_authorized_redirects(login_app: webtest.TestApp) -> None:
    for url, _ in ACCEPTED_REDIRECTS:
        login_app.get("/v1/fxa-oauth/login", params={"redirect": url}, status=302)
