"""What several test modules need: free ports, Kinto ini files, ``kinto start`` processes,
polling until a condition holds."""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests


KINTO = str(Path(sys.executable).parent / "kinto")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def write_ini(path: Path, settings: dict[str, Any], port: int = 8888) -> Path:
    """A Kinto ini file with ``settings`` in ``[app:main]`` (multi-line values indented)."""
    lines = ["[app:main]", "use = egg:kinto"]
    for key, value in settings.items():
        text = str(value).replace("\n", "\n    ")
        lines.append(f"{key} = {text}")
    lines += ["", "[server:main]", "use = egg:waitress#main", "host = 127.0.0.1", f"port = {port}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    """Poll ``condition`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"Timed out waiting for {what}")
        time.sleep(0.05)


class KintoProcess:
    """A ``kinto start`` (waitress) subprocess: nothing shared with the test process but
    what the backends share, as between two servers behind a load balancer."""

    def __init__(self, workdir: Path, settings: dict[str, Any], port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        self.ini = write_ini(workdir / f"kinto-{self.port}.ini", settings, self.port)
        self.log_path = workdir / f"kinto-{self.port}.log"
        log = self.log_path.open("wb")
        self.popen = subprocess.Popen(
            [KINTO, "start", "--ini", str(self.ini), "--port", str(self.port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
        self._wait_ready()

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                pytest.fail(f"kinto start exited: {self.log}")
            try:
                if requests.get(self.url + "/v1/__lbheartbeat__", timeout=1).ok:
                    return
            except requests.ConnectionError:
                time.sleep(0.2)
        self.stop()
        pytest.fail(f"kinto start did not answer: {self.log}")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover
                self.popen.kill()
                self.popen.wait()


@pytest.fixture
def kinto_processes(tmp_path: Path) -> Any:
    """A starter of :class:`KintoProcess` (``start(settings, port=None)``); all are stopped
    at the end of the test."""
    started: list[KintoProcess] = []

    def start(settings: dict[str, Any], port: int | None = None) -> KintoProcess:
        process = KintoProcess(tmp_path, settings, port)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()
