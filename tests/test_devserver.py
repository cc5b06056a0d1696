"""``make serve``: the development server, run as a real process."""

import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from tests.helpers import free_port, wait_until


ROOT = Path(__file__).parent.parent


def dev_server_command(ini: Path) -> list[str]:
    """The command running the development server (:mod:`kinto_fxa.testing.devserver`)."""
    code = f"from kinto_fxa.testing.devserver import main; main({str(ini)!r})"
    return [sys.executable, "-c", code]


def wait_for(url: str, process: subprocess.Popen, timeout: float = 30) -> None:
    def answers() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"dev server exited: {process.communicate()}")
        try:
            requests.get(url, timeout=1)
        except requests.ConnectionError:
            return False
        return True

    wait_until(answers, f"{url} to answer", timeout)


@contextmanager
def running_dev_server(
    tmp_path: Path, kinto_host: str = "127.0.0.1", fxa_host: str = "127.0.0.1"
) -> Iterator[tuple[str, str, subprocess.Popen]]:
    """``kinto-fxa dev-server`` with config/dev.ini on free ports, Kinto and FxA named
    ``kinto_host`` and ``fxa_host``: yields their URLs and the process."""
    kinto_port, fxa_port = free_port(), free_port()
    ini = (ROOT / "config" / "dev.ini").read_text()
    ini = ini.replace("127.0.0.1:8888", f"{kinto_host}:{kinto_port}")
    ini = ini.replace("port = 8888", f"port = {kinto_port}")
    ini = ini.replace("host = 127.0.0.1", f"host = {kinto_host}")
    ini = ini.replace("127.0.0.1:9010", f"{fxa_host}:{fxa_port}")
    path = tmp_path / "dev.ini"
    path.write_text(ini)
    process = subprocess.Popen(
        dev_server_command(path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    kinto, fxa = f"http://{kinto_host}:{kinto_port}", f"http://{fxa_host}:{fxa_port}"
    try:
        # Polled on 127.0.0.1: where every host name resolves (tests/browser_helpers.py).
        wait_for(f"http://127.0.0.1:{kinto_port}/v1/", process)
        yield kinto, fxa, process
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=15)


@pytest.fixture
def dev_server(tmp_path):
    with running_dev_server(tmp_path) as server:
        yield server


def test_dev_server_serves_kinto_with_fxa_login(dev_server):
    kinto, fxa, _ = dev_server
    assert requests.get(kinto + "/v1/__heartbeat__", timeout=5).json()["oauth"] is True

    # The token minting shown in the banner works against Kinto.
    minted = requests.post(f"{fxa}/__test__/token", json={"email": "dev@example.com"}, timeout=5)
    token = minted.json()["access_token"]
    me = requests.get(kinto + "/v1/", headers={"Authorization": f"Bearer {token}"}, timeout=5)
    assert me.json()["user"]["id"] == f"fxa:{minted.json()['user']}"

    # The demo page calls this Kinto; its login (back to the page) goes to the local FxA
    # sign-in page. (tests/test_browser.py drives the page in a browser.)
    page = requests.get(kinto + "/demo/", timeout=5).text
    assert f'const KINTO = "{kinto}/v1";' in page
    redirect = quote(kinto + "/demo/#", safe="")
    to_fxa = requests.get(
        f"{kinto}/v1/fxa-oauth/login?redirect={redirect}", allow_redirects=False, timeout=5
    )
    assert to_fxa.status_code == 302
    assert to_fxa.headers["Location"].startswith(f"{fxa}/v1/authorization?")
    sign_in = requests.get(to_fxa.headers["Location"], timeout=5)
    assert "<form" in sign_in.text

    assert requests.get(kinto + "/v1/buckets", timeout=5).status_code == 401


def test_dev_server_prints_how_to_use_it(dev_server):
    kinto, fxa, process = dev_server
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=15)
    assert f"{kinto}/demo/" in out
    assert f"{fxa}/__test__/token" in out


def test_dev_server_refuses_an_ini_without_oauth_uri(tmp_path):
    ini = (ROOT / "config" / "dev.ini").read_text()
    path = tmp_path / "dev.ini"
    path.write_text(re.sub(r"fxa-oauth.oauth_uri = .*\n", "", ini))
    result = subprocess.run(
        dev_server_command(path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "fxa-oauth.oauth_uri" in result.stderr
