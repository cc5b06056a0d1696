"""FxA account events, whichever way they arrive.

Two sources tell a relying service about account changes:

- SQS "service notifications": an SNS envelope ``{"Message": "<JSON>"}`` holding
  ``{"event": "delete", "uid": ...}`` and friends (:func:`parse_sqs_message`);
- the event broker's webhook: a Security Event Token whose ``events`` claim maps event URIs
  to payloads (:func:`parse_security_event`).

Both are turned into :class:`AccountEvent` objects, which :func:`handle_event` applies with
:mod:`kinto_fxa.accounts`. Parsing never touches a backend; handling never parses.
"""

import enum
import json
import logging
import math
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager as ContextManager
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from kinto_fxa import accounts, metrics
from kinto_fxa.uids import is_fxa_uid


logger = logging.getLogger(__name__)

#: Metric names (Kinto's metrics backend: StatsD, Prometheus...).
METRIC_EVENTS = metrics.ACCOUNT_EVENTS
METRIC_DURATION = metrics.ACCOUNT_EVENT_DURATION

#: Timestamps are JavaScript numbers of ms: anything past 2**53 ms (year 287,396) is junk.
MAX_TIMESTAMP_MS = 2**53

SET_EVENT_PREFIX = "https://schemas.accounts.firefox.com/event/"
SET_DELETE_USER = SET_EVENT_PREFIX + "delete-user"
SET_PASSWORD_CHANGE = SET_EVENT_PREFIX + "password-change"
SET_PROFILE_CHANGE = SET_EVENT_PREFIX + "profile-change"
SET_SUBSCRIPTION_STATE_CHANGE = SET_EVENT_PREFIX + "subscription-state-change"


class Action(enum.Enum):
    """What an event requires from us."""

    DELETE = "delete"  # Delete all the user's data.
    REVOKE = "revoke"  # Refuse the user's tokens issued before ``changed_at_ms``.
    IGNORE = "ignore"  # Nothing: log and acknowledge.


class InvalidEvent(ValueError):
    """The event cannot be understood: not JSON, missing fields, unknown type..."""


@dataclass(frozen=True)
class AccountEvent:
    """One account event, independent of its source."""

    #: The event's name as FxA spells it (``delete``, ``passwordChange``, ``delete-user``...).
    name: str
    action: Action
    uid: str | None = None
    #: For :attr:`Action.REVOKE`: when the password changed, in ms.
    changed_at_ms: int | None = None


@dataclass(frozen=True)
class Outcome:
    """What handling an event did."""

    #: ``deleted``, ``revoked`` or ``ignored``.
    status: str
    #: For deletions, what was deleted.
    report: accounts.DeletionReport | None = None


SQS_ACTIONS: dict[str, Action] = {
    "delete": Action.DELETE,
    "passwordChange": Action.REVOKE,
    "reset": Action.REVOKE,
    "primaryEmailChanged": Action.IGNORE,
    "profileDataChange": Action.IGNORE,
    "subscription:update": Action.IGNORE,
    "newsletters:update": Action.IGNORE,
    "login": Action.IGNORE,
    "verified": Action.IGNORE,
}
#: Prefixes of other known SQS event types, also acknowledged (``device:create``...).
SQS_IGNORED_PREFIXES = ("device:",)

SET_ACTIONS: dict[str, Action] = {
    SET_DELETE_USER: Action.DELETE,
    SET_PASSWORD_CHANGE: Action.REVOKE,
    SET_PROFILE_CHANGE: Action.IGNORE,
    SET_SUBSCRIPTION_STATE_CHANGE: Action.IGNORE,
}


def _uid(value: Any) -> str:
    try:
        return accounts.check_uid(value)
    except accounts.InvalidUid as e:
        raise InvalidEvent(str(e)) from None


def _timestamp_ms(value: Any, scale: int, name: str) -> int:
    """``value``, a positive JSON number, times ``scale``: a timestamp in ms, below
    :data:`MAX_TIMESTAMP_MS` (a huge float times ``scale`` is infinite: ``int`` raises)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidEvent(f"{name} must be a number, got {value!r:.80}")
    if value <= 0:
        raise InvalidEvent(f"{name} must be positive, got {value!r:.80}")
    ms = value * scale
    if not ms < MAX_TIMESTAMP_MS:
        raise InvalidEvent(f"{name} is not a timestamp, got {value!r:.80}")
    return int(ms)


def _change_time_ms(message: Mapping[str, Any]) -> int:
    """When a ``passwordChange``/``reset`` happened: ``generation`` (ms), else ``ts`` (s),
    else the message's ``timestamp`` (ms)."""
    for key, scale in (("generation", 1), ("ts", 1000), ("timestamp", 1)):
        if message.get(key) is not None:
            return _timestamp_ms(message[key], scale, key)
    raise InvalidEvent("Password change without generation, ts or timestamp")


