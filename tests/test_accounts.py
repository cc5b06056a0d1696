"""Deleting a user's data and revoking their tokens, on the memory and PostgreSQL backends."""

import pytest
import transaction

from kinto_fxa import accounts
from kinto_fxa.accounts import DeletionReport, delete_user_data, revoke_tokens_before
from kinto_fxa.uids import is_fxa_uid
from tests._events_helpers import (
    NOTES,
    Snapshot,
    assert_seeded_data_is_there,
    auth,
    events_settings,
    seed,
)


HEX = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def app(make_app, fxa_server, backend):
    return make_app(events_settings(fxa_server.oauth_uri, backend))


def delete(app, uid: str) -> DeletionReport:
    with transaction.manager:
        return delete_user_data(app.app.registry, uid)


class TestDeleteUserData:
    def test_deletes_exactly_the_users_data(self, app, fxa_server):
        seeded = seed(app, fxa_server)
        registry = app.app.registry
        before = Snapshot.of(registry)
        assert_seeded_data_is_there(before, seeded)

        report = delete(app, seeded.alice)

        assert Snapshot.of(registry) == before.without_alice(seeded)
        assert report.user_ids == [f"fxa:{seeded.alice}", f"fxa:{seeded.alice}-notes"]
        assert report.buckets == 2
        # Collections tasks + notes, group friends, records t1, t2, n1.
        assert report.objects == 6
        assert report.tombstones == 1  # t3.
        # Bob's shared collection: write (Alice) and read (her group and her notes id);
        # the common bucket and the record Alice created there: write.
        assert report.acl_entries == 4
        assert report.memberships == 1  # Bob's team.
        assert report.deleted_anything

    def test_other_users_keep_working(self, app, fxa_server):
        seeded = seed(app, fxa_server)
        delete(app, seeded.alice)

        bob = seeded.bob_headers
        shared = "/v1/buckets/default/collections/shared"
        assert [r["id"] for r in app.get(f"{shared}/records", headers=bob).json["data"]] == ["s1"]
        permissions = app.get(shared, headers=bob).json["permissions"]
        assert permissions == {"write": [f"fxa:{seeded.bob}"]}
        team = app.get("/v1/buckets/default/groups/team", headers=bob).json["data"]
        assert f"fxa:{seeded.alice}" in team["members"]  # Bob's record is his data: kept.
        common = app.get("/v1/buckets/common", headers=bob).json["permissions"]
        assert common == {"write": [f"fxa:{seeded.bob}"]}
        records = app.get("/v1/buckets/common/collections/c/records", headers=bob).json["data"]
        assert [r["id"] for r in records] == ["r1"]
        alices_tasks = f"/v1/buckets/{seeded.alice_bucket}/collections/tasks/records"
        app.get(alices_tasks, headers=bob, status=403)

    def test_memberships_of_everyone_are_not_touched(self, app, fxa_server):
        seeded = seed(app, fxa_server)
        app.put_json(
            "/v1/buckets/default/groups/everyone",
            {"data": {"members": ["system.Authenticated"]}},
            headers=seeded.bob_headers,
        )
        everyone = f"/buckets/{seeded.bob_bucket}/groups/everyone"
        before = Snapshot.of(app.app.registry)
        assert ("system.Authenticated", everyone) in before.memberships

        report = delete(app, seeded.alice)

        assert report.memberships == 1  # Bob's team only.
        assert Snapshot.of(app.app.registry) == before.without_alice(seeded)

    def test_is_idempotent(self, app, fxa_server):
        seeded = seed(app, fxa_server)
        delete(app, seeded.alice)
        after_first = Snapshot.of(app.app.registry)

        report = delete(app, seeded.alice)

        assert Snapshot.of(app.app.registry) == after_first
        assert report.as_dict() == {
            "uid": seeded.alice,
            "user_ids": [f"fxa:{seeded.alice}", f"fxa:{seeded.alice}-notes"],
            "buckets": 0,
            "objects": 0,
            "tombstones": 0,
            "acl_entries": 0,
            "memberships": 0,
        }
        assert not report.deleted_anything

    def test_a_user_without_data(self, app, fxa_server):
        before = Snapshot.of(app.app.registry)
        report = delete(app, fxa_server.uid_for("nobody@example.com"))
        assert not report.deleted_anything
        assert Snapshot.of(app.app.registry) == before

    def test_tokens_issued_before_the_deletion_are_refused(self, app, fxa_server):
        uid = fxa_server.uid_for("alice@example.com")
        headers = auth(fxa_server.mint_jwt(uid))
        app.put_json("/v1/buckets/default/collections/c/records/r", {"data": {}}, headers=headers)

        delete(app, uid)

        # Otherwise the default bucket plugin would recreate the bucket on the next request.
        app.get("/v1/buckets/default/collections/c/records", headers=headers, status=401)
        bob = auth(fxa_server.mint_jwt(fxa_server.uid_for("bob@example.com")))
        app.get("/v1/buckets/default/collections/c/records", headers=bob, status=200)

    def test_the_tombstone_of_a_deleted_default_bucket_goes_too(self, app, fxa_server):
        seeded = seed(app, fxa_server)
        app.delete("/v1/buckets/default", headers=seeded.alice_headers)
        tombstone = ("", "bucket", seeded.alice_bucket, True)
        before = Snapshot.of(app.app.registry)
        assert tombstone in before.objects

        report = delete(app, seeded.alice)

        assert tombstone not in Snapshot.of(app.app.registry).objects
        assert Snapshot.of(app.app.registry) == before.without_alice(seeded)
        assert report.buckets == 1  # The notes one.
        assert report.tombstones == 1  # The bucket's (Kinto purged those under it).

    def test_deletes_more_than_a_page(self, make_app, fxa_server, backend, monkeypatch):
        monkeypatch.setattr(accounts, "PAGE_SIZE", 2)
        app = make_app(events_settings(fxa_server.oauth_uri, backend, storage_max_fetch_size="3"))
        uid = fxa_server.uid_for("alice@example.com")
        headers = auth(fxa_server.mint_jwt(uid))
        bob = f"fxa:{fxa_server.uid_for('bob@example.com')}"
        for i in range(5):
            app.put_json(
                f"/v1/buckets/default/groups/g{i}", {"data": {"members": [bob]}}, headers=headers
            )
            app.put_json(f"/v1/buckets/default/collections/c/records/r{i}", {}, headers=headers)

        report = delete(app, uid)

        assert report.objects == 11  # 5 groups, 1 collection, 5 records.
        assert report.memberships == 0  # Bob's memberships are counted in neither user...
        snapshot = Snapshot.of(app.app.registry)
        assert snapshot.objects == set()
        assert snapshot.memberships == set()  # ...but they are gone with the groups.
        assert snapshot.acl == set()

    def test_the_default_bucket_id_is_kintos(self, make_app, fxa_server):
        app = make_app(
            events_settings(fxa_server.oauth_uri, {}, default_bucket_hmac_secret="another secret")
        )
        uid = fxa_server.uid_for("alice@example.com")
        for token, user_id in (
            (fxa_server.mint_jwt(uid), f"fxa:{uid}"),
            (fxa_server.mint_jwt(uid, scope=NOTES, client_id="notes-client"), f"fxa:{uid}-notes"),
        ):
            expected = app.get("/v1/", headers=auth(token)).json["user"]["bucket"]
            assert accounts.user_default_bucket_id(app.app.registry, user_id) == expected

    def test_the_policy_name_comes_from_multiauth(self, make_app, fxa_server):
        app = make_app(
            events_settings(
                fxa_server.oauth_uri,
                {},
                **{
                    "multiauth.policies": "accounts",
                    "multiauth.policy.accounts.use": (
                        "kinto_fxa.authentication.FxAOAuthAuthenticationPolicy"
                    ),
                },
            )
        )
        uid = fxa_server.uid_for("alice@example.com")
        headers = auth(fxa_server.mint_jwt(uid))
        app.put_json("/v1/buckets/default/collections/c/records/r", {}, headers=headers)

        report = delete(app, uid)

        assert report.user_ids == [f"accounts:{uid}", f"accounts:{uid}-notes"]
        assert report.buckets == 1
        assert Snapshot.of(app.app.registry).objects == set()

    @pytest.mark.parametrize(
        "uid",
        [
            "",
            "a/b",
            "a*",
            "x" * 129,
            "é",
            "a\x00b",
            None,
            42,
            HEX + "\n",  # ``re.match`` with ``$`` let a final newline through.
            HEX + "-notes",  # Another client's user id of the same person.
            HEX.upper(),
            HEX[:-1],
            HEX + "0",
            "g" * 32,
            "a" * 64,
        ],
    )
    def test_refuses_what_is_not_a_uid(self, app, uid):
        with pytest.raises(accounts.InvalidUid):
            delete_user_data(app.app.registry, uid)
        with pytest.raises(accounts.InvalidUid):
            revoke_tokens_before(app.app.registry, uid, 1)

    def test_a_uid_naming_another_clients_user_deletes_nothing(self, app, fxa_server):
        """Issue 8.3: ``<uid>-notes`` once deleted the notes data of ``<uid>``."""
        seeded = seed(app, fxa_server)
        before = Snapshot.of(app.app.registry)
        for uid in (f"{seeded.alice}-notes", seeded.alice + "\n"):
            with pytest.raises(accounts.InvalidUid), transaction.manager:
                delete_user_data(app.app.registry, uid)
        assert Snapshot.of(app.app.registry) == before
        app.get(
            "/v1/buckets/default/collections/notes/records/n1", headers=seeded.alice_notes_headers
        )

    def test_the_fixtures_mint_valid_uids(self, fxa_server):
        for email in ("alice@example.com", "bob@example.com", "Mixed.Case@Example.COM", "é@x"):
            assert is_fxa_uid(fxa_server.uid_for(email))
        assert accounts.check_uid(HEX) == HEX


