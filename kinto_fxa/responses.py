"""What kinto-fxa's endpoints and policy answer with, in one place: the bearer credential
of a request (RFC 6750), Kinto-format 503s for "cannot tell now", and responses that carry
a token or a code (never cached, never leaked as ``Referer``)."""

from typing import Any

from kinto.core import errors
from pyramid import httpexceptions


def bearer_token(authorization: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (scheme case-insensitive),
    or ``None`` for any other or empty credential."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def service_unavailable(message: str) -> httpexceptions.HTTPException:
    """A 503 in Kinto's JSON error format: a part we depend on cannot answer now; the
    client should retry, not drop its credentials."""
    return errors.http_error(
        httpexceptions.HTTPServiceUnavailable(), errno=errors.ERRORS.BACKEND, message=message
    )


def no_store(response: Any) -> Any:
    """Mark ``response`` as carrying a secret: neither cached nor sent as ``Referer``."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
