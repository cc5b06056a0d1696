"""Real ``kinto start`` processes (waitress), as deployed: the HTTP benchmarks' servers."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests


KINTO = str(Path(sys.executable).parent / "kinto")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_ini(path: Path, settings: dict[str, Any], port: int, threads: int) -> Path:
    lines = ["[app:main]", "use = egg:kinto"]
    lines += [f"{key} = {value}" for key, value in settings.items()]
    lines += [
        "",
        "[server:main]",
        "use = egg:waitress#main",
        "host = 127.0.0.1",
        f"port = {port}",
        f"threads = {threads}",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


class KintoServer:
    """A ``kinto start`` subprocess on a free port; its output goes to a log file in
    ``workdir``. On PostgreSQL, the schema is created first (``kinto migrate``)."""

    def __init__(self, workdir: Path, settings: dict[str, Any], threads: int = 4) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ini = write_ini(workdir / f"kinto-{self.port}.ini", settings, self.port, threads)
        self.log_path = workdir / f"kinto-{self.port}.log"
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        with self.log_path.open("wb") as log:
            if any(v.endswith(".postgresql") for v in settings.values()):
                subprocess.run(
                    [KINTO, "migrate", "--ini", str(self.ini)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    check=True,
                )
        self.popen = subprocess.Popen(
            [KINTO, "start", "--ini", str(self.ini), "--port", str(self.port)],
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
            env=env,
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"kinto start exited:\n{self.log_path.read_text()}")
            try:
                if requests.get(self.url + "/v1/__lbheartbeat__", timeout=1).ok:
                    return
            except requests.ConnectionError:
                time.sleep(0.1)
        raise RuntimeError(f"kinto start did not answer:\n{self.log_path.read_text()}")

    def cpu_seconds(self) -> float:
        """CPU time used so far by all of the process's threads (``schedstat``, in ns)."""
        total = 0
        for task in Path(f"/proc/{self.popen.pid}/task").iterdir():
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (FileNotFoundError, ProcessLookupError):  # A thread that just ended.
                continue
        return total / 1e9

    def rss_kb(self) -> int:
        """The process's resident set size (``VmRSS``), in kB."""
        for line in Path(f"/proc/{self.popen.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")  # pragma: no cover

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()

    def __enter__(self) -> "KintoServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