def _load_object(text: Any, what: str) -> dict[str, Any]:
    if isinstance(text, bytes | bytearray):
        text = text.decode("utf-8", errors="replace")
    if not isinstance(text, str):
        raise InvalidEvent(f"{what} is not a string")
    try:
        value = json.loads(text)
    except ValueError:
        raise InvalidEvent(f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise InvalidEvent(f"{what} is not a JSON object")
    return value


def parse_sqs_message(body: Any) -> AccountEvent:
    """Parse the body of an SQS message of FxA's service notifications.

    The body is normally an SNS envelope (``{"Message": "<JSON string>"}``); a body that
    already is the event (SNS "raw message delivery") is accepted too.

    :raises InvalidEvent: for anything else.
    """
    envelope = _load_object(body, "Message body")
    if "Message" in envelope:
        message = _load_object(envelope["Message"], "SNS Message")
    elif "event" in envelope:
        message = envelope
    else:
        raise InvalidEvent("Neither an SNS envelope nor an event")

    name = message.get("event")
    if not isinstance(name, str):
        raise InvalidEvent("Missing event type")
    action = SQS_ACTIONS.get(name)
    if action is None and name.startswith(SQS_IGNORED_PREFIXES):
        action = Action.IGNORE
    if action is None:
        raise InvalidEvent(f"Unknown event type {name!r:.80}")

    if action is Action.IGNORE:
        other = message.get("uid")  # Only logged: kept if it is a uid, not any string.
        return AccountEvent(name=name, action=action, uid=other if is_fxa_uid(other) else None)
    uid: str = _uid(message.get("uid"))
    if action is Action.DELETE:
        return AccountEvent(name=name, action=action, uid=uid)
    changed_at = _change_time_ms(message)
    return AccountEvent(name=name, action=action, uid=uid, changed_at_ms=changed_at)


def set_event_name(uri: str) -> str:
    """``delete-user`` for ``https://schemas.accounts.firefox.com/event/delete-user``."""
    return uri[len(SET_EVENT_PREFIX) :] if uri.startswith(SET_EVENT_PREFIX) else uri


def parse_security_event(claims: Mapping[str, Any]) -> list[AccountEvent]:
    """The events of a verified Security Event Token (RFC 8417) from FxA's event broker.

    Events of a type we do not know are acknowledged (the broker may add new ones).

    :raises InvalidEvent: if ``sub``, ``events`` or a payload we need is malformed.
    """
    uid = _uid(claims.get("sub"))
    events = claims.get("events")
    if not isinstance(events, dict) or not events:
        raise InvalidEvent("The events claim must be a non-empty object")
    parsed = []
    for uri, payload in events.items():
        if not isinstance(payload, dict):
            raise InvalidEvent(f"The payload of {uri!r:.80} is not an object")
        name = set_event_name(uri)
        action = SET_ACTIONS.get(uri)
        if action is None:
            logger.warning("Unknown FxA security event %r: acknowledged", uri[:200])
            action = Action.IGNORE
            name = "unknown"
        changed_at = None
        if action is Action.REVOKE:
            changed_at = _timestamp_ms(payload.get("changeTime"), 1, "changeTime")
        parsed.append(AccountEvent(name=name, action=action, uid=uid, changed_at_ms=changed_at))
    return parsed


def handle_event(registry: Any, event: AccountEvent) -> Outcome:
    """Apply ``event``; idempotent. The caller owns the transaction."""
    if event.action is Action.DELETE:
        assert event.uid is not None
        report = accounts.delete_user_data(registry, event.uid)
        return Outcome(status="deleted", report=report)
    if event.action is Action.REVOKE:
        assert event.uid is not None and event.changed_at_ms is not None
        accounts.revoke_tokens_before(registry, event.uid, event.changed_at_ms)
        return Outcome(status="revoked")
    logger.info("FxA account event %r for %s: nothing to do", event.name, event.uid)
    return Outcome(status="ignored")


def count(registry: Any, source: str, event: str, outcome: str) -> None:
    """Count one event handled (``outcome``: ``deleted``, ``invalid``, ``error``...)."""
    metrics.for_registry(registry).count(
        METRIC_EVENTS, source=source, event=event, outcome=outcome
    )


def timed(registry: Any, source: str, event: str) -> ContextManager[None]:
    """Time the handling of an event (also when it fails)."""
    return metrics.for_registry(registry).timed(METRIC_DURATION, source=source, event=event)


def process(
    registry: Any,
    source: str,
    event: AccountEvent,
    transaction: ContextManager[Any] | None = None,
    before_commit: Callable[[], None] | None = None,
) -> Outcome:
    """The pipeline every source runs an event through: timed, handled (within
    ``transaction``, when the source owns one; ``before_commit`` runs inside it), counted,
    logged. The source keeps only its transaction and acknowledgement policy.

    :raises Exception: whatever handling raised (counted as ``error``).
    """
    with timed(registry, source, event.name):
        try:
            with transaction if transaction is not None else nullcontext():
                outcome = handle_event(registry, event)
                if before_commit is not None:
                    before_commit()
        except Exception:
            count(registry, source, event.name, "error")
            raise
    count(registry, source, event.name, outcome.status)
    logger.info("%s: %s event for %s: %s", source, event.name, event.uid, outcome.status)
    return outcome
