"""``kinto-fxa local-fxa``: :func:`serve` runs a :class:`LocalFxAServer` until Ctrl-C."""

from __future__ import annotations

import time

from kinto_fxa.testing.fxa_server.server import LocalFxAServer


#: Clients registered by :func:`serve` when none are given: (client_id, secret, redirect_uri).
DEFAULT_CLIENTS: tuple[tuple[str, str | None, str | None], ...] = (
    ("kinto-client", "kinto-secret", None),
    ("kinto-public", None, None),
)


def _wait_forever() -> None:  # pragma: no cover  (replaced in tests)
    while True:
        time.sleep(3600)


def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    clients: list[tuple[str, str | None, str | None]] | None = None,
) -> None:
    """Run a :class:`LocalFxAServer` in the foreground until Ctrl-C.

    ``clients`` are ``(client_id, client_secret or None, redirect_uri or None)`` tuples;
    by default a confidential ``kinto-client``/``kinto-secret`` and a public
    ``kinto-public``.
    """
    server = LocalFxAServer(host=host, port=port)
    registered = list(DEFAULT_CLIENTS) if clients is None else clients
    for client_id, secret, redirect_uri in registered:
        server.register_client(client_id, secret, redirect_uri)
    with server:
        print(f"Local FxA OAuth server listening on {server.url}", flush=True)
        print(f"  fxa-oauth.oauth_uri = {server.oauth_uri}")
        for client_id, secret, redirect_uri in registered:
            kind = "confidential" if secret is not None else "public (PKCE)"
            where = f", redirect_uri {redirect_uri}" if redirect_uri else ""
            print(f"  client {client_id}: {kind}{where}")
        print("Mint an access token (this endpoint only exists in the local server):")
        print(
            f"  curl -s -X POST {server.url}/__test__/token -H 'Content-Type: application/json'"
            """ -d '{"email": "alice@example.com", "scope": "profile"}'"""
        )
        print("Press Ctrl-C to stop.", flush=True)
        try:
            _wait_forever()
        except KeyboardInterrupt:
            print("Stopping.", flush=True)
