"""What to do when a Firefox Account is deleted or its password changes.

Every event source (the SQS consumer, the event-broker webhook) ends up here, so that the
data of a deleted account is removed the same way whichever way FxA told us.

These functions neither begin nor commit a transaction: the caller does (``pyramid_tm`` for
the webhook, :mod:`transaction` for the ``kinto-fxa`` script). With the PostgreSQL
backends the storage and permission changes therefore commit or roll back together.
"""

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from kinto.core.storage import Filter, Sort
from kinto.core.storage.exceptions import ObjectNotFoundError
from kinto.core.utils import COMPARISON
from kinto.plugins.default_bucket import default_bucket_id

from kinto_fxa.settings import FxASettings
from kinto_fxa.uids import FXA_UID, is_fxa_uid


logger = logging.getLogger(__name__)

#: What an FxA uid looks like (see :mod:`kinto_fxa.uids`): 32 lowercase hex digits, the
#: whole string. Anything else is refused before it reaches a principal, a cache key or the
#: storage: ``<uid>-notes`` is another client's user id of the same person.
UID_PATTERN = FXA_UID

#: Page size when listing the groups of a bucket.
PAGE_SIZE = 1000


class InvalidUid(ValueError):
    """The uid of an event is not something FxA would send."""


def check_uid(uid: Any) -> str:
    """``uid`` if it is exactly an FxA uid (32 lowercase hex digits).

    :raises InvalidUid: otherwise.
    """
    if not is_fxa_uid(uid):
        raise InvalidUid(f"Invalid FxA uid: {uid!r:.80}")
    return uid


@dataclass
class DeletionReport:
    """What :func:`delete_user_data` removed (for logs, metrics and tests)."""

    uid: str
    #: Every prefixed Kinto user id the uid maps to.
    user_ids: list[str] = field(default_factory=list)
    #: Default buckets that existed and were deleted.
    buckets: int = 0
    #: Live objects deleted under those buckets (collections, groups, records, ...).
    objects: int = 0
    #: Tombstones purged under those buckets (and of the buckets themselves).
    tombstones: int = 0
    #: Access control entries (object, permission) elsewhere that named the user or one of
    #: the deleted groups, and no longer do.
    acl_entries: int = 0
    #: Groups (of other users) the user was a member of. (The members of the user's own
    #: groups lose that membership too, uncounted.)
    memberships: int = 0

    @property
    def deleted_anything(self) -> bool:
        return any((self.buckets, self.objects, self.tombstones, self.acl_entries))

    def as_dict(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "user_ids": list(self.user_ids),
            "buckets": self.buckets,
            "objects": self.objects,
            "tombstones": self.tombstones,
            "acl_entries": self.acl_entries,
            "memberships": self.memberships,
        }


def user_default_bucket_id(registry: Any, prefixed_userid: str) -> str:
    """The id of ``prefixed_userid``'s default bucket, exactly as Kinto computes it."""
    request = SimpleNamespace(registry=registry, prefixed_userid=prefixed_userid)
    return default_bucket_id(request)


def _iter_ids(storage: Any, resource_name: str, parent_id: str) -> Iterator[str]:
    """Every live object id of ``resource_name`` under ``parent_id``, page by page (a
    single ``list_all`` is capped at the backend's ``max_fetch_size``)."""
    last: str | None = None
    while True:
        rules = [[Filter("id", last, COMPARISON.GT)]] if last is not None else None
        page = storage.list_all(
            resource_name=resource_name,
            parent_id=parent_id,
            sorting=[Sort("id", 1)],
            pagination_rules=rules,
            limit=PAGE_SIZE,
        )
        for obj in page:
            yield obj["id"]
        if len(page) < PAGE_SIZE:
            return
        last = page[-1]["id"]


def _delete_tree(storage: Any, permission: Any, bucket_uri: str, report: DeletionReport) -> None:
    """Delete everything under ``bucket_uri`` without leaving tombstones, like Kinto's
    ``on_buckets_deleted`` does, but in batches until nothing is left (``delete_all`` is
    capped at the backend's ``max_fetch_size``)."""
    for pattern in (bucket_uri, bucket_uri + "/*"):
        while True:
            deleted = storage.delete_all(resource_name=None, parent_id=pattern, with_deleted=False)
            if not deleted:
                break
            report.objects += len(deleted)
        report.tombstones += storage.purge_deleted(resource_name=None, parent_id=pattern)
        permission.delete_object_permissions(pattern)


