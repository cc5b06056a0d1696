"""Many distinct FxA JWTs, quickly: signed with the local FxA server's key in a process pool.

An RS256 signature costs about 1 ms of CPU, so 100,000 tokens are signed by a pool of
processes, with the claims :meth:`LocalFxAServer.mint_jwt` puts in its tokens.
"""

import multiprocessing
import os
import secrets
import time
from collections.abc import Iterator
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization

from kinto_fxa.testing.fxa_server import LocalFxAServer


_worker: dict[str, Any] = {}


def _init(pem: bytes, issuer: str, kid: str) -> None:
    _worker["key"] = serialization.load_pem_private_key(pem, password=None)
    _worker["issuer"] = issuer
    _worker["kid"] = kid


def _mint(job: tuple[list[str], str, str]) -> list[str]:
    uids, scope, client_id = job
    key, issuer, kid = _worker["key"], _worker["issuer"], _worker["kid"]
    now = int(time.time())
    headers = {"typ": "at+JWT", "kid": kid}
    tokens = []
    for uid in uids:
        claims = {
            "iss": issuer,
            "sub": uid,
            "client_id": client_id,
            "scope": scope,
            "iat": now,
            "exp": now + 3600,
            "jti": secrets.token_hex(32),
            "fxa-profileChangedAt": now * 1000,
        }
        tokens.append(jwt.encode(claims, key, algorithm="RS256", headers=headers))
    return tokens


class Minter:
    """Mints JWTs the local FxA server would have issued, in ``processes`` processes."""

    def __init__(self, fxa: LocalFxAServer, processes: int | None = None) -> None:
        # The server publishes no way to sign with its key other than one token at a time.
        current = fxa._keys[-1]
        pem = current.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        # Signed as the pool will sign, checked as a relying service would: so that a change
        # of the local server's internals fails here, not as 401s in the middle of a run.
        _init(pem, fxa.issuer, current.kid)
        sample = _mint(([fxa.uid_for("minter@example.com")], "profile", "kinto-client"))[0]
        public = {k["kid"]: k for k in fxa.jwks["keys"]}[current.kid]
        key = jwt.algorithms.RSAAlgorithm.from_jwk(public)
        jwt.decode(sample, key, algorithms=["RS256"], options={"verify_aud": False})
        self._pool = multiprocessing.get_context("spawn").Pool(
            processes or os.cpu_count() or 2, _init, (pem, fxa.issuer, current.kid)
        )

    def iter_mint(
        self,
        uids: list[str],
        scope: str = "profile",
        client_id: str = "kinto-client",
        chunk: int = 500,
    ) -> Iterator[list[str]]:
        """Tokens for ``uids`` (in order), chunk by chunk as they are signed."""
        jobs = [(uids[i : i + chunk], scope, client_id) for i in range(0, len(uids), chunk)]
        yield from self._pool.imap(_mint, jobs)

    def mint(self, uids: list[str], scope: str = "profile", client_id: str = "kinto-client"):
        return [t for tokens in self.iter_mint(uids, scope, client_id) for t in tokens]

    def close(self) -> None:
        self._pool.terminate()
        self._pool.join()

    def __enter__(self) -> "Minter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
