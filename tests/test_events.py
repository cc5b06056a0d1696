"""Parsing FxA account events (SQS notifications, Security Event Tokens) and counting them."""

import json
from types import SimpleNamespace

import pytest

from kinto_fxa import events
from kinto_fxa.events import AccountEvent, Action, InvalidEvent, parse_sqs_message
from tests._events_helpers import (
    sns,
)
from tests.sqs_fixtures import (
    UID,
)


# Parsing.


class TestParseSQSMessage:
    def test_delete(self):
        event = parse_sqs_message(sns({"event": "delete", "uid": UID, "ts": 1.5}))
        assert event == AccountEvent(name="delete", action=Action.DELETE, uid=UID)

    def test_raw_message_delivery_and_bytes(self):
        body = json.dumps({"event": "delete", "uid": UID}).encode()
        assert parse_sqs_message(body).action is Action.DELETE

    @pytest.mark.parametrize(
        "fields,expected",
        [
            ({"generation": 1_700_000_000_123, "ts": 1}, 1_700_000_000_123),
            ({"ts": 1_700_000_000.5}, 1_700_000_000_500),
            ({"timestamp": 1_700_000_000_999}, 1_700_000_000_999),
        ],
    )
    @pytest.mark.parametrize("name", ["passwordChange", "reset"])
    def test_password_change_time(self, name, fields, expected):
        event = parse_sqs_message(sns({"event": name, "uid": UID, **fields}))
        assert event == AccountEvent(
            name=name, action=Action.REVOKE, uid=UID, changed_at_ms=expected
        )

    @pytest.mark.parametrize(
        "name",
        [
            "primaryEmailChanged",
            "profileDataChange",
            "subscription:update",
            "newsletters:update",
            "login",
            "verified",
            "device:create",
            "device:delete",
        ],
    )
    def test_known_events_to_ignore(self, name):
        event = parse_sqs_message(sns({"event": name, "uid": UID}))
        assert event == AccountEvent(name=name, action=Action.IGNORE, uid=UID)
        assert parse_sqs_message(sns({"event": name})).uid is None
        assert parse_sqs_message(sns({"event": name, "uid": "x\ny"})).uid is None

    @pytest.mark.parametrize(
        "body",
        [
            "not json",
            "[1, 2]",
            "{}",
            json.dumps({"Message": "not json"}),
            json.dumps({"Message": 42}),
            json.dumps({"Message": "[]"}),
            sns({"uid": UID}),
            sns({"event": 42, "uid": UID}),
            sns({"event": "unknown", "uid": UID}),
            sns({"event": "delete"}),
            sns({"event": "delete", "uid": "../../etc"}),
            sns({"event": "delete", "uid": "a\x00b"}),
            sns({"event": "delete", "uid": UID + "-notes"}),  # Issue 8.3.
            sns({"event": "delete", "uid": UID + "\n"}),
            sns({"event": "delete", "uid": UID.upper()}),
            sns({"event": "reset", "uid": UID + "-notes", "generation": 1}),
            sns({"event": "passwordChange", "uid": UID}),
            sns({"event": "passwordChange", "uid": UID, "generation": True}),
            sns({"event": "passwordChange", "uid": UID, "generation": "1"}),
            sns({"event": "passwordChange", "uid": UID, "generation": -1}),
            # Found by tests/test_fuzz.py: not timestamps; 1e308 s in ms overflowed.
            sns({"event": "passwordChange", "uid": UID, "generation": 2**53}),
            sns({"event": "passwordChange", "uid": UID, "generation": 2**80}),
            sns({"event": "reset", "uid": UID, "ts": 1e308}),
            json.dumps({"event": "reset", "uid": UID, "ts": float("nan")}),
            None,
        ],
    )
    def test_junk(self, body):
        with pytest.raises(InvalidEvent):
            parse_sqs_message(body)


class TestParseSecurityEvent:
    def test_several_events(self):
        claims = {
            "sub": UID,
            "events": {
                events.SET_PASSWORD_CHANGE: {"changeTime": 1234},
                "https://example.com/other": {},
            },
        }
        assert events.parse_security_event(claims) == [
            AccountEvent("password-change", Action.REVOKE, UID, 1234),
            AccountEvent("unknown", Action.IGNORE, UID),
        ]
        assert events.set_event_name(events.SET_DELETE_USER) == "delete-user"
        assert events.set_event_name("urn:other") == "urn:other"


class TestMetrics:
    def test_without_a_metrics_service(self):
        registry = SimpleNamespace()  # Kinto without its metrics initialization step.
        events.count(registry, "sqs", "delete", "deleted")
        with events.timed(registry, "sqs", "delete"):
            pass
