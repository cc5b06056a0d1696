"""Firefox Accounts authentication for Kinto.

Enable it with ``kinto.includes = kinto_fxa`` and the
:class:`kinto_fxa.authentication.FxAOAuthAuthenticationPolicy` multiauth policy.
"""

import logging
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import requests
from kinto.core.openapi import OpenAPI
from pyramid.config import Configurator
from pyramid.exceptions import ConfigurationError

from kinto_fxa import metrics
from kinto_fxa.authentication import Authenticator
from kinto_fxa.fxa_api import heartbeat_url
from kinto_fxa.revocation import Revocations
from kinto_fxa.settings import FxASettings, parse_settings
from kinto_fxa.verification import TokenVerifier


try:
    __version__ = version("kinto-fxa")
except PackageNotFoundError:  # pragma: no cover (running from a source tree)
    __version__ = "0.0.0"

CAPABILITY_URL = "https://github.com/Kinto/kinto-fxa"

logger = logging.getLogger(__name__)


def fxa_heartbeat(settings: FxASettings) -> Any:
    """Kinto heartbeat ``oauth``: ``None`` when no ``oauth_uri`` is configured, else whether
    FxA's ``/__heartbeat__`` answers 2xx in time."""

    def ping(request: Any) -> bool | None:
        if settings.oauth_uri is None:
            return None
        try:
            response = requests.get(
                heartbeat_url(settings.oauth_uri), timeout=settings.heartbeat_timeout_seconds
            )
        except requests.RequestException:
            return False
        return response.ok

    return ping


def includeme(config: Configurator) -> None:
    if not hasattr(config.registry, "heartbeats"):
        raise ConfigurationError(
            "kinto_fxa must be included once Kinto is initialized: list it in the "
            "``kinto.includes`` setting, not ``pyramid.includes``."
        )
    settings = parse_settings(config.get_settings())
    registry: Any = config.registry
    registry.fxa_settings = settings

    verifier = TokenVerifier(
        settings.oauth_server_url,
        timeout=settings.request_timeout_seconds,
        jwks=settings.jwks,
        jwks_refresh_interval=settings.jwks_refresh_interval_seconds,
        issuer=settings.issuer,
        jwks_max_age=settings.jwks_max_age_seconds or None,
        metrics_=metrics.for_registry(registry),
    )
    registry.fxa_verifier = verifier
    registry.fxa_revocations = Revocations(
        registry.storage, settings.revocation_bound_seconds, settings.local_cache_size
    )
    registry.fxa_authenticator = Authenticator(
        settings,
        verifier,
        registry.cache,
        registry.fxa_revocations,
        metrics.for_registry(registry),
    )
    for warning in settings.exposure_warnings() + settings.issuer_warnings():
        logger.warning(warning)

    registry.heartbeats["oauth"] = fxa_heartbeat(settings)

    config.add_api_capability(
        "fxa",
        version=__version__,
        description="You can authenticate to that server using Firefox Account.",
        url=CAPABILITY_URL,
    )
    for policy_name in settings.policy_names:
        OpenAPI.expose_authentication_method(
            policy_name,
            {
                "type": "apiKey",
                "in": "header",
                "name": "Authorization",
                "description": "Firefox Accounts OAuth access token: ``Bearer <token>``.",
            },
        )

    config.scan("kinto_fxa.views.params")
    if settings.relier_enabled:
        config.scan("kinto_fxa.views.relier")
    if settings.webhook_enabled:
        config.scan("kinto_fxa.views.webhook")
