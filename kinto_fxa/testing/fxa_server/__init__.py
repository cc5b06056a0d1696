"""A local Firefox Accounts OAuth server, for tests and development.

:class:`LocalFxAServer` is a real HTTP server, bound to 127.0.0.1 by default, that answers
the way FxA's OAuth server (``https://oauth.accounts.firefox.com/v1``) answers relying
services:

========================================  ==================================================
``GET  /v1/jwks``                         the published public keys (``{"keys": [...]}``)
``POST /v1/verify {"token"}``             ``{user, client_id, scope, generation?, ...}``
``POST /v1/token``                        authorization code (+ secret or PKCE) → token
``GET  /v1/authorization?...``            a minimal sign-in page (only asks for an email)
``POST /v1/authorization``                signs in: 302 to ``redirect_uri?code=&state=``
``POST /v1/destroy {"token"}``            destroys a token (JWTs: only ``/verify`` cares)
``GET  /v1/client/<client_id>``           public metadata of a registered client
``GET  /__heartbeat__``, ``/__lbheartbeat__``  ``{}``
``POST /__test__/token``                  development helper, see below
========================================  ==================================================

Errors use FxA's shape: ``{"code": 400, "errno": 108, "error": "Bad Request", "message":
"Invalid token"}``. There are no passwords: signing in only takes an email address, whose
account id is :meth:`LocalFxAServer.uid_for` (a hash of the email).

Tokens are minted directly from Python (:meth:`~LocalFxAServer.mint_jwt`,
:meth:`~LocalFxAServer.mint_opaque`, :meth:`~LocalFxAServer.mint_set`) or, for a developer
with curl, through ``POST /__test__/token`` — an endpoint that **exists only in this local
server**, never in FxA::

    curl -s -X POST http://127.0.0.1:PORT/__test__/token \\
         -H 'Content-Type: application/json' -d '{"email": "alice@example.com"}'

:meth:`~LocalFxAServer.fail` makes the server misbehave (refuse connections, answer
slowly, answer 5xx or non-JSON) so that relying services can test their failure handling;
:attr:`~LocalFxAServer.calls` counts the requests received per path.

It is served by waitress in a background thread: waitress sets ``TCP_NODELAY`` on the
connections it accepts, so keep-alive requests do not pay the ~40 ms of Nagle's algorithm
meeting delayed ACKs that :mod:`http.server` would add to every response.

The server never logs tokens, codes or secrets.

The package, one module a job: :mod:`.server` (:class:`LocalFxAServer`, its listener and
:meth:`~LocalFxAServer.fail`), :mod:`.state` (clients, codes, keys), :mod:`.tokens`
(minting), :mod:`.verification`, :mod:`.routes` (the WSGI application),
:mod:`.authorization` (the authorization-code flow), :mod:`.page` (the sign-in page),
:mod:`.params` and :mod:`.errors` (FxA's request and error shapes), :mod:`.failures`
(what ``fail()`` answers) and :mod:`.cli` (:func:`serve`). Import from this package: the
modules are not a public API.
"""

# Re-exports: what ``__all__`` leaves out is public too (constants, errnos).
# ruff: noqa: F401
from kinto_fxa.testing.fxa_server.cli import DEFAULT_CLIENTS, serve
from kinto_fxa.testing.fxa_server.errors import (
    ERRNO_EXPIRED_CODE,
    ERRNO_INCORRECT_REDIRECT,
    ERRNO_INCORRECT_SECRET,
    ERRNO_INVALID_PARAMETER,
    ERRNO_INVALID_SCOPES,
    ERRNO_INVALID_TOKEN,
    ERRNO_MISMATCH_CODE,
    ERRNO_UNEXPECTED,
    ERRNO_UNKNOWN_CLIENT,
    ERRNO_UNKNOWN_CODE,
    LocalFxAError,
)
from kinto_fxa.testing.fxa_server.failures import FAIL_MODES, RATE_LIMIT_RETRY_AFTER
from kinto_fxa.testing.fxa_server.server import LocalFxAServer
from kinto_fxa.testing.fxa_server.state import DEFAULT_CODE_TTL
from kinto_fxa.testing.fxa_server.tokens import (
    DEFAULT_EMAIL,
    DEFAULT_TOKEN_TTL,
    DELETE_USER,
    EVENT_URI_PREFIX,
    MAX_TOKEN_TTL,
    PASSWORD_CHANGE,
    PROFILE_CHANGE,
    SUBSCRIPTION_STATE_CHANGE,
)


__all__ = [
    "DEFAULT_CLIENTS",
    "DELETE_USER",
    "FAIL_MODES",
    "PASSWORD_CHANGE",
    "PROFILE_CHANGE",
    "SUBSCRIPTION_STATE_CHANGE",
    "LocalFxAError",
    "LocalFxAServer",
    "serve",
]
