"""The ``kinto-fxa`` command as a process: ``process-account-events`` against moto's SQS
and a Kinto on PostgreSQL, and its other commands."""

import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from kinto_fxa import cli
from tests._events_helpers import (
    Snapshot,
    assert_seeded_data_is_there,
    auth,
    events_settings,
    seed,
    sns,
    write_ini,
)
from tests.conftest import backend_settings
from tests.helpers import wait_until
from tests.sqs_fixtures import (
    AWS_ENV,
    DEADLINE_SECONDS,
    JUNK,
    KINTO,
    KINTO_FXA,
    REGION,
    in_queue,
    send,
)


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