class TestTransaction:
    @pytest.fixture
    def app(self, make_app, fxa_server, postgresql_url):
        from tests.conftest import backend_settings

        return make_app(
            events_settings(fxa_server.oauth_uri, backend_settings("postgresql", postgresql_url))
        )

    def test_nothing_is_deleted_when_the_transaction_aborts(self, app, fxa_server):
        seeded = seed(app, fxa_server)
        before = Snapshot.of(app.app.registry)

        with pytest.raises(RuntimeError), transaction.manager:
            report = delete_user_data(app.app.registry, seeded.alice)
            assert report.deleted_anything
            raise RuntimeError("Something failed before the commit")

        assert Snapshot.of(app.app.registry) == before


class TestRevokeTokensBefore:
    def test_tokens_issued_before_the_change_are_refused(self, app, fxa_server):
        uid = fxa_server.uid_for("alice@example.com")
        old = auth(fxa_server.mint_jwt(uid, generation=1_000_000))
        new = auth(fxa_server.mint_jwt(uid, generation=2_000_000))
        app.get("/v1/buckets", headers=old, status=200)  # Verified and cached.

        with transaction.manager:  # As the webhook and the SQS consumer do.
            assert revoke_tokens_before(app.app.registry, uid, 2_000_000) == 2_000_000

        app.get("/v1/buckets", headers=old, status=401)
        app.get("/v1/buckets", headers=new, status=200)

    def test_an_older_event_never_lowers_the_cutoff(self, app, fxa_server):
        uid = fxa_server.uid_for("alice@example.com")
        with transaction.manager:  # As the webhook and the SQS consumer do.
            revoke_tokens_before(app.app.registry, uid, 2_000_000)
        with transaction.manager:
            assert revoke_tokens_before(app.app.registry, uid, 1_000_000) == 2_000_000
        middle = auth(fxa_server.mint_jwt(uid, generation=1_500_000))
        app.get("/v1/buckets", headers=middle, status=401)
