"""The OAuth authorization-code flow: the sign-in form, codes, PKCE and ``/v1/token``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from webob import Request, Response

from kinto_fxa.testing.fxa_server.errors import (
    ERRNO_EXPIRED_CODE,
    ERRNO_INCORRECT_REDIRECT,
    ERRNO_INCORRECT_SECRET,
    ERRNO_INVALID_PARAMETER,
    ERRNO_MISMATCH_CODE,
    ERRNO_UNKNOWN_CODE,
    _FxAError,
    _invalid,
    _json_response,
)
from kinto_fxa.testing.fxa_server.page import sign_in_page
from kinto_fxa.testing.fxa_server.params import _check_scope, _json_body, _ttl
from kinto_fxa.testing.fxa_server.state import _Client, _Code
from kinto_fxa.testing.fxa_server.tokens import _Minting


# RFC 7636: the verifier is 43 to 128 unreserved characters; an S256 challenge is
# the unpadded base64url encoding of 32 bytes.
_PKCE_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
_PKCE_CHALLENGE = re.compile(r"[A-Za-z0-9\-_]{43}")
_ACTIONS = ("signin", "signup", "email", "force_auth")


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and "@" not in parts.netloc
        and not any(c.isspace() for c in url)
    )


def _add_query(url: str, params: Mapping[str, str]) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


class _AuthorizationFlow(_Minting):
    """Handlers of ``/v1/authorization`` (GET: the page, POST: sign in) and ``/v1/token``."""

    def _post_token(self, request: Request) -> Response:
        if request.content_type == "application/x-www-form-urlencoded":
            body: dict[str, Any] = dict(request.POST)
            if "ttl" in body:
                try:
                    body["ttl"] = int(body["ttl"])
                except ValueError:
                    raise _invalid("ttl") from None
        else:
            body = _json_body(request)
        if body.get("grant_type", "authorization_code") != "authorization_code":
            raise _invalid("grant_type")
        client = self._client(body.get("client_id"))
        secret = body.get("client_secret")
        if client.public:
            if secret is not None:
                raise _FxAError(400, ERRNO_INVALID_PARAMETER, "Public clients have no secret")
        elif client.secret is not None and not (
            isinstance(secret, str)
            and hmac.compare_digest(secret.encode("utf-8"), client.secret.encode("utf-8"))
        ):
            raise _FxAError(400, ERRNO_INCORRECT_SECRET, "Incorrect secret")
        code = body.get("code")
        if not isinstance(code, str) or not code:
            raise _invalid("code")
        verifier = body.get("code_verifier")
        if verifier is not None and not (
            isinstance(verifier, str) and _PKCE_VERIFIER.fullmatch(verifier)
        ):
            raise _invalid("code_verifier")
        ttl = _ttl(body)
        with self._lock:
            record = self._codes.get(code)
            if record is None:
                raise _FxAError(400, ERRNO_UNKNOWN_CODE, "Unknown code")
            if record.client_id != client.client_id:
                raise _FxAError(400, ERRNO_MISMATCH_CODE, "Incorrect code")
            if record.expires_at <= time.time():
                del self._codes[code]
                raise _FxAError(400, ERRNO_EXPIRED_CODE, "Expired code")
            if record.code_challenge is not None:
                if verifier is None or not hmac.compare_digest(
                    _s256(verifier), record.code_challenge
                ):
                    raise _FxAError(400, ERRNO_INVALID_PARAMETER, "Incorrect code_verifier")
            elif verifier is not None:
                raise _FxAError(400, ERRNO_INVALID_PARAMETER, "No code_challenge to verify")
            del self._codes[code]
        if client.jwt_tokens:
            token = self.mint_jwt(
                record.uid, scope=record.scope, client_id=client.client_id, ttl=ttl
            )
        else:
            token = self.mint_opaque(
                record.uid, scope=record.scope, client_id=client.client_id, ttl=ttl
            )
        return _json_response(
            {
                "access_token": token,
                "token_type": "bearer",
                "scope": record.scope,
                "expires_in": ttl,
                "auth_at": record.auth_at,
            },
            no_store=True,
        )

    def _authorization_request(
        self, params: Mapping[str, str]
    ) -> tuple[_Client, str, str, str, str | None]:
        """Validate an authorization request: (client, redirect_uri, scope, state, challenge)."""
        client = self._client(params.get("client_id"))
        state = params.get("state", "")
        scope = _check_scope(params.get("scope") or "profile")
        requested = params.get("redirect_uri") or None
        if requested is not None:
            if client.redirect_uri is not None and requested != client.redirect_uri:
                raise _FxAError(400, ERRNO_INCORRECT_REDIRECT, "Incorrect redirect_uri")
            if not _is_http_url(requested):
                raise _FxAError(400, ERRNO_INCORRECT_REDIRECT, "Incorrect redirect_uri")
            redirect_uri = requested
        elif client.redirect_uri is not None:
            redirect_uri = client.redirect_uri
        else:
            raise _invalid("redirect_uri")
        challenge = params.get("code_challenge") or None
        method = params.get("code_challenge_method") or None
        if challenge is not None:
            if method != "S256":
                raise _invalid("code_challenge_method")
            if not _PKCE_CHALLENGE.fullmatch(challenge):
                raise _invalid("code_challenge")
        elif method is not None:
            raise _invalid("code_challenge")
        elif client.public:
            raise _FxAError(400, ERRNO_INVALID_PARAMETER, "Public clients must use PKCE")
        action = params.get("action") or None
        if action is not None and action not in _ACTIONS:
            raise _invalid("action")
        if action == "force_auth" and not params.get("email"):
            raise _invalid("email")
        return client, redirect_uri, scope, state, challenge

    def _get_authorization(self, request: Request) -> Response:
        params = dict(request.GET)
        client, *_ = self._authorization_request(params)
        return sign_in_page(client.name, request.path_info, params)

    def _post_authorization(self, request: Request) -> Response:
        params = dict(request.POST)
        client, redirect_uri, scope, state, challenge = self._authorization_request(params)
        email = params.get("email", "").strip()
        if not email or "@" not in email or len(email) > 255 or any(c.isspace() for c in email):
            raise _invalid("email")
        code = secrets.token_hex(32)
        now = time.time()
        with self._lock:
            self._codes[code] = _Code(
                client_id=client.client_id,
                uid=self.uid_for(email),
                scope=scope,
                code_challenge=challenge,
                auth_at=int(now),
                expires_at=now + self.code_ttl,
            )
        response = Response(status=302)
        response.location = _add_query(redirect_uri, {"code": code, "state": state})
        response.headers["Cache-Control"] = "no-store"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response
