"""Failure injection: the modes of :meth:`LocalFxAServer.fail` and the answers they give."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from webob import Response

from kinto_fxa.testing.fxa_server.errors import _REASONS, ERRNO_UNEXPECTED, _error_response


#: Accepted values of :meth:`LocalFxAServer.fail`'s ``mode``.
FAIL_MODES = (None, "down", "slow", "5xx", "500", "malformed", "429")
#: ``Retry-After`` (s) of the 429 answers of ``fail("429")``.
RATE_LIMIT_RETRY_AFTER = 30


@dataclass(frozen=True)
class _Failure:
    mode: str | None = None
    endpoints: frozenset[str] | None = None
    delay: float = 2.0

    @classmethod
    def checked(cls, mode: str | None, endpoints: Iterable[str] | None, delay: float) -> _Failure:
        """The failure asked of :meth:`LocalFxAServer.fail`; ValueError when invalid."""
        if mode not in FAIL_MODES:
            raise ValueError(f"Unknown failure mode {mode!r}: use one of {FAIL_MODES}")
        if delay < 0:
            raise ValueError("delay must be positive")
        if isinstance(endpoints, str):
            endpoints = (endpoints,)
        paths = frozenset(endpoints) if endpoints is not None else None
        return cls(mode, paths, delay)

    def applies_to(self, path: str) -> bool:
        if self.mode is None or path.startswith("/__test__/"):
            return False
        return self.endpoints is None or path in self.endpoints

    @property
    def refuses_connections(self) -> bool:
        return self.mode == "down" and self.endpoints is None


def _failed(mode: str | None, environ: dict[str, Any]) -> Response:
    """The answer of a failing endpoint (all modes but ``None`` and ``"slow"``)."""
    if mode == "down":
        _drop_connection(environ)
        return _error_response(503, ERRNO_UNEXPECTED, "Connection dropped")
    if mode == "malformed":
        return Response(
            status=200,
            content_type="text/html",
            charset="utf-8",
            body=b"<html><body><h1>Welcome to nginx!</h1></body></html>",
        )
    if mode == "429":
        response = _error_response(429, ERRNO_UNEXPECTED, "Too Many Requests (simulated)")
        response.headers["Retry-After"] = str(RATE_LIMIT_RETRY_AFTER)
        return response
    code = 500 if mode == "500" else 503
    return _error_response(code, ERRNO_UNEXPECTED, f"{_REASONS[code]} (simulated)")


def _drop_connection(environ: dict[str, Any]) -> None:
    """Close the client's connection without answering (reset, no response)."""
    channel = getattr(environ.get("waitress.client_disconnected"), "__self__", None)
    sock = getattr(channel, "socket", None)
    if sock is None:  # pragma: no cover  (not served by waitress)
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # pragma: no cover  (already gone)
        pass