def _delete_bucket(storage: Any, bucket_id: str, report: DeletionReport) -> None:
    """Delete the bucket object itself, and its tombstone if it was deleted before."""
    try:
        storage.delete(
            resource_name="bucket", parent_id="", object_id=bucket_id, with_deleted=False
        )
        report.buckets += 1
    except ObjectNotFoundError:
        tombstones = storage.list_all(
            resource_name="bucket",
            parent_id="",
            filters=[Filter("id", bucket_id, COMPARISON.EQ)],
            include_deleted=True,
        )
        if tombstones:
            # No backend purges a single tombstone: revive it, then delete it for good.
            storage.update(resource_name="bucket", parent_id="", object_id=bucket_id, obj={})
            storage.delete(
                resource_name="bucket", parent_id="", object_id=bucket_id, with_deleted=False
            )
            report.tombstones += 1


def _strip_principals(permission: Any, principals: list[str], report: DeletionReport) -> None:
    """Remove ``principals`` from every access control entry that names them."""
    accessible = permission.get_accessible_objects(principals)
    for object_id, perms in accessible.items():
        for perm in perms:
            for principal in principals:  # A no-op for those absent from this entry.
                permission.remove_principal_from_ace(object_id, perm, principal)
            report.acl_entries += 1


def _remove_memberships(permission: Any, user_id: str, report: DeletionReport) -> None:
    """Take ``user_id`` out of every group it is a member of."""
    # ``get_user_principals`` also lists the groups of ``system.Authenticated``: removing
    # those from this user is a no-op, and they are not counted.
    inherited = permission.get_user_principals("system.Authenticated")
    for principal in permission.get_user_principals(user_id):
        permission.remove_user_principal(user_id, principal)
        if principal not in inherited:
            report.memberships += 1


def delete_user_data(registry: Any, uid: str, now_ms: int | None = None) -> DeletionReport:
    """Delete everything Kinto holds for FxA user ``uid``; idempotent.

    For each user id of ``uid`` (``<policy>:<uid>`` and ``<policy>:<uid>-<client>``): its
    default bucket and everything under it (objects, tombstones, permissions), its group
    memberships, and its principal in every other ACL. The groups of the deleted buckets
    are removed from their members and from ACLs too. Other users' data is untouched.

    Tokens of ``uid`` issued before now are refused from now on (see
    :mod:`kinto_fxa.revocation`), so a token still cached cannot recreate the data.

    :raises InvalidUid: if ``uid`` does not look like an FxA uid.
    """
    check_uid(uid)
    settings: FxASettings = registry.fxa_settings
    storage, permission = registry.storage, registry.permission
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    registry.fxa_revocations.record(uid, now_ms)

    report = DeletionReport(uid=uid, user_ids=settings.user_ids(uid))
    principals = list(report.user_ids)
    for user_id in report.user_ids:
        bucket_id = user_default_bucket_id(registry, user_id)
        bucket_uri = f"/buckets/{bucket_id}"
        for group_id in list(_iter_ids(storage, "group", bucket_uri)):
            group_uri = f"{bucket_uri}/groups/{group_id}"
            principals.append(group_uri)
            # Kinto's ``on_groups_deleted``: nobody is a member of a deleted group.
            permission.remove_principal(group_uri)
        _delete_tree(storage, permission, bucket_uri, report)
        _delete_bucket(storage, bucket_id, report)
        _remove_memberships(permission, user_id, report)
    _strip_principals(permission, principals, report)
    logger.info("Deleted the data of FxA user %s: %s", uid, report.as_dict())
    return report


def revoke_tokens_before(registry: Any, uid: str, changed_at_ms: int) -> int:
    """After a password change or reset at ``changed_at_ms``, refuse ``uid``'s tokens
    issued earlier (in every process within ``FxASettings.revocation_bound_seconds``; at
    once in this one).

    :returns: the cutoff now in force (an older event never lowers it).
    :raises InvalidUid: if ``uid`` does not look like an FxA uid.
    """
    check_uid(uid)
    cutoff: int = registry.fxa_revocations.record(uid, changed_at_ms)
    logger.info("FxA user %s changed password: tokens issued before %s refused", uid, cutoff)
    return cutoff
