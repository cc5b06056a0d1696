"""FxA's error shape: the errnos, the exceptions raised with them and the JSON answers."""

from __future__ import annotations

import json
from typing import Any

from webob import Response


# FxA OAuth errnos.
ERRNO_UNKNOWN_CLIENT = 101
ERRNO_INCORRECT_SECRET = 102
ERRNO_INCORRECT_REDIRECT = 103
ERRNO_UNKNOWN_CODE = 105
ERRNO_MISMATCH_CODE = 106
ERRNO_EXPIRED_CODE = 107
ERRNO_INVALID_TOKEN = 108
ERRNO_INVALID_PARAMETER = 109
ERRNO_INVALID_SCOPES = 114
ERRNO_UNEXPECTED = 999

_REASONS = {
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class LocalFxAError(Exception):
    """An FxA-shaped error answered by the local server to one of its Python helpers."""

    def __init__(self, code: int, errno: int, message: str) -> None:
        super().__init__(f"{code} errno {errno}: {message}")
        self.code = code
        self.errno = errno
        self.message = message


class _FxAError(Exception):
    """Raised by request handlers; turned into an FxA error response."""

    def __init__(self, code: int, errno: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.errno = errno
        self.message = message


def _error_response(code: int, errno: int, message: str) -> Response:
    body = {"code": code, "errno": errno, "error": _REASONS.get(code, "Error"), "message": message}
    return _json_response(body, status=code)


def _json_response(body: Any, status: int = 200, *, no_store: bool = False) -> Response:
    response = Response(
        status=status, content_type="application/json", charset="utf-8", body=json.dumps(body)
    )
    if no_store:
        response.headers["Cache-Control"] = "no-store"
        response.headers["Pragma"] = "no-cache"
        response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _invalid(name: str) -> _FxAError:
    return _FxAError(400, ERRNO_INVALID_PARAMETER, f"Invalid parameter in request body: {name}")
