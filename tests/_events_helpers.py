"""Helpers shared by the account-events tests: seeding two users' data through a real Kinto
app, and reading back every object, ACL entry and group membership of the backends."""

import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
import transaction

from kinto_fxa import revocation
from kinto_fxa.events import METRIC_EVENTS
from tests.conftest import kinto_settings


NOTES = "https://identity.mozilla.com/apps/notes"

#: A client next to the default one: its users get the id ``<uid>-notes``.
NOTES_CLIENT = {
    "fxa-oauth.clients.notes.client_id": "notes-client",
    "fxa-oauth.clients.notes.required_scope": NOTES,
}


class RecordingMetrics:
    """A Kinto metrics service keeping what it is told."""

    def __init__(self) -> None:
        self.counts: list[tuple[str, dict[str, Any]]] = []
        self.timers: list[tuple[str, dict[str, Any]]] = []

    def count(self, key: str, count: int = 1, unique: Any = None) -> None:
        self.counts.append((key, dict(unique or [])))

    def timer(self, key: str, value: Any = None, labels: Any = ()) -> None:
        self.timers.append((key, dict(labels)))

    def observe(self, key: str, value: Any, labels: Any = ()) -> None:
        pass

    def outcomes(self) -> list[tuple[str, str]]:
        """``(event, outcome)`` of every account-event count."""
        return [(c["event"], c["outcome"]) for key, c in self.counts if key == METRIC_EVENTS]


class FakeSQS:
    """The SQS client calls :meth:`kinto_fxa.sqs.Consumer.process` makes, recorded."""

    def __init__(self) -> None:
        self.deleted: list[str] = []

    def delete_message(self, QueueUrl: str, ReceiptHandle: str) -> None:
        self.deleted.append(ReceiptHandle)


def sqs_message(body: Any, handle: str = "handle") -> dict[str, Any]:
    """An SQS message as boto3's ``receive_message`` hands it out."""
    return {
        "MessageId": "message-" + handle,
        "ReceiptHandle": handle,
        "Body": body,
        "Attributes": {"ApproximateReceiveCount": "1"},
    }


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def events_settings(oauth_uri: str, backend: dict[str, str], **extra: Any) -> dict[str, Any]:
    """A Kinto with kinto-fxa, the default bucket plugin, top-level tokens and a second
    client ``notes``.

    ``local_cache_ttl_seconds = 0``: a revoked token is refused on the very next request.
    """
    return kinto_settings(
        oauth_uri,
        **backend,
        **NOTES_CLIENT,
        **{"fxa-oauth.local_cache_ttl_seconds": 0, "fxa-oauth.accept_top_level_tokens": True},
        **extra,
    )


def sns(message: dict[str, Any]) -> str:
    """An SQS message body as SNS delivers FxA's notifications."""
    return json.dumps({"Type": "Notification", "Message": json.dumps(message)})


@dataclass
class Seeded:
    alice: str  # FxA uids
    bob: str
    alice_bucket: str  # default bucket ids
    alice_notes_bucket: str
    bob_bucket: str
    alice_headers: dict[str, str]
    alice_notes_headers: dict[str, str]
    bob_headers: dict[str, str]

    @property
    def alice_principals(self) -> set[str]:
        return {f"fxa:{self.alice}", f"fxa:{self.alice}-notes"}

    @property
    def alice_bucket_uris(self) -> set[str]:
        return {f"/buckets/{self.alice_bucket}", f"/buckets/{self.alice_notes_bucket}"}

    def is_alices(self, uri: str) -> bool:
        """Whether ``uri`` is one of Alice's default buckets or under it."""
        return any(uri == b or uri.startswith(b + "/") for b in self.alice_bucket_uris)


