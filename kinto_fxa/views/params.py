"""``GET /v1/fxa-oauth/params``: what a native client needs to run the OAuth flow itself.

Served whether or not the relier endpoints are enabled. Never exposes a client secret.
"""

from typing import Any

import colander
from kinto.core import Service
from kinto.core.resource.schema import ErrorResponseSchema
from pyramid.security import NO_PERMISSION_REQUIRED

from kinto_fxa.settings import ClientConfig, FxASettings


class ParamsSchema(colander.MappingSchema):
    client_id = colander.SchemaNode(colander.String(), missing=None)
    oauth_uri = colander.SchemaNode(colander.String())
    scope = colander.SchemaNode(colander.String(), description="Scope a token must grant.")
    clients = colander.SchemaNode(
        colander.Mapping(unknown="preserve"),
        description="Parameters of each fxa-oauth.clients.<name>, by name.",
    )


class ParamsResponseSchema(colander.MappingSchema):
    body = ParamsSchema()


params = Service(
    name="fxa-oauth-params",
    path="/fxa-oauth/params",
    description="Firefox Accounts OAuth parameters",
)


def client_params(client: ClientConfig) -> dict[str, Any]:
    """The public parameters of ``client``: its id and the scope Kinto requires."""
    return {"client_id": client.client_id, "scope": " ".join(client.required_scope)}


def oauth_params(settings: FxASettings) -> dict[str, Any]:
    """The body of ``GET /fxa-oauth/params``."""
    return {
        **client_params(settings.default_client),
        "oauth_uri": settings.oauth_server_url,
        "clients": {client.name: client_params(client) for client in settings.extra_clients},
    }


@params.get(
    permission=NO_PERMISSION_REQUIRED,
    tags=["Authentication"],
    operation_id="fxa_oauth_params",
    response_schemas={
        "200": ParamsResponseSchema(description="The FxA OAuth parameters."),
        "default": ErrorResponseSchema(description="Unexpected error."),
    },
)
def get_params(request: Any) -> dict[str, Any]:
    """The FxA OAuth client id, server and required scope, to obtain tokens for this server."""
    return oauth_params(request.registry.fxa_settings)
