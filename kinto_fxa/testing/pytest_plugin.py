"""pytest fixtures for applications built on Kinto and kinto-fxa.

Installing kinto-fxa registers this plugin (``pytest11`` entry point): the fixtures are
available in any test suite without importing anything. They run a real local FxA OAuth
server (:class:`kinto_fxa.testing.fxa_server.LocalFxAServer`) on 127.0.0.1:

``fxa_server_session`` (session scope)
    The started server, with a confidential client ``kinto-client`` (secret
    ``kinto-secret``) and a public (PKCE) client ``kinto-public``. Stopped at the end.
``fxa_server``
    The same server, :meth:`~LocalFxAServer.reset` before and after each test: healthy,
    ``calls`` cleared, initial signing key.
``fxa_token``
    A factory minting JWT access tokens:
    ``fxa_token(email="alice@example.com", scope="profile", client_id="kinto-client", **kw)``
    (``kw`` goes to :meth:`~LocalFxAServer.mint_jwt`: ``ttl``, ``generation``...).

Example::

    def test_my_view(fxa_server, fxa_token):
        app = make_my_app({"fxa-oauth.oauth_uri": fxa_server.oauth_uri,
                           "fxa-oauth.client_id": "kinto-client"})
        headers = {"Authorization": "Bearer " + fxa_token(scope="profile")}
        app.get("/v1/", headers=headers)
        assert fxa_server.calls["/v1/jwks"] == 1

    def test_fxa_is_down(fxa_server, fxa_token):
        fxa_server.fail("down")  # or "slow", "5xx", "malformed"
        ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest


if TYPE_CHECKING:  # pragma: no cover
    from kinto_fxa.testing.fxa_server import LocalFxAServer


@pytest.fixture(scope="session")
def fxa_server_session() -> Iterator[LocalFxAServer]:
    """A local FxA server for the whole session, with ``kinto-client`` and ``kinto-public``."""
    # Imported here so that loading the plugin stays cheap for every pytest run.
    from kinto_fxa.testing.fxa_server import LocalFxAServer

    server = LocalFxAServer()
    server.register_client("kinto-client", "kinto-secret")
    server.register_client("kinto-public")
    with server:
        yield server


@pytest.fixture
def fxa_server(fxa_server_session: LocalFxAServer) -> Iterator[LocalFxAServer]:
    """The session's local FxA server, healthy and with ``calls`` cleared for each test."""
    fxa_server_session.reset()
    yield fxa_server_session
    fxa_server_session.reset()


@pytest.fixture
def fxa_token(fxa_server: LocalFxAServer) -> Callable[..., str]:
    """Factory of JWT access tokens minted by the local FxA server."""

    def mint(
        email: str = "alice@example.com",
        scope: str = "profile",
        client_id: str = "kinto-client",
        **kw: Any,
    ) -> str:
        return fxa_server.mint_jwt(
            fxa_server.uid_for(email), scope=scope, client_id=client_id, **kw
        )

    return mint
