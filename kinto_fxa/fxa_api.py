"""Calls to FxA's OAuth server through PyFxA's ``APIClient``: built, timed and counted.

Outbound calls go through an ``APIClient`` with a timeout and no urllib3 retries: a failing
FxA must fail fast (PyFxA's default session retries POSTs 3 times with backoff). After a
429/500/503 with ``Retry-After`` PyFxA's client "backs off": it answers without calling FxA
until then (:class:`BackingOff`, which callers report as FxA unavailable).
"""

import time
from typing import Any

import requests
from fxa import errors as fxa_errors
from fxa._utils import APIClient
from fxa.oauth import Client as OAuthClient

from kinto_fxa import metrics


# Used when ``fxa-oauth.oauth_uri`` is not set (PyFxA's default, FxA production).
PRODUCTION_OAUTH_URI = "https://oauth.accounts.firefox.com/v1"
#: The ``iss`` of FxA production's access tokens: the default of ``fxa-oauth.issuer``.
PRODUCTION_ISSUER = "https://accounts.firefox.com"
#: FxA's errno for an invalid (unknown, expired, destroyed) token.
ERRNO_INVALID_TOKEN = 108


def build_api_client(
    server_url: str, timeout: float, session: requests.Session | None = None
) -> APIClient:
    """A PyFxA API client with a bounded timeout and no automatic retries (PyFxA's own
    session retries POSTs 3 times with backoff)."""
    server_url = server_url.rstrip("/")
    if not server_url.endswith("/v1"):
        server_url += "/v1"
    apiclient = APIClient(server_url, session=session or requests.Session())
    apiclient.timeout = timeout
    return apiclient


def oauth_client(
    server_url: str,
    timeout: float,
    client_id: str | None,
    client_secret: str | None,
    session: requests.Session,
) -> OAuthClient:
    """PyFxA's OAuth client of one relier client, talking through :func:`build_api_client`
    over ``session`` (the caller closes it)."""
    client = OAuthClient(
        client_id=client_id, client_secret=client_secret, server_url=server_url, cache=None
    )
    client.apiclient = build_api_client(server_url, timeout, session)
    return client


def heartbeat_url(oauth_uri: str) -> str:
    """FxA's ``/__heartbeat__`` lives at the server root, not under ``/v1``."""
    root = oauth_uri.rstrip("/")
    if root.endswith("/v1"):
        root = root[: -len("/v1")]
    return root + "/__heartbeat__"


def failure_kind(error: BaseException) -> str:
    """The ``kind`` label of :data:`metrics.FXA_CALL_FAILURES` for ``error``."""
    if isinstance(error, requests.Timeout):
        return "timeout"
    if isinstance(error, requests.RequestException):
        return "refused"
    if isinstance(error, fxa_errors.ServerError):
        return "5xx"
    if isinstance(error, fxa_errors.ClientError):
        return "rate_limited" if getattr(error, "code", None) == 429 else "4xx"
    return "malformed"


class BackingOff(Exception):
    """PyFxA's client is in backoff after a ``Retry-After``: it asked nobody."""


def call(
    apiclient: APIClient, metrics_: metrics.Metrics, endpoint: str, method: str, *args: Any
) -> Any:
    """``apiclient.<method>(*args)``, timed and with failures counted.

    :raises BackingOff: when PyFxA answered from its backoff state without calling FxA.
    """
    started = time.monotonic()
    try:
        try:
            body = getattr(apiclient, method)(*args)
        except (AttributeError, TypeError) as e:
            # PyFxA builds its errors with ``body.get``: a JSON error body that is not an
            # object breaks it.
            raise fxa_errors.OutOfProtocolError(f"Unexpected FxA error answer ({e})") from e
    except (requests.RequestException, fxa_errors.Error) as e:
        metrics_.observe_seconds(
            metrics.FXA_CALL_DURATION, time.monotonic() - started, endpoint=endpoint
        )
        if not isinstance(e, fxa_errors.ClientError) or e.errno != ERRNO_INVALID_TOKEN:
            metrics_.count(metrics.FXA_CALL_FAILURES, endpoint=endpoint, kind=failure_kind(e))
        raise
    if isinstance(body, requests.Response):
        metrics_.count(metrics.FXA_CALL_FAILURES, endpoint=endpoint, kind="rate_limited")
        raise BackingOff(f"backing off after FxA answered {body.status_code} with Retry-After")
    metrics_.observe_seconds(
        metrics.FXA_CALL_DURATION, time.monotonic() - started, endpoint=endpoint
    )
    return body
