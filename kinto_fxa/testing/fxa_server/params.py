"""Reading and checking request parameters: JSON bodies, integers, TTLs and scopes."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from webob import Request

from kinto_fxa.testing.fxa_server.errors import (
    ERRNO_INVALID_PARAMETER,
    ERRNO_INVALID_SCOPES,
    _FxAError,
    _invalid,
)
from kinto_fxa.testing.fxa_server.tokens import DEFAULT_TOKEN_TTL, MAX_TOKEN_TTL


# RFC 6749 scope-token: %x21 / %x23-5B / %x5D-7E.
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")


def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(request.body or b"null")
    except ValueError:
        raise _FxAError(400, ERRNO_INVALID_PARAMETER, "Invalid JSON in request body") from None
    if not isinstance(body, dict):
        raise _FxAError(400, ERRNO_INVALID_PARAMETER, "Request body must be a JSON object")
    return body


def _optional_int(body: Mapping[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(name)
    return value


def _ttl(body: Mapping[str, Any]) -> int:
    ttl = _optional_int(body, "ttl")
    if ttl is None:
        return DEFAULT_TOKEN_TTL
    if not 0 < ttl <= MAX_TOKEN_TTL:
        raise _invalid("ttl")
    return ttl


def _check_scope(scope: str) -> str:
    tokens = scope.split(" ")
    if not all(_SCOPE_TOKEN.fullmatch(t) for t in tokens):
        raise _FxAError(400, ERRNO_INVALID_SCOPES, "Requested scopes are not allowed")
    return scope
