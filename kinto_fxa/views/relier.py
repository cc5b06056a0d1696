"""The relier endpoints: let a web app log its users in with Firefox Accounts through Kinto.

1. The app sends the browser to ``GET /v1/fxa-oauth/login?redirect=<app URL>``. Kinto checks
   the URL against ``fxa-oauth.webapp.authorized_domains`` (:mod:`kinto_fxa.redirects`),
   remembers it in its cache under a fresh single-use ``state`` with a PKCE verifier, binds
   that state to the browser with a cookie, and redirects to FxA's authorization page.
2. FxA sends the browser back to ``GET /v1/fxa-oauth/token?code=&state=`` (the client's
   ``redirect_uri``). Kinto checks the cookie, consumes the state, trades the code (with the
   client secret and the PKCE verifier) for an access token, and redirects the browser to
   the app URL with the token appended (``http://app/#`` gives ``http://app/#<token>``).

The state lives in Kinto's cache, so the two steps may be served by different processes
sharing it. A browser holds one pending login at a time (one cookie, sent only to the
token endpoint): starting another replaces it, and the earlier one can no longer finish.
On https the cookie is ``Secure``; behind a TLS-terminating proxy set Kinto's
``http_scheme = https``.

Codes and tokens are never logged (the code is also masked in Kinto's request summary), and
responses carrying them are neither cached nor sent as ``Referer``.
"""

import logging
import re
from typing import Any

import colander
import requests
from fxa import errors as fxa_errors
from kinto.core import Service
from kinto.core.cornice.validators import colander_validator
from kinto.core.errors import ERRORS, http_error, raise_invalid
from kinto.core.resource.schema import ErrorResponseSchema
from pyramid import httpexceptions
from pyramid.response import Response
from pyramid.security import NO_PERMISSION_REQUIRED

from kinto_fxa import metrics
from kinto_fxa.fxa_api import failure_kind, oauth_client
from kinto_fxa.logins import CACHE_PREFIX, LoginExpired, OtherBrowser, PendingLogins
from kinto_fxa.redirects import (
    MAX_URL_LENGTH,
    UnauthorizedRedirect,
    authorize_redirect,
)
from kinto_fxa.responses import no_store, service_unavailable
from kinto_fxa.settings import DEFAULT_CLIENT, ClientConfig, FxASettings


logger = logging.getLogger(__name__)

STATE_CACHE_PREFIX = CACHE_PREFIX
STATE_COOKIE = "fxa-oauth-state"
#: The token endpoint's service (route) name: the state cookie is only sent there.
TOKEN_SERVICE = "fxa-oauth-token"
ACTIONS = ("signin", "signup", "email", "force_auth")
DEFAULT_ACTION = "signin"
REDACTED = "<redacted>"

# Anchored: ``colander.Regex`` only matches a prefix. (``$`` also matches before a final
# "\n": :func:`_printable` refuses it.) They appear in the OpenAPI description.
# ``secrets.token_urlsafe`` characters; bounded so a state always fits a cache key.
STATE_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"
# Visible ASCII: FxA codes are hex, but no control character or NUL ever goes further.
CODE_PATTERN = r"^[\x21-\x7e]{1,512}$"
CLIENT_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
# What may be appended to the redirect URL: JWT (base64url and dots) or hex tokens.
ACCESS_TOKEN_RE = re.compile(r"[A-Za-z0-9._~+/=-]{1,8192}")
MAX_EMAIL_LENGTH = 255


# --- Schemas ---------------------------------------------------------------------------


def _printable(node: colander.SchemaNode, value: str) -> None:
    """Refuse control characters (PostgreSQL refuses NUL; none belong in a parameter)."""
    if not value.isprintable():
        raise colander.Invalid(node, "Must not contain control characters")


def _string(**kwargs: Any) -> colander.SchemaNode:
    validator = kwargs.pop("validator", None)
    validators = [_printable] if validator is None else [_printable, validator]
    return colander.SchemaNode(colander.String(), validator=colander.All(*validators), **kwargs)


class LoginQuerystringSchema(colander.MappingSchema):
    redirect = _string(
        validator=colander.Length(max=MAX_URL_LENGTH),
        description="Web app URL (with a #) the token is appended to; its host must be "
        "listed in fxa-oauth.webapp.authorized_domains.",
    )
    client = _string(
        missing=colander.drop,
        validator=colander.Regex(CLIENT_PATTERN, msg="Invalid client name"),
        description="Name of a configured fxa-oauth.clients.<name> (default client if absent).",
    )
    action = _string(
        missing=colander.drop,
        validator=colander.OneOf(ACTIONS),
        description="FxA page to show: signin (default), signup, email or force_auth.",
    )
    email = _string(
        missing=colander.drop,
        validator=colander.All(colander.Length(max=MAX_EMAIL_LENGTH), colander.Email()),
        description="Email hint; required with action=force_auth.",
    )


class LoginSchema(colander.MappingSchema):
    querystring = LoginQuerystringSchema()


