"""Two ``kinto start`` processes sharing PostgreSQL backends, as behind a load balancer:
an account event delivered to one is applied by the other within the revocation bound."""

import subprocess
import time

import pytest
import requests

from kinto_fxa.testing.fxa_server import DELETE_USER, PASSWORD_CHANGE
from tests.conftest import backend_settings, kinto_settings
from tests.helpers import KINTO, auth, wait_until, write_ini


#: ``min(local_cache_ttl_seconds, cache_ttl_seconds)``: the revocation bound.
BOUND_SECONDS = 2


@pytest.fixture
def two_kintos(kinto_processes, fxa_server, postgresql_url, tmp_path):
    settings = kinto_settings(
        fxa_server.oauth_uri,
        **backend_settings("postgresql", postgresql_url),
        **{
            "fxa-oauth.cache_ttl_seconds": BOUND_SECONDS,
            "fxa-oauth.local_cache_ttl_seconds": 30,  # Bounded by cache_ttl_seconds.
            "fxa-oauth.webhook.enabled": "true",
        },
    )
    ini = write_ini(tmp_path / "migrate.ini", settings)
    subprocess.run([KINTO, "migrate", "--ini", str(ini)], check=True, capture_output=True)
    first = kinto_processes(settings)
    second = kinto_processes(settings)
    return first, second


def status(kinto, token: str) -> int:
    return requests.get(
        kinto.url + "/v1/buckets/default", headers=auth(token), timeout=10
    ).status_code


def deliver(kinto, event_token: str) -> None:
    response = requests.post(
        kinto.url + "/v1/fxa-oauth/events", headers=auth(event_token), timeout=10
    )
    assert response.status_code == 200, response.text


def refused_within(kinto, token: str, since: float) -> float:
    wait_until(lambda: status(kinto, token) == 401, "the old token to be refused", timeout=15)
    return time.monotonic() - since


class TestRevocationAcrossProcesses:
    def test_a_password_change_reaches_the_other_process_within_the_bound(
        self, two_kintos, fxa_server
    ):
        first, second = two_kintos
        uid = fxa_server.uid_for("alice@example.com")
        old = fxa_server.mint_jwt(uid, generation=1_000_000)
        assert status(first, old) == 200
        assert status(second, old) == 200  # Both processes have it cached now.

        delivered = time.monotonic()
        deliver(first, fxa_server.mint_set(uid, {PASSWORD_CHANGE: {"changeTime": 2_000_000}}))
        assert status(first, old) == 401  # The process that handled it: at once.
        delay = refused_within(second, old, delivered)
        print(f"\nrevocation delay in the other process: {delay:.2f} s")
        assert delay < BOUND_SECONDS + 10  # The bound, with room for a loaded machine.

        fresh = fxa_server.mint_jwt(uid, generation=2_000_000)
        assert status(first, fresh) == 200
        assert status(second, fresh) == 200

    def test_a_deleted_users_cached_opaque_token_cannot_recreate_data(
        self, two_kintos, fxa_server
    ):
        first, second = two_kintos
        uid = fxa_server.uid_for("bob@example.com")
        opaque = fxa_server.mint_opaque(uid)
        assert status(first, opaque) == 200  # Creates the default bucket.
        assert status(second, opaque) == 200
        verified = fxa_server.calls["/v1/verify"]

        # FxA forgets the deleted account's tokens.
        requests.post(fxa_server.oauth_uri + "/destroy", json={"token": opaque}, timeout=5)
        deliver(second, fxa_server.mint_set(uid, {DELETE_USER: {}}))
        assert status(second, opaque) == 401
        refused_within(first, opaque, time.monotonic())
        # The token's age is unknown: FxA was asked again rather than trusting the cache.
        assert fxa_server.calls["/v1/verify"] > verified