def seed(app: Any, fxa_server: Any) -> Seeded:
    """Give Alice (two clients) and Bob data in their default buckets, shared both ways.

    - Alice: records (one deleted: a tombstone), a collection Bob may read, a group
      ``friends`` Bob is in; through the ``notes`` client a second default bucket.
    - Bob: records (one deleted), a collection Alice may write and Alice's group and
      Alice's notes id may read, a group ``team`` with both of them, a shared named bucket.
    """
    alice = fxa_server.uid_for("alice@example.com")
    bob = fxa_server.uid_for("bob@example.com")
    alice_h = auth(fxa_server.mint_jwt(alice))
    notes_h = auth(fxa_server.mint_jwt(alice, scope=NOTES, client_id="notes-client"))
    bob_h = auth(fxa_server.mint_jwt(bob))

    def bucket_of(headers: dict[str, str]) -> str:
        return str(app.get("/v1/", headers=headers).json["user"]["bucket"])

    alice_bucket, notes_bucket, bob_bucket = (
        bucket_of(alice_h),
        bucket_of(notes_h),
        bucket_of(bob_h),
    )
    assert len({alice_bucket, notes_bucket, bob_bucket}) == 3

    tasks = "/v1/buckets/default/collections/tasks"
    for rid in ("t1", "t2", "t3"):
        app.put_json(f"{tasks}/records/{rid}", {"data": {"title": rid}}, headers=alice_h)
    app.delete(f"{tasks}/records/t3", headers=alice_h)
    app.patch_json(tasks, {"permissions": {"read": [f"fxa:{bob}"]}}, headers=alice_h)
    app.put_json(
        "/v1/buckets/default/groups/friends",
        {"data": {"members": [f"fxa:{bob}"]}},
        headers=alice_h,
    )
    app.put_json(
        "/v1/buckets/default/collections/notes/records/n1", {"data": {"n": 1}}, headers=notes_h
    )

    shared = "/v1/buckets/default/collections/shared"
    for rid in ("s1", "s2"):
        app.put_json(f"{shared}/records/{rid}", {"data": {"title": rid}}, headers=bob_h)
    app.delete(f"{shared}/records/s2", headers=bob_h)
    readers = [f"/buckets/{alice_bucket}/groups/friends", f"fxa:{alice}-notes"]
    app.patch_json(
        shared,
        {"permissions": {"write": [f"fxa:{alice}"], "read": readers}},
        headers=bob_h,
    )
    app.put_json(
        "/v1/buckets/default/groups/team",
        {"data": {"members": [f"fxa:{alice}", f"fxa:{bob}"]}},
        headers=bob_h,
    )
    app.put_json(
        "/v1/buckets/common",
        {"permissions": {"write": [f"fxa:{alice}", f"fxa:{bob}"]}},
        headers=bob_h,
    )
    app.put_json("/v1/buckets/common/collections/c", {}, headers=bob_h)
    app.put_json("/v1/buckets/common/collections/c/records/r1", {"data": {}}, headers=alice_h)

    return Seeded(
        alice=alice,
        bob=bob,
        alice_bucket=alice_bucket,
        alice_notes_bucket=notes_bucket,
        bob_bucket=bob_bucket,
        alice_headers=alice_h,
        alice_notes_headers=notes_h,
        bob_headers=bob_h,
    )


Objects = set[tuple[str, str, str, bool]]
ACL = set[tuple[str, str, str]]
Memberships = set[tuple[str, str]]


def _rows(client: Any, query: str) -> list[Any]:
    with transaction.manager, client.connect(readonly=True) as conn:
        return list(conn.execute(sa.text(query)).fetchall())


def dump_objects(registry: Any) -> Objects:
    """Every stored object as ``(parent_id, resource_name, id, is_tombstone)``, but for
    kinto-fxa's own revocation cutoffs (a deletion adds one: see :func:`cutoffs`)."""
    storage = registry.storage
    found: Objects = set()
    if hasattr(storage, "_store"):  # Memory backend.
        for deleted, area in ((False, storage._store), (True, storage._cemetery)):
            for parent_id, resources in area.items():
                for resource_name, objects in resources.items():
                    found |= {(parent_id, resource_name, oid, deleted) for oid in objects}
    else:
        rows = _rows(storage.client, "SELECT parent_id, resource_name, id, deleted FROM objects")
        found = {(r.parent_id, r.resource_name, r.id, bool(r.deleted)) for r in rows}
    return {o for o in found if o[1] != revocation.RESOURCE_NAME}


