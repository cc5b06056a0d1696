"""Revocation cutoffs in Kinto's storage backend, memory and PostgreSQL."""

import time

import pytest
from kinto.core.storage.exceptions import BackendError

from kinto_fxa.revocation import Revocations, RevocationUnavailable, is_revoked


@pytest.fixture
def storage(make_app, fxa_server, backend):
    from tests.conftest import kinto_settings

    return make_app(kinto_settings(fxa_server.oauth_uri, **backend)).app.registry.storage


def test_a_cutoff_is_never_lowered(storage):
    revocations = Revocations(storage, bound_seconds=60)
    assert revocations.cutoff("u") is None
    assert revocations.record("u", 2000) == 2000
    assert revocations.record("u", 1000) == 2000
    assert revocations.record("u", 3000) == 3000
    assert Revocations(storage, bound_seconds=60).cutoff("u") == 3000  # Another process.


def test_another_process_learns_of_a_cutoff_within_the_bound(storage):
    here, there = Revocations(storage, bound_seconds=60), Revocations(storage, 0.001)
    assert here.cutoff("u") is None and there.cutoff("u") is None
    Revocations(storage, bound_seconds=60).record("u", 5000)
    time.sleep(0.01)
    assert here.cutoff("u") is None  # Memo: within its bound.
    assert there.cutoff("u") == 5000


def test_unreadable_cutoff_is_an_error_not_a_pass():
    class Broken:
        def get(self, **kwargs):
            raise BackendError("storage is down")

    with pytest.raises(RevocationUnavailable):
        Revocations(Broken(), bound_seconds=1).cutoff("u")


def test_junk_in_storage_reads_as_no_cutoff(storage):
    from kinto_fxa.revocation import PARENT_ID, RESOURCE_NAME

    storage.update(resource_name=RESOURCE_NAME, parent_id=PARENT_ID, object_id="u", obj={})
    assert Revocations(storage, bound_seconds=1).cutoff("u") is None


@pytest.mark.parametrize(
    ("issued_at", "cutoff", "revoked"),
    [(None, None, False), (100, None, False), (99, 100, True), (100, 100, False), (None, 1, True)],
)
def test_is_revoked(issued_at, cutoff, revoked):
    assert is_revoked(issued_at, cutoff) is revoked
