"""The WSGI application: counting, failing on demand, routing and the simpler endpoints."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from webob import Request, Response

from kinto_fxa.testing.fxa_server.authorization import _AuthorizationFlow
from kinto_fxa.testing.fxa_server.errors import (
    ERRNO_INVALID_TOKEN,
    ERRNO_UNEXPECTED,
    _error_response,
    _FxAError,
    _invalid,
    _json_response,
)
from kinto_fxa.testing.fxa_server.failures import _failed
from kinto_fxa.testing.fxa_server.params import _check_scope, _json_body, _optional_int, _ttl
from kinto_fxa.testing.fxa_server.state import _digest
from kinto_fxa.testing.fxa_server.verification import _Verification


_HEX32 = re.compile(r"[0-9a-f]{32}")


class _Routes(_AuthorizationFlow, _Verification):
    """Serves FxA's OAuth endpoints (and ``/__test__/token``) as a WSGI application."""

    def wsgi_app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        """The WSGI application (usable without the HTTP server, e.g. with webtest)."""
        request = Request(environ)
        path = request.path_info
        with self._calls_lock:
            self.calls[path] += 1
        with self._lock:
            failure, wake = self._failure, self._wake
        response: Response | None = None
        if failure.applies_to(path):
            if failure.mode == "slow":
                wake.wait(failure.delay)
            else:
                response = _failed(failure.mode, environ)
        if response is None:
            try:
                response = self._dispatch(request, path)
            except _FxAError as e:
                response = _error_response(e.code, e.errno, e.message)
            except Exception:
                response = _error_response(500, ERRNO_UNEXPECTED, "Unspecified error")
        return response(environ, start_response)

    def _dispatch(self, request: Request, path: str) -> Response:
        routes: dict[str, dict[str, Callable[[Request], Response]]] = {
            "/__heartbeat__": {"GET": self._heartbeat},
            "/__lbheartbeat__": {"GET": self._heartbeat},
            "/v1/jwks": {"GET": self._get_jwks},
            "/v1/verify": {"POST": self._post_verify},
            "/v1/token": {"POST": self._post_token},
            "/v1/authorization": {
                "GET": self._get_authorization,
                "POST": self._post_authorization,
            },
            "/v1/destroy": {"POST": self._post_destroy},
            "/__test__/token": {"POST": self._post_test_token},
        }
        methods = routes.get(path)
        if methods is None and path.startswith("/v1/client/"):
            client_id = path[len("/v1/client/") :]
            if client_id and "/" not in client_id:
                methods = {"GET": lambda r: self._get_client(client_id)}
        if methods is None:
            return _error_response(404, ERRNO_UNEXPECTED, "Not Found")
        handler = methods.get(request.method)
        if handler is None:
            response = _error_response(405, ERRNO_UNEXPECTED, "Method Not Allowed")
            response.headers["Allow"] = ", ".join(methods)
            return response
        return handler(request)

    def _heartbeat(self, request: Request) -> Response:
        return _json_response({})

    def _get_jwks(self, request: Request) -> Response:
        return _json_response(self.jwks)

    def _get_client(self, client_id: str) -> Response:
        client = self._client(client_id)
        return _json_response(
            {
                "id": client.client_id,
                "name": client.name,
                "redirect_uri": client.redirect_uri or "",
                "image_uri": "",
                "trusted": True,
            }
        )

    def _post_verify(self, request: Request) -> Response:
        token = _json_body(request).get("token")
        if not isinstance(token, str) or not token:
            raise _invalid("token")
        info = self._verify(token)
        if info is None:
            raise _FxAError(400, ERRNO_INVALID_TOKEN, "Invalid token")
        return _json_response(info)

    def _post_destroy(self, request: Request) -> Response:
        body = _json_body(request)
        token = body.get("token", body.get("access_token"))
        if not isinstance(token, str) or not token:
            raise _invalid("token")
        destroyed = False
        if token.count(".") == 2:
            claims = self._decode_jwt(token)
            if claims is not None and isinstance(claims.get("jti"), str):
                with self._lock:
                    self._destroyed_jtis.add(claims["jti"])
                destroyed = True
        else:
            with self._lock:
                destroyed = self._opaque.pop(_digest(token), None) is not None
        if not destroyed:
            raise _FxAError(400, ERRNO_INVALID_TOKEN, "Invalid token")
        return _json_response({})

    def _post_test_token(self, request: Request) -> Response:
        body = _json_body(request)
        email, uid = body.get("email"), body.get("uid")
        if uid is None:
            if not isinstance(email, str) or "@" not in email:
                raise _invalid("email")
            uid = self.uid_for(email)
        elif not isinstance(uid, str) or not _HEX32.fullmatch(uid):
            raise _invalid("uid")
        scope = body.get("scope", "profile")
        if not isinstance(scope, str) or not scope:
            raise _invalid("scope")
        _check_scope(scope)
        client_id = body.get("client_id", "kinto-client")
        if not isinstance(client_id, str) or not client_id:
            raise _invalid("client_id")
        ttl = _ttl(body)
        generation = _optional_int(body, "generation")
        opaque = body.get("opaque", False)
        if not isinstance(opaque, bool):
            raise _invalid("opaque")
        if opaque:
            token = self.mint_opaque(
                uid, scope=scope, client_id=client_id, ttl=ttl, generation=generation
            )
        else:
            token = self.mint_jwt(
                uid, scope=scope, client_id=client_id, ttl=ttl, generation=generation
            )
        return _json_response(
            {
                "access_token": token,
                "token_type": "bearer",
                "scope": scope,
                "expires_in": ttl,
                "user": uid,
            },
            no_store=True,
        )