def cutoffs(registry: Any) -> set[str]:
    """The uids that have a revocation cutoff in storage."""
    return {
        obj["id"]
        for obj in registry.storage.list_all(
            resource_name=revocation.RESOURCE_NAME, parent_id=revocation.PARENT_ID
        )
    }


def dump_acl(registry: Any) -> ACL:
    """Every access control entry as ``(object_id, permission, principal)``."""
    permission = registry.permission
    if hasattr(permission, "_store"):
        found: ACL = set()
        for key, principals in permission._store.items():
            if key.startswith("permission:"):
                _, object_id, perm = key.split(":", 2)
                found |= {(object_id, perm, p) for p in principals}
        return found
    query = "SELECT object_id, permission, principal FROM access_control_entries"
    return {(r.object_id, r.permission, r.principal) for r in _rows(permission.client, query)}


def dump_memberships(registry: Any) -> Memberships:
    """Every group membership as ``(user_id, group principal)``."""
    permission = registry.permission
    if hasattr(permission, "_store"):
        return {
            (key[len("user:") :], p)
            for key, principals in permission._store.items()
            if key.startswith("user:")
            for p in principals
        }
    query = "SELECT user_id, principal FROM user_principals"
    return {(r.user_id, r.principal) for r in _rows(permission.client, query)}


@dataclass
class Snapshot:
    objects: Objects
    acl: ACL
    memberships: Memberships

    @classmethod
    def of(cls, registry: Any) -> "Snapshot":
        return cls(dump_objects(registry), dump_acl(registry), dump_memberships(registry))

    def without_alice(self, seeded: Seeded) -> "Snapshot":
        """What must remain once Alice's data is deleted: everything else, untouched."""
        groups = {
            f"/buckets/{b}/groups/{gid}"
            for (parent, resource, gid, _) in self.objects
            for b in (seeded.alice_bucket, seeded.alice_notes_bucket)
            if resource == "group" and parent == f"/buckets/{b}"
        }
        gone = seeded.alice_principals | groups
        return Snapshot(
            objects={
                o
                for o in self.objects
                if not seeded.is_alices(o[0])
                and not (o[1] == "bucket" and f"/buckets/{o[2]}" in seeded.alice_bucket_uris)
            },
            acl={a for a in self.acl if not seeded.is_alices(a[0]) and a[2] not in gone},
            memberships={m for m in self.memberships if m[0] not in gone and m[1] not in gone},
        )


def assert_seeded_data_is_there(snapshot: Snapshot, seeded: Seeded) -> None:
    """The seed really put Alice's data in every place the deletion must clean."""
    alice, bob = seeded.alice_principals, f"fxa:{seeded.bob}"
    friends = f"/buckets/{seeded.alice_bucket}/groups/friends"
    assert any(seeded.is_alices(o[0]) and o[1] == "record" and not o[3] for o in snapshot.objects)
    assert any(seeded.is_alices(o[0]) and o[3] for o in snapshot.objects)  # A tombstone.
    assert any(seeded.is_alices(o[0]) for o in snapshot.acl)
    assert any(o[2] in alice and not seeded.is_alices(o[0]) for o in snapshot.acl)
    assert any(o[2] == friends for o in snapshot.acl)
    assert (bob, friends) in snapshot.memberships
    assert any(m[0] in alice for m in snapshot.memberships)


LOGGING_SECTIONS = """
[loggers]
keys = root, kinto_fxa

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = WARNING
handlers = console

[logger_kinto_fxa]
level = INFO
handlers =
qualname = kinto_fxa

[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = generic

[formatter_generic]
format = %(levelname)s %(name)s %(message)s
"""


def write_ini(path: Any, settings: dict[str, Any], with_logging: bool = True) -> str:
    """A Kinto .ini file holding ``settings``; logging of ``kinto_fxa`` at INFO to stderr.

    (Without logging sections, loading it does not reconfigure the test process' logging.)
    """
    lines = ["[app:main]", "use = egg:kinto"]
    for key, value in settings.items():
        text = str(value).replace("%", "%%")
        lines.append(f"{key} = {text}")
    content = "\n".join(lines) + "\n"
    if with_logging:
        content += LOGGING_SECTIONS
    path.write_text(content)
    return str(path)
