"""What the browser tests need: host names for three sites, a static web app server, a
recorder of the browser's network traffic.

Every server listens on 127.0.0.1. Chromium reaches them under ``*.test`` names
(``--host-resolver-rules``), so the web app, Kinto and FxA are three different *sites*
(cookies' SameSite, CORS and ``Referer`` rules apply as in production). The Kinto process
must call FxA by the name the browser uses (``fxa-oauth.oauth_uri`` serves both), so
:func:`resolving_test_hosts` gives Python processes the same rule.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from tests.helpers import free_port


#: Chromium's rule; :func:`resolving_test_hosts` applies the same one to Python.
HOST_RULES = "MAP *.test 127.0.0.1"
CHROMIUM_ARGS = [f"--host-resolver-rules={HOST_RULES}"]
#: Bound of every browser wait (ms).
TIMEOUT_MS = 15_000

_SITECUSTOMIZE = '''"""Test-only: *.test is 127.0.0.1, as for Chromium (--host-resolver-rules)."""
import socket

_getaddrinfo = socket.getaddrinfo


def _test_hosts_getaddrinfo(host, *args, **kwargs):
    if isinstance(host, str) and host.endswith(".test"):
        host = "127.0.0.1"
    return _getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _test_hosts_getaddrinfo
'''


@contextmanager
def resolving_test_hosts(directory: Path) -> Iterator[None]:
    """Python processes started meanwhile resolve ``*.test`` to 127.0.0.1 (a
    ``sitecustomize`` module on their ``PYTHONPATH``)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", str(directory), prepend=":")
        yield


class StaticSite:
    """A web app's server: ``page`` at every path, on 127.0.0.1 (threaded, real HTTP).

    :attr:`request_lines` are the request lines it received (``GET /path?query HTTP/1.1``):
    what the app's server, and its access logs, get to see.
    """

    def __init__(self, host: str, page: str) -> None:
        self.port = free_port()
        self.url = f"http://{host}:{self.port}"
        self.request_lines: list[str] = []
        body = page.encode("utf-8")
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                site.request_lines.append(self.requestline)
                if urlsplit(self.path).path == "/favicon.ico":
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> StaticSite:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@dataclass
class Exchange:
    """One request the browser made, and its response (``None``: none, e.g. blocked)."""

    method: str
    url: str
    resource_type: str
    headers: dict[str, str]
    status: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    set_cookies: list[str] = field(default_factory=list)

    @property
    def host(self) -> str:
        return urlsplit(self.url).netloc

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    @property
    def query(self) -> dict[str, str]:
        return dict(parse_qsl(urlsplit(self.url).query))

    def cookie(self, name: str) -> str | None:
        """The value of cookie ``name`` the browser sent, if it sent one."""
        jar: SimpleCookie = SimpleCookie()
        jar.load(self.headers.get("cookie", ""))
        return jar[name].value if name in jar else None

    def set_cookie(self, name: str) -> dict[str, str] | None:
        """The attributes (lowercase names; ``value`` too) of the ``Set-Cookie`` of ``name``."""
        for line in self.set_cookies:
            first, *attributes = (part.strip() for part in line.split(";"))
            cookie_name, _, value = first.partition("=")
            if cookie_name == name:
                parsed = {"value": value}
                for attribute in attributes:
                    key, _, val = attribute.partition("=")
                    parsed[key.lower()] = val
                return parsed
        return None


class Traffic:
    """Every request of a browser context and its response (``context.on`` events).

    Headers are read once the exchange is over (:meth:`exchanges`), as Playwright has them
    then (``all_headers``: cookies included).
    """

    def __init__(self, context: Any) -> None:
        self._requests: list[Any] = []
        context.on("request", self._record)

    def _record(self, request: Any) -> None:
        self._requests.append(request)

    def exchanges(self) -> list[Exchange]:
        result = []
        for request in self._requests:
            exchange = Exchange(
                method=request.method,
                url=request.url,
                resource_type=request.resource_type,
                headers=request.all_headers(),
            )
            response = request.response()
            if response is not None:
                exchange.status = response.status
                exchange.response_headers = response.all_headers()
                exchange.set_cookies = [
                    h["value"]
                    for h in response.headers_array()
                    if h["name"].lower() == "set-cookie"
                ]
            result.append(exchange)
        return result


def redact(text: str, secrets: dict[str, str]) -> str:
    for name, value in secrets.items():
        if value:
            text = text.replace(value, f"<{name}>")
    return text


def describe(exchanges: list[Exchange], secrets: dict[str, str]) -> str:
    """One line per exchange, secrets replaced by their names: for the test's output."""
    lines = []
    for n, e in enumerate(exchanges, 1):
        notes = []
        for name in ("referer", "origin", "cookie"):
            if name in e.headers:
                notes.append(f"{name}: {e.headers[name]}")
        if "authorization" in e.headers:
            notes.append(f"authorization: {e.headers['authorization'].split(' ')[0]} <token>")
        notes += [f"set-cookie: {c}" for c in e.set_cookies]
        for name in ("location", "access-control-allow-origin", "referrer-policy"):
            if name in e.response_headers:
                notes.append(f"{name}: {e.response_headers[name]}")
        head = f"{n:2}. {e.method} {e.url} [{e.resource_type}] -> {e.status}"
        lines.append(redact(head, secrets))
        lines += ["      " + redact(note, secrets) for note in notes]
    return "\n".join(lines)


def wait_for(page: Any, condition: Callable[[], Any], what: str) -> Any:
    """Poll ``condition`` while Playwright processes its events; fail after TIMEOUT_MS."""
    for _ in range(TIMEOUT_MS // 50):
        value = condition()
        if value:
            return value
        page.wait_for_timeout(50)
    pytest.fail(f"Timed out waiting for {what}")