class TokenQuerystringSchema(colander.MappingSchema):
    code = _string(
        validator=colander.Regex(CODE_PATTERN, msg="Invalid authorization code"),
        description="Authorization code given by FxA.",
    )
    state = _string(
        validator=colander.Regex(STATE_PATTERN, msg="Invalid state"),
        description="State given by the login endpoint, echoed by FxA.",
    )


class TokenSchema(colander.MappingSchema):
    querystring = TokenQuerystringSchema()


class RedirectHeadersSchema(colander.MappingSchema):
    location = colander.SchemaNode(colander.String(), name="Location")


class RedirectResponseSchema(colander.MappingSchema):
    headers = RedirectHeadersSchema()


def _error(description: str) -> ErrorResponseSchema:
    return ErrorResponseSchema(description=description)


LOGIN_RESPONSES = {
    "302": RedirectResponseSchema(description="Redirection to the FxA sign-in page."),
    "400": _error("Missing, unknown or unauthorized parameter."),
}
TOKEN_RESPONSES = {
    "302": RedirectResponseSchema(description="Redirection to the web app, token appended."),
    "400": _error("Malformed parameter, or FxA refused the code."),
    "401": _error("A live login started in another browser (state cookie missing or wrong)."),
    "408": _error("Unknown, expired or already used state: sign in again."),
    "503": _error("FxA could not be reached or answered nonsense."),
}


# --- Helpers ---------------------------------------------------------------------------


def _pending_logins(request: Any) -> PendingLogins:
    return PendingLogins(request.registry.cache, request.registry.fxa_settings.state_ttl_seconds)


def _oauth(settings: FxASettings, client: ClientConfig, session: requests.Session) -> Any:
    """PyFxA's OAuth client of relier ``client``, over ``session`` (closed by the caller)."""
    return oauth_client(
        settings.oauth_server_url,
        settings.request_timeout_seconds,
        client.client_id,
        client.client_secret,
        session,
    )


def _redirect(location: str) -> Response:
    """A bodiless 302 to a URL that may carry a token or a code."""
    response = Response(status=302)
    response.location = location
    return no_store(response)


def _cookie_path(request: Any) -> str:
    # Only sent back to the token endpoint.
    return str(request.route_path(TOKEN_SERVICE))


def count_responses(endpoint: str) -> Any:
    """A validator, first of its service's, counting the response of ``endpoint``
    (:data:`kinto_fxa.metrics.RELIER_RESPONSES`) whatever produces it: the view, a validation
    error or an HTTP error raised anywhere, as a response callback sees them all. Only these
    services pay for it."""

    def count(request: Any, response: Any) -> None:
        metrics.for_registry(request.registry).count(
            metrics.RELIER_RESPONSES, endpoint=endpoint, status=str(response.status_code)
        )

    def validator(request: Any, **kwargs: Any) -> None:
        request.add_response_callback(count)

    return validator


def _public_get(
    schema: Any,
    validators: tuple[Any, ...],
    operation_id: str,
    responses: dict[str, Any],
    before: tuple[Any, ...] = (),
) -> dict[str, Any]:
    """The view arguments of a relier endpoint: anyone may call it (the browser is not
    authenticated yet); its query string is validated, unreadable cookies are a 400."""
    return {
        "schema": schema,
        "validators": (*before, readable_cookies, colander_validator, *validators),
        "permission": NO_PERMISSION_REQUIRED,
        "tags": ["Authentication"],
        "operation_id": operation_id,
        "response_schemas": responses,
    }


def readable_cookies(request: Any, **kwargs: Any) -> None:
    """A cookie that is not UTF-8 (set by another app on the domain, say) makes webob fail
    in Kinto's colander validator: answer a 400 rather than a 500."""
    try:
        dict(request.cookies)
    except UnicodeDecodeError:
        raise_invalid(request, location="header", name="Cookie", description="Must be UTF-8")


# --- Login -----------------------------------------------------------------------------

login = Service(
    name="fxa-oauth-login",
    path="/fxa-oauth/login",
    description="Start a Firefox Accounts login for a web app",
    validators=(count_responses("login"),),
)


def login_validator(request: Any, **kwargs: Any) -> None:
    """Checks that need the settings: client name, ``force_auth`` email, redirect URL."""
    if request.errors:
        return
    settings: FxASettings = request.registry.fxa_settings
    query = request.validated["querystring"]
    name = query.get("client", DEFAULT_CLIENT)
    if name not in settings.clients_by_name:
        request.errors.add("querystring", "client", f"Unknown client {name!r}")
    if query.get("action") == "force_auth" and "email" not in query:
        request.errors.add("querystring", "email", "Required with action=force_auth")
    try:
        authorize_redirect(query["redirect"], settings.authorized_patterns)
    except UnauthorizedRedirect as e:
        request.errors.add("querystring", "redirect", f"Unauthorized redirect URL: {e}")


