"""Account events from SQS: parsing, the consumer, and the ``kinto-fxa`` command.

The acceptance tests run the real ``kinto-fxa`` script as a process, against moto's SQS
server on 127.0.0.1 and a Kinto on PostgreSQL; the others drive the same code in-process.
"""

import json
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from kinto.core.metrics import IMetricsService
from moto.server import ThreadedMotoServer

from kinto_fxa import cli, events, sqs
from kinto_fxa.events import AccountEvent, Action, InvalidEvent, parse_sqs_message
from tests._events_helpers import (
    FakeSQS,
    RecordingMetrics,
    Snapshot,
    assert_seeded_data_is_there,
    auth,
    events_settings,
    seed,
    sns,
    sqs_message,
    write_ini,
)
from tests.conftest import backend_settings


BIN = Path(sys.executable).parent
KINTO_FXA = str(BIN / "kinto-fxa")
KINTO = str(BIN / "kinto")
REGION = "us-east-1"
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
UID = "0123456789abcdef0123456789abcdef"
#: Upper bound on waiting for something that should happen; only reached when it does not.
DEADLINE_SECONDS = 60


def wait_until(predicate: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out waiting until {what}")
        time.sleep(0.05)


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


# SQS.


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def sqs_endpoint() -> Iterator[str]:
    """moto's SQS, served over HTTP on 127.0.0.1 (the CLI processes talk to it)."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    yield f"http://127.0.0.1:{server._port}"
    server.stop()


@pytest.fixture
def sqs_client(sqs_endpoint, monkeypatch):
    for key, value in AWS_ENV.items():
        monkeypatch.setenv(key, value)
    return boto3.client("sqs", region_name=REGION, endpoint_url=sqs_endpoint)


@pytest.fixture
def queue_url(sqs_client) -> str:
    """A fresh queue; messages come back 2 s after an unfinished receive."""
    name = f"fxa-events-{uuid.uuid4().hex[:10]}"
    attributes = {"VisibilityTimeout": "2"}
    return str(sqs_client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"])


def send(client: Any, url: str, *bodies: str) -> None:
    for body in bodies:
        client.send_message(QueueUrl=url, MessageBody=body)


def in_queue(client: Any, url: str) -> int:
    """Messages in the queue, visible or in flight."""
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = client.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return sum(int(attributes[n]) for n in names)


def visible(client: Any, url: str) -> int:
    names = ["ApproximateNumberOfMessages"]
    attributes = client.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


JUNK = (
    "not json",
    json.dumps({"Message": "{oops"}),
    sns({"event": "delete"}),
    sns({"event": "somethingNew", "uid": UID}),
)


@pytest.fixture
def app(make_app, fxa_server):
    app = make_app(events_settings(fxa_server.oauth_uri, {}))
    app.metrics = RecordingMetrics()
    app.app.registry.registerUtility(app.metrics, IMetricsService)
    return app


def consumer_for(app, client, url, **kw) -> sqs.Consumer:
    kw.setdefault("sleep", lambda seconds: None)
    return sqs.Consumer(app.app.registry, client, url, wait_time=0, **kw)


def drain(consumer: sqs.Consumer) -> None:
    """Poll until a receive comes back empty."""
    while consumer.poll():
        pass


class TestConsumer:
    def test_deletes_the_user_and_drops_the_junk(self, app, fxa_server, sqs_client, queue_url):
        seeded = seed(app, fxa_server)
        before = Snapshot.of(app.app.registry)
        send(sqs_client, queue_url, *JUNK, sns({"event": "delete", "uid": seeded.alice}))

        drain(consumer_for(app, sqs_client, queue_url))

        assert Snapshot.of(app.app.registry) == before.without_alice(seeded)
        assert in_queue(sqs_client, queue_url) == 0
        assert sorted(app.metrics.outcomes()) == [
            ("delete", "deleted"),
            *[("invalid", "invalid")] * len(JUNK),
        ]
        assert (events.METRIC_DURATION, {"source": "sqs", "event": "delete"}) in (
            app.metrics.timers
        )

    def test_a_delete_naming_another_clients_user_id_is_dropped(self, app, fxa_server):
        """Issue 8.3: a ``delete`` for ``<uid>-notes`` deleted the notes data of ``<uid>``."""
        seeded = seed(app, fxa_server)
        before = Snapshot.of(app.app.registry)
        client = FakeSQS()
        consumer = sqs.Consumer(app.app.registry, client, "https://sqs.test/q", wait_time=0)
        for i, uid in enumerate((f"{seeded.alice}-notes", seeded.alice + "\n")):
            body = sns({"event": "delete", "uid": uid})
            assert consumer.process(sqs_message(body, str(i))) == "invalid"

        assert client.deleted == ["0", "1"]  # Dropped from the queue: it never becomes valid.
        assert Snapshot.of(app.app.registry) == before
        notes = "/v1/buckets/default/collections/notes/records/n1"
        app.get(notes, headers=seeded.alice_notes_headers, status=200)

    def test_password_change_and_ignored_events(self, app, fxa_server, sqs_client, queue_url):
        uid = fxa_server.uid_for("alice@example.com")
        old = auth(fxa_server.mint_jwt(uid, generation=1_000))
        app.get("/v1/buckets", headers=old, status=200)
        send(
            sqs_client,
            queue_url,
            sns({"event": "passwordChange", "uid": uid, "generation": 2_000}),
            sns({"event": "login", "uid": uid}),
        )

        drain(consumer_for(app, sqs_client, queue_url))

        app.get("/v1/buckets", headers=old, status=401)
        assert sorted(app.metrics.outcomes()) == [
            ("login", "ignored"),
            ("passwordChange", "revoked"),
        ]
        assert in_queue(sqs_client, queue_url) == 0

    def test_a_failure_leaves_the_message_for_redelivery(
        self, app, fxa_server, sqs_client, queue_url, monkeypatch, caplog
    ):
        caplog.set_level(logging.INFO, logger="kinto_fxa")
        seeded = seed(app, fxa_server)
        before = Snapshot.of(app.app.registry)
        send(sqs_client, queue_url, sns({"event": "delete", "uid": seeded.alice}))

        def broken(registry, uid):
            raise RuntimeError("Database gone")

        with monkeypatch.context() as patch:
            patch.setattr(events.accounts, "delete_user_data", broken)
            consumer = consumer_for(app, sqs_client, queue_url)
            assert consumer.poll() == 1

        assert "left in the queue for redelivery" in caplog.text
        assert ("delete", "error") in app.metrics.outcomes()
        assert in_queue(sqs_client, queue_url) == 1
        assert Snapshot.of(app.app.registry) == before

        # Once it comes back (the visibility timeout), it is handled.
        wait_until(lambda: consumer.poll(), "the message is delivered again")
        assert in_queue(sqs_client, queue_url) == 0
        assert Snapshot.of(app.app.registry) == before.without_alice(seeded)
        assert "attempt 2" in caplog.text

    def test_stopping_releases_the_messages_not_handled(self, app, sqs_client, queue_url):
        send(sqs_client, queue_url, *(sns({"event": "login", "uid": UID}) for _ in range(3)))
        consumer = consumer_for(app, sqs_client, queue_url)
        handled = []

        def process_then_stop(message):
            handled.append(message)
            consumer.stop()
            return "ignored"

        consumer.process = process_then_stop  # type: ignore[method-assign]
        received = wait_until(consumer.poll, "messages are received")

        assert len(handled) == 1
        assert visible(sqs_client, queue_url) == received - 1  # Right away, not in 2 s.
        assert consumer.poll() == 0  # Stopped: no more receiving.

    def test_sqs_failures_are_survived(self, app, sqs_client, queue_url, caplog):
        slept = []
        consumer = consumer_for(
            app, sqs_client, queue_url + "-gone", sleep=slept.append, error_backoff=3
        )
        assert consumer.poll() == 0
        assert slept == [3]
        assert "Could not receive" in caplog.text
        assert ("receive", "error") in app.metrics.outcomes()

        # Deleting and releasing a message failing are logged, not fatal.
        message = {"MessageId": "m", "ReceiptHandle": "nope", "Body": sns({"event": "login"})}
        assert consumer.process(message) == "ignored"
        consumer._release([message])
        assert "Could not delete message m" in caplog.text
        assert "Could not release message m" in caplog.text

    def test_the_testing_pause_happens_before_the_commit(self, app, sqs_client, queue_url):
        pauses = []

        class Manager:
            def __enter__(self):
                pauses.append("begin")

            def __exit__(self, *exc):
                pauses.append("commit")

        consumer = consumer_for(
            app,
            sqs_client,
            queue_url,
            pause_before_commit=1.5,
            sleep=pauses.append,
            transaction_manager=Manager(),
        )
        send(sqs_client, queue_url, sns({"event": "login"}))
        wait_until(consumer.poll, "the message is received")
        assert pauses == ["begin", 1.5, "commit"]

    def test_resolve_queue_url(self, sqs_client, queue_url):
        name = queue_url.rsplit("/", 1)[1]
        assert sqs.resolve_queue_url(sqs_client, name) == queue_url
        assert sqs.resolve_queue_url(sqs_client, queue_url) == queue_url


class TestSignals:
    @pytest.fixture
    def consumer(self, app, sqs_client, queue_url):
        consumer = consumer_for(app, sqs_client, queue_url)
        consumer.wait_time = 20
        return consumer

    def test_a_signal_while_waiting_stops_at_once(self, consumer):
        """The long poll is cut short: no 20 s wait, and what it would bring stays queued."""
        real_receive = consumer.sqs.receive_message
        returned = []

        class Client:
            def receive_message(self, **kwargs):
                response = real_receive(**kwargs)
                returned.append(response)
                return response

        consumer.sqs = Client()
        main_thread = threading.get_ident()

        def interrupt():
            wait_until(lambda: consumer._waiting, "the consumer waits")
            time.sleep(0.2)  # Inside receive_message's long poll.
            # As in the single-threaded command: the main thread gets the signal.
            signal.pthread_kill(main_thread, signal.SIGTERM)

        restore = consumer.install_signal_handlers()
        try:
            killer = threading.Thread(target=interrupt)
            killer.start()
            consumer.run()
            killer.join()
        finally:
            restore()
        assert consumer.stopping
        assert returned == []  # The receive was interrupted, not completed.
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL

    def test_a_signal_while_handling_stops_after_the_message(self, consumer):
        consumer._on_signal(signal.SIGINT, None)  # Not waiting: no exception.
        assert consumer.stopping
        with pytest.raises(KeyboardInterrupt):  # A second one: stop now.
            consumer._on_signal(signal.SIGINT, None)
        consumer.run()  # Stopped already: returns.


# The command, in-process.


@pytest.fixture
def pg_backend(postgresql_url) -> dict[str, str]:
    return backend_settings("postgresql", postgresql_url)


@pytest.fixture
def pg_app(make_app, fxa_server, pg_backend):
    return make_app(events_settings(fxa_server.oauth_uri, pg_backend))


@pytest.fixture
def quiet_ini(tmp_path, fxa_server, pg_backend) -> str:
    """An ini for in-process runs: no logging sections (pytest's logging stays as is)."""
    settings = events_settings(fxa_server.oauth_uri, pg_backend)
    return write_ini(tmp_path / "quiet.ini", settings, with_logging=False)


class TestCommand:
    def test_help(self, capsys):
        with pytest.raises(SystemExit) as exit:
            cli.main(["--help"])
        assert exit.value.code == 0
        out = capsys.readouterr().out
        for command in ("process-account-events", "local-fxa", "dev-server", "--ini"):
            assert command in out

    @pytest.mark.parametrize(
        "command,words",
        [
            ("process-account-events", ["QUEUE", "--aws-region", "--queue-wait-time", "SIGTERM"]),
            ("local-fxa", ["--host", "--port"]),
            ("dev-server", ["--ini"]),
        ],
    )
    def test_command_help(self, capsys, command, words):
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        out = capsys.readouterr().out
        assert all(word in out for word in words)

    @pytest.mark.parametrize("wait", ["21", "-1", "soon"])
    def test_bad_wait_time(self, capsys, wait):
        with pytest.raises(SystemExit) as exit:
            cli.main(["process-account-events", "q", "--queue-wait-time", wait])
        assert exit.value.code == 2
        assert "--queue-wait-time" in capsys.readouterr().err

    @pytest.mark.parametrize("port", ["65536", "http"])
    def test_bad_port(self, capsys, port):
        with pytest.raises(SystemExit):
            cli.main(["local-fxa", "--port", port])
        assert "--port" in capsys.readouterr().err

    def test_the_ini_defaults_to_kinto_ini(self, monkeypatch):
        monkeypatch.delenv("KINTO_INI", raising=False)
        assert cli.build_parser().parse_args(["dev-server"]).ini == "config/kinto.ini"
        monkeypatch.setenv("KINTO_INI", "/etc/kinto.ini")
        assert cli.build_parser().parse_args(["dev-server"]).ini == "/etc/kinto.ini"
        args = cli.build_parser().parse_args(["--ini", "a.ini", "dev-server", "--ini", "b.ini"])
        assert args.ini == "b.ini"

    def test_missing_ini(self, sqs_client, capsys, tmp_path):
        ini = str(tmp_path / "nope.ini")
        status = cli.main(["--ini", ini, "process-account-events", "q", "--aws-region", REGION])
        assert status == 1
        assert f"Configuration file not found: {ini}" in capsys.readouterr().err

    def test_no_region(self, monkeypatch, capsys, tmp_path):
        for name in ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
        assert cli.main(["process-account-events", "q"]) == 1
        assert "No AWS region: pass --aws-region" in capsys.readouterr().err

    def test_unknown_queue(self, sqs_client, sqs_endpoint, quiet_ini, capsys):
        argv = ["--ini", quiet_ini, "process-account-events", "nope"]
        argv += ["--aws-region", REGION, "--endpoint-url", sqs_endpoint]
        assert cli.main(argv) == 1
        assert "Cannot use the SQS queue 'nope'" in capsys.readouterr().err

    def test_kinto_fxa_must_be_included(self, tmp_path, pg_backend, sqs_client, capsys):
        ini = write_ini(tmp_path / "k.ini", pg_backend, with_logging=False)
        argv = ["--ini", ini, "process-account-events", "q", "--aws-region", REGION]
        assert cli.main(argv) == 1
        assert "kinto_fxa is not in the kinto.includes setting" in capsys.readouterr().err

    def test_local_fxa(self, monkeypatch):
        calls = []
        monkeypatch.setattr("kinto_fxa.testing.fxa_server.serve", lambda *a: calls.append(a))
        assert cli.main(["local-fxa", "--host", "0.0.0.0", "--port", "9000"]) == 0
        assert cli.main(["local-fxa"]) == 0
        assert calls == [("0.0.0.0", 9000), ("127.0.0.1", 0)]

    def test_dev_server(self, monkeypatch):
        calls = []
        monkeypatch.setattr("kinto_fxa.testing.devserver.main", calls.append)
        assert cli.main(["--ini", "dev.ini", "dev-server"]) == 0
        assert calls == ["dev.ini"]

    def test_ctrl_c_exits_130(self, monkeypatch):
        def interrupted(args):
            raise KeyboardInterrupt

        monkeypatch.setattr("kinto_fxa.testing.fxa_server.serve", lambda *a: interrupted(a))
        assert cli.main(["local-fxa"]) == 130

    def test_process_account_events_in_process(
        self, pg_app, fxa_server, sqs_client, sqs_endpoint, queue_url, quiet_ini, monkeypatch
    ):
        """The whole command, in this process: SIGTERM once the queue is empty."""
        seeded = seed(pg_app, fxa_server)
        before = Snapshot.of(pg_app.app.registry)
        send(sqs_client, queue_url, sns({"event": "delete", "uid": seeded.alice}), *JUNK)
        monkeypatch.setenv(cli.PAUSE_ENV, "0.01")
        monkeypatch.setenv("KINTO_INI", quiet_ini)

        def stop_when_empty():
            wait_until(lambda: in_queue(sqs_client, queue_url) == 0, "the queue is empty")
            os.kill(os.getpid(), signal.SIGTERM)

        killer = threading.Thread(target=stop_when_empty)
        killer.start()
        argv = ["process-account-events", queue_url, "--queue-wait-time", "1"]
        status = cli.main([*argv, "--aws-region", REGION, "--endpoint-url", sqs_endpoint])
        killer.join()

        assert status == 0
        assert Snapshot.of(pg_app.app.registry) == before.without_alice(seeded)


# The command, as a process: the acceptance tests.


class Process:
    """A ``kinto-fxa`` process whose stderr is collected line by line."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.popen = subprocess.Popen(
            args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stderr is not None
        for line in self.popen.stderr:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for_line(self, text: str) -> None:
        def seen() -> bool:
            if self.popen.poll() is not None and text not in self.output:
                self._reader.join(5)
                raise AssertionError(f"kinto-fxa exited:\n{self.output}")
            return text in self.output

        wait_until(seen, f"kinto-fxa logs {text!r}")

    def stop(self, signum: int = signal.SIGTERM) -> int:
        self.popen.send_signal(signum)
        status = self.popen.wait(DEADLINE_SECONDS)
        self._reader.join(5)
        return status

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(DEADLINE_SECONDS)


@pytest.fixture
def kinto_ini(tmp_path, fxa_server, pg_backend) -> str:
    """The Kinto configuration the processes use, its PostgreSQL schema migrated."""
    settings = events_settings(fxa_server.oauth_uri, pg_backend)
    ini = write_ini(tmp_path / "kinto.ini", settings)
    subprocess.run([KINTO, "migrate", "--ini", ini], check=True, capture_output=True)
    return ini


@pytest.fixture
def run_consumer(kinto_ini, sqs_endpoint, queue_url) -> Iterator[Callable[..., Process]]:
    processes: list[Process] = []

    def start(**extra_env: str) -> Process:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KINTO"))}
        env.update(AWS_ENV, AWS_CONFIG_FILE=os.devnull, **extra_env)
        args = [KINTO_FXA, "--ini", kinto_ini, "process-account-events", queue_url]
        args += ["--aws-region", REGION, "--endpoint-url", sqs_endpoint, "--queue-wait-time", "1"]
        process = Process(args, env)
        processes.append(process)
        process.wait_for_line("Consuming FxA account events")
        return process

    yield start
    for process in processes:
        process.kill()


class TestProcessAccountEventsCommand:
    def test_deletes_exactly_the_users_data(
        self, pg_app, fxa_server, sqs_client, queue_url, run_consumer
    ):
        seeded = seed(pg_app, fxa_server)
        before = Snapshot.of(pg_app.app.registry)
        assert_seeded_data_is_there(before, seeded)
        send(sqs_client, queue_url, JUNK[0], sns({"event": "delete", "uid": seeded.alice}))
        send(sqs_client, queue_url, *JUNK[1:])

        consumer = run_consumer()
        wait_until(lambda: in_queue(sqs_client, queue_url) == 0, "the queue is empty")
        consumer.wait_for_line(f"delete event for {seeded.alice}: deleted")

        assert Snapshot.of(pg_app.app.registry) == before.without_alice(seeded)
        assert consumer.stop(signal.SIGINT) == 0
        assert consumer.output.count("Dropping invalid message") == len(JUNK)
        assert "Stopped consuming FxA account events" in consumer.output
        # Bob still has his data.
        shared = "/v1/buckets/default/collections/shared/records"
        records = pg_app.get(shared, headers=seeded.bob_headers).json["data"]
        assert [r["id"] for r in records] == ["s1"]

    def test_a_crash_mid_message_loses_nothing(
        self, pg_app, fxa_server, sqs_client, queue_url, run_consumer
    ):
        seeded = seed(pg_app, fxa_server)
        before = Snapshot.of(pg_app.app.registry)
        send(sqs_client, queue_url, sns({"event": "delete", "uid": seeded.alice}))

        crashing = run_consumer(**{cli.PAUSE_ENV: "60"})
        crashing.wait_for_line("Testing hook: pausing")  # Deleted, not committed yet.
        crashing.kill()  # SIGKILL: no cleanup at all.

        assert Snapshot.of(pg_app.app.registry) == before  # Rolled back by PostgreSQL.
        assert in_queue(sqs_client, queue_url) == 1

        restarted = run_consumer()
        wait_until(lambda: in_queue(sqs_client, queue_url) == 0, "the queue is empty")
        restarted.wait_for_line(f"delete event for {seeded.alice}: deleted")
        assert Snapshot.of(pg_app.app.registry) == before.without_alice(seeded)
        assert "attempt 2" in restarted.output
        assert restarted.stop() == 0

    def test_password_change(self, pg_app, fxa_server, sqs_client, queue_url, run_consumer):
        uid = fxa_server.uid_for("alice@example.com")
        change = int(time.time() * 1000)
        old = auth(fxa_server.mint_jwt(uid, generation=change - 1))
        new = auth(fxa_server.mint_jwt(uid, generation=change))
        pg_app.get("/v1/buckets", headers=old, status=200)  # Verified, cached.
        send(
            sqs_client,
            queue_url,
            sns({"event": "passwordChange", "uid": uid, "generation": change}),
        )

        consumer = run_consumer()
        consumer.wait_for_line(f"passwordChange event for {uid}: revoked")

        pg_app.get("/v1/buckets", headers=old, status=401)
        pg_app.get("/v1/buckets", headers=new, status=200)
        assert consumer.stop() == 0
