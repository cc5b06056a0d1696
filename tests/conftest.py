"""Shared fixtures: Kinto apps on the memory and PostgreSQL backends.

FxA fixtures (``fxa_server``...) come from the ``kinto_fxa.testing.pytest_plugin``
plugin, registered through the ``pytest11`` entry point.

PostgreSQL tests run against a fresh database created for the session on
``KINTO_FXA_POSTGRESQL_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``).
They skip, loudly, when no server answers, unless ``KINTO_FXA_REQUIRE_POSTGRESQL`` is set
(as ``.ci/run`` does), where they fail.
"""

import os
import shutil
import socket
import subprocess
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import webtest

from tests.helpers import free_port, kinto_processes, wait_until  # noqa: F401  (a fixture)


#: The SQS fixtures (moto server, queues), for tests/test_sqs.py and tests/test_cli.py.
pytest_plugins = ["tests.sqs_fixtures"]


ADMIN_URL = os.environ.get("KINTO_FXA_POSTGRESQL_URL", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_POSTGRESQL = os.environ.get("KINTO_FXA_REQUIRE_POSTGRESQL", "") not in ("", "0")
_pg_skip_reason: list[str] = []

BACKENDS = ("memory", "postgresql")


@pytest.fixture(scope="session")
def postgresql_url() -> Iterator[str]:
    """URL of a PostgreSQL database created for this test session, dropped at its end."""
    from kinto_fxa.testing.postgresql import temporary_database

    database = temporary_database(ADMIN_URL)
    try:
        url = database.__enter__()
    except Exception as e:
        reason = f"PostgreSQL unreachable at {ADMIN_URL}: {e.__class__.__name__}"
        if REQUIRE_POSTGRESQL:
            pytest.fail(f"{reason} (KINTO_FXA_REQUIRE_POSTGRESQL is set)")
        _pg_skip_reason.append(reason)
        pytest.skip(reason)
    try:
        yield url
    finally:
        database.__exit__(None, None, None)


REQUIRE_MEMCACHED = os.environ.get("KINTO_FXA_REQUIRE_MEMCACHED", "") not in ("", "0")
MEMCACHED = shutil.which("memcached") or "/usr/bin/memcached"
_memcached_skip_reason: list[str] = []


@pytest.fixture(scope="session")
def memcached_hosts() -> Iterator[str]:
    """``host:port`` of a memcached server (Debian's ``memcached``) started for the test
    session. Skips loudly when it is not installed, unless ``KINTO_FXA_REQUIRE_MEMCACHED``
    is set (as ``.ci/run`` does), where it fails."""
    if not os.access(MEMCACHED, os.X_OK):
        reason = f"memcached not installed ({MEMCACHED}): apt-get install memcached"
        if REQUIRE_MEMCACHED:
            pytest.fail(f"{reason} (KINTO_FXA_REQUIRE_MEMCACHED is set)")
        _memcached_skip_reason.append(reason)
        pytest.skip(reason)
    port = free_port()
    process = subprocess.Popen(
        [MEMCACHED, "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "16", "-u", "root"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: _answers(port), "memcached to listen", timeout=15)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _pg_skip_reason:
        terminalreporter.write_sep("!", "POSTGRESQL TESTS SKIPPED", red=True, bold=True)
        terminalreporter.write_line(_pg_skip_reason[0], red=True)
    if _memcached_skip_reason:
        terminalreporter.write_sep("!", "MEMCACHED TESTS SKIPPED", red=True, bold=True)
        terminalreporter.write_line(_memcached_skip_reason[0], red=True)
    if _chromium_skip_reason:
        terminalreporter.write_sep("!", "BROWSER TESTS SKIPPED", red=True, bold=True)
        terminalreporter.write_line(_chromium_skip_reason[0], red=True)


# Browser tests (tests/test_browser.py) drive this Chromium with Playwright; they skip, loudly,
# without it, unless ``KINTO_FXA_REQUIRE_CHROMIUM`` is set (as ``.ci/run`` does).
CHROMIUM = os.environ.get("KINTO_FXA_CHROMIUM", "/usr/bin/chromium")
REQUIRE_CHROMIUM = os.environ.get("KINTO_FXA_REQUIRE_CHROMIUM", "") not in ("", "0")
_chromium_skip_reason: list[str] = []


def require_chromium() -> str:
    """The Chromium executable for Playwright: skip (banner at the end) or fail without it."""
    reason = None
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        reason = f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            reason = "playwright is not installed (pip install -e '.[test]')"
    if reason is None:
        return CHROMIUM
    if REQUIRE_CHROMIUM:
        pytest.fail(f"{reason} (KINTO_FXA_REQUIRE_CHROMIUM is set)")
    _chromium_skip_reason.append(reason)
    pytest.skip(reason)


def backend_settings(backend: str, postgresql_url: str | None = None) -> dict[str, str]:
    """Kinto storage/permission/cache settings for ``backend``."""
    if backend == "memory":
        return {
            "storage_backend": "kinto.core.storage.memory",
            "permission_backend": "kinto.core.permission.memory",
            "cache_backend": "kinto.core.cache.memory",
        }
    assert postgresql_url
    return {
        "storage_backend": "kinto.core.storage.postgresql",
        "storage_url": postgresql_url,
        "permission_backend": "kinto.core.permission.postgresql",
        "permission_url": postgresql_url,
        "cache_backend": "kinto.core.cache.postgresql",
        "cache_url": postgresql_url,
        "storage_pool_size": "2",
        "permission_pool_size": "2",
        "cache_pool_size": "2",
    }


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> dict[str, str]:
    """Backend settings, once for memory and once for PostgreSQL."""
    if request.param == "memory":
        return backend_settings("memory")
    return backend_settings("postgresql", request.getfixturevalue("postgresql_url"))


def kinto_settings(oauth_uri: str | None, **extra: Any) -> dict[str, Any]:
    """Settings of a Kinto using kinto-fxa against ``oauth_uri`` (memory backends)."""
    settings: dict[str, Any] = {
        **backend_settings("memory"),
        "includes": "kinto_fxa kinto.plugins.default_bucket",
        "userid_hmac_secret": "test-secret",
        "multiauth.policies": "fxa basicauth",
        "multiauth.policy.fxa.use": "kinto_fxa.authentication.FxAOAuthAuthenticationPolicy",
        "bucket_create_principals": "system.Authenticated",
        "fxa-oauth.client_id": "kinto-client",
        "fxa-oauth.client_secret": "kinto-secret",
    }
    if oauth_uri is not None:
        settings["fxa-oauth.oauth_uri"] = oauth_uri
    settings.update({k: str(v) for k, v in extra.items()})
    return settings


@pytest.fixture
def make_app() -> Iterator[Callable[..., webtest.TestApp]]:
    """Build a Kinto WSGI app wrapped in webtest; PostgreSQL schemas are created and
    flushed on teardown so each test starts empty."""
    import kinto

    apps: list[webtest.TestApp] = []

    def factory(settings: dict[str, Any]) -> webtest.TestApp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            wsgi = kinto.main({}, **settings)
        registry = wsgi.registry
        for name in ("storage", "permission", "cache"):
            getattr(registry, name).initialize_schema()
        app = webtest.TestApp(wsgi, extra_environ={"HTTP_HOST": "localhost:80"})
        apps.append(app)
        return app

    yield factory
    for app in apps:
        registry = app.app.registry
        for name in ("storage", "permission", "cache"):
            getattr(registry, name).flush()


@pytest.fixture(autouse=True)
def fresh_openapi_description() -> Iterator[None]:
    """Kinto builds its OpenAPI description once per process: rebuild it for each test."""
    from kinto.core.views.openapi import openapi_view

    vars(openapi_view).pop("__json__", None)
    yield
    vars(openapi_view).pop("__json__", None)