@login.get(**_public_get(LoginSchema(), (login_validator,), "fxa_oauth_login", LOGIN_RESPONSES))
def get_login(request: Any) -> Response:
    """Redirect the browser to the FxA sign-in page; the token will go to ``redirect``."""
    settings: FxASettings = request.registry.fxa_settings
    query = request.validated["querystring"]
    client = settings.clients_by_name[query.get("client", DEFAULT_CLIENT)]
    if client.client_id is None:
        logger.error("FxA login refused: no client_id configured for client %r", client.name)
        raise service_unavailable("Firefox Accounts login is not configured on this server.")

    with requests.Session() as session:  # Builds URLs only: no call to FxA here.
        oauth = _oauth(settings, client, session)
    challenge, verifier = oauth.generate_pkce_challenge()
    state, cookie_value = _pending_logins(request).start(
        query["redirect"], verifier["code_verifier"], client.name
    )
    location = oauth.get_redirect_url(
        state=state,
        scope=" ".join(client.requested_scope),
        action=query.get("action", DEFAULT_ACTION),
        email=query.get("email"),
        redirect_uri=client.redirect_uri,
        **challenge,
    )
    response = _redirect(location)
    response.set_cookie(
        STATE_COOKIE,
        cookie_value,
        max_age=settings.state_ttl_seconds,
        path=_cookie_path(request),
        secure=request.scheme == "https",
        httponly=True,
        samesite="lax",
    )
    return response


# --- Token -----------------------------------------------------------------------------

token = Service(
    name=TOKEN_SERVICE,
    path="/fxa-oauth/token",
    description="Finish a Firefox Accounts login: trade the code, redirect to the web app",
    validators=(count_responses("token"),),
)


def redact_code(request: Any, **kwargs: Any) -> None:
    """Keep the authorization code out of Kinto's request summary log."""
    query = dict(request.GET)
    if "code" in query:
        query["code"] = REDACTED
        request.log_context(querystring=query)


def _session_expired() -> httpexceptions.HTTPException:
    return http_error(
        httpexceptions.HTTPRequestTimeout(),
        errno=ERRORS.INVALID_AUTH_TOKEN,
        message="This login expired or was already completed: please sign in again.",
    )


def _browser_mismatch() -> httpexceptions.HTTPException:
    return http_error(
        httpexceptions.HTTPUnauthorized(),
        errno=ERRORS.INVALID_AUTH_TOKEN,
        message="This login was not started in this browser (or its cookies are blocked): "
        "please sign in again.",
    )


def _trade_code(request: Any, client: ClientConfig, code: str, code_verifier: str) -> str:
    """Trade ``code`` for an access token.

    :raises HTTPBadRequest: FxA refuses the code.
    :raises HTTPServiceUnavailable: FxA cannot be reached or answers nonsense.
    """
    settings: FxASettings = request.registry.fxa_settings
    session = requests.Session()  # One per trade, closed after it.
    # urllib3 2.x's Session.close() no longer closes pooled connections (only garbage
    # collection does, and a refused code's traceback can keep them alive): ask FxA to
    # close it, or every refused code leaves a connection to FxA open.
    session.headers["Connection"] = "close"
    oauth = _oauth(settings, client, session)
    metrics_ = metrics.for_registry(request.registry)
    try:
        with metrics_.timed(metrics.FXA_CALL_DURATION, endpoint="token"):
            answer = oauth.trade_code(code, code_verifier=code_verifier)
    except fxa_errors.ClientError as e:
        logger.warning("FxA refused an authorization code (errno %s: %s)", e.errno, e)
        raise_invalid(
            request,
            location="querystring",
            name="code",
            description="Firefox Accounts refused the authorization code: please sign in again",
        )
    except (requests.RequestException, fxa_errors.Error) as e:
        logger.error("Could not trade an authorization code with FxA: %r", e)
        metrics_.count(metrics.FXA_CALL_FAILURES, endpoint="token", kind=failure_kind(e))
        raise service_unavailable("Firefox Accounts is unavailable: please retry later.") from e
    finally:
        session.close()

    access_token = answer.get("access_token") if isinstance(answer, dict) else None
    if not isinstance(access_token, str) or not ACCESS_TOKEN_RE.fullmatch(access_token):
        logger.error("FxA answered an unexpected access token")
        metrics_.count(metrics.FXA_CALL_FAILURES, endpoint="token", kind="malformed")
        raise service_unavailable("Firefox Accounts answered unexpectedly: please retry later.")
    return access_token


@token.get(**_public_get(TokenSchema(), (), "fxa_oauth_token", TOKEN_RESPONSES, (redact_code,)))
def get_token(request: Any) -> Response:
    """Trade the FxA code and redirect the browser to the web app with the token."""
    query = request.validated["querystring"]
    try:
        pending = _pending_logins(request).consume(
            query["state"], request.cookies.get(STATE_COOKIE)
        )
    except LoginExpired:
        raise _session_expired() from None
    except OtherBrowser:
        raise _browser_mismatch() from None

    settings: FxASettings = request.registry.fxa_settings
    client = settings.clients_by_name.get(pending.client)
    if client is None:  # The configuration changed since the login started.
        raise _session_expired()
    access_token = _trade_code(request, client, query["code"], pending.code_verifier)

    response = _redirect(pending.redirect + access_token)
    response.delete_cookie(STATE_COOKIE, path=_cookie_path(request))
    return response
