"""The server itself: :class:`LocalFxAServer`, its waitress listener and its Python helpers."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Any

import requests
from waitress import wasyncore
from waitress.server import create_server
from waitress.task import ThreadedTaskDispatcher
from waitress.trigger import trigger as WaitressTrigger

from kinto_fxa.testing.fxa_server.errors import ERRNO_UNEXPECTED, LocalFxAError
from kinto_fxa.testing.fxa_server.failures import _Failure
from kinto_fxa.testing.fxa_server.routes import _Routes
from kinto_fxa.testing.fxa_server.state import DEFAULT_CODE_TTL


class LocalFxAServer(_Routes):
    """A local FxA OAuth server, served over HTTP from a background thread.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`::

        with LocalFxAServer() as server:
            server.register_client("kinto-client", "kinto-secret")
            token = server.mint_jwt(server.uid_for("alice@example.com"))
            settings["fxa-oauth.oauth_uri"] = server.oauth_uri

    ``port=0`` picks a free port; it is kept across :meth:`stop`/:meth:`start` and
    ``fail("down")`` so that :attr:`url` never changes once started.
    """

    #: Attempts at binding the port again after ``fail("down")`` (20 ms apart).
    bind_attempts = 50

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, issuer: str = "https://accounts.firefox.com"
    ) -> None:
        self.host = host
        self.port = port
        super().__init__(issuer)
        self._listener_lock = threading.Lock()
        self._started = False
        self._map: dict[int, Any] | None = None
        self._trigger: Any = None
        self._waitress: Any = None
        self._thread: threading.Thread | None = None

    # Life cycle.

    def start(self) -> LocalFxAServer:
        """Start listening (idempotent) and return the server."""
        with self._listener_lock:
            if not self._started:
                self._start_listener()
                self._started = True
        self._sync_listener()
        return self

    def stop(self) -> None:
        """Stop listening and serving (idempotent); interrupts slow answers."""
        self._wake_sleepers()
        with self._listener_lock:
            self._started = False
            self._stop_listener()

    def __enter__(self) -> LocalFxAServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The server root, e.g. ``http://127.0.0.1:PORT`` (``/__heartbeat__`` is there)."""
        if not self.port:
            raise RuntimeError("The server has no port yet: start() it first")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def oauth_uri(self) -> str:
        """The OAuth API root: :attr:`url` + ``/v1`` (``fxa-oauth.oauth_uri``)."""
        return self.url + "/v1"

    @property
    def listening(self) -> bool:
        """Whether connections are accepted (false when stopped or ``fail("down")``)."""
        return self._waitress is not None

    def _create_server(self, socket_map: dict[int, Any]) -> Any:
        dispatcher = ThreadedTaskDispatcher()
        dispatcher.set_thread_count(4)
        # Listening again on our port after fail("down") can meet a socket briefly using
        # it (e.g. a client's ephemeral port): retry for a moment.
        attempts = max(1, self.bind_attempts) if self.port else 1
        for attempt in range(attempts):
            try:
                return create_server(
                    self.wsgi_app,
                    map=socket_map,
                    _dispatcher=dispatcher,
                    host=self.host,
                    port=self.port,
                    ident="kinto-fxa-local-fxa",
                    # Connections dropped on purpose (fail("down", endpoints=...)) are
                    # not worth a traceback.
                    log_socket_errors=False,
                )
            except OSError:
                wasyncore.close_all(socket_map, ignore_all=True)
                if attempt == attempts - 1:
                    dispatcher.shutdown(timeout=1)
                    raise
                time.sleep(0.02)
        raise AssertionError("unreachable")  # pragma: no cover

    def _start_listener(self) -> None:
        socket_map: dict[int, Any] = {}
        server = self._create_server(socket_map)
        self._trigger = WaitressTrigger(socket_map)
        if hasattr(server, "effective_port"):
            port = server.effective_port
        else:  # pragma: no cover  (a host name resolving to several addresses)
            port = server.effective_listen[0][1]
        self.port = int(port)
        self._map = socket_map
        self._waitress = server
        self._thread = threading.Thread(
            target=server.run, name=f"local-fxa-{self.port}", daemon=True
        )
        self._thread.start()

    def _stop_listener(self) -> None:
        server, thread, socket_map = self._waitress, self._thread, self._map
        if server is None or thread is None or socket_map is None:
            return
        self._waitress = self._thread = self._map = None

        def close_everything() -> None:
            wasyncore.close_all(socket_map, ignore_all=True)

        # Close the listening socket and every connection from the loop's own thread;
        # the loop ends once its socket map is empty.
        self._trigger.pull_trigger(close_everything)
        thread.join(5)
        if thread.is_alive():  # pragma: no cover  (the loop did not run the thunk)
            close_everything()
            thread.join(5)
        server.task_dispatcher.shutdown(cancel_pending=True, timeout=5)

    def _sync_listener(self) -> None:
        """Listen or not, according to the failure mode."""
        with self._listener_lock:
            if not self._started:
                return
            refuse = self._failure.refuses_connections
            if refuse and self.listening:
                self._stop_listener()
            elif not refuse and not self.listening:
                self._start_listener()

    def _wake_sleepers(self) -> None:
        with self._lock:
            self._wake.set()
            self._wake = threading.Event()

    # Failures and reset.

    def fail(
        self,
        mode: str | None,
        *,
        endpoints: Iterable[str] | None = None,
        delay: float = 2.0,
    ) -> None:
        """Misbehave, on ``endpoints`` (exact paths, e.g. ``("/v1/verify",)``) or everywhere.

        - ``None``: healthy.
        - ``"down"``: everywhere, the server stops listening: connections are refused.
          Limited to ``endpoints``, the connection is closed without an answer
          (``requests.ConnectionError`` either way).
        - ``"slow"``: wait ``delay`` seconds, then answer normally (changing the mode,
          :meth:`reset` or :meth:`stop` cut the wait short).
        - ``"5xx"``: 503 with an FxA JSON error body (errno 999).
        - ``"500"``: 500 with an FxA JSON error body (errno 999).
        - ``"malformed"``: 200 with an HTML body.
        - ``"429"``: 429 (rate limited) with an FxA JSON error body and ``Retry-After``
          (:data:`RATE_LIMIT_RETRY_AFTER`).

        ``/__test__/`` helpers are never failed (but are unreachable when "down").
        """
        failure = _Failure.checked(mode, endpoints, delay)
        with self._lock:
            self._failure = failure
        self._wake_sleepers()
        self._sync_listener()

    def reset(self) -> None:
        """Back to the initial state, as far as tests can tell.

        Healthy again (``fail(None)``), :attr:`calls` cleared, :attr:`code_ttl` restored and
        only the initial signing key published and used (tokens minted with rotated keys
        stop verifying). Kept: registered clients, minted opaque tokens, pending codes and
        destroyed tokens (all random, so they cannot leak between tests).
        """
        with self._lock:
            self._keys = [self._initial_key]
            self.code_ttl = DEFAULT_CODE_TTL
        self.fail(None)
        self.reset_calls()

    # Signing in over HTTP.

    def authorize(
        self,
        client_id: str,
        state: str,
        scope: str,
        email: str,
        redirect_uri: str | None = None,
        code_challenge: str | None = None,
        *,
        action: str | None = None,
    ) -> str:
        """Sign ``email`` in, over HTTP, as the sign-in page's form does.

        Returns the redirect ``Location`` (``<redirect_uri>?code=...&state=...``); raises
        :class:`LocalFxAError` when the server refuses. ``code_challenge`` is S256.
        """
        form = {"client_id": client_id, "state": state, "scope": scope, "email": email}
        if redirect_uri is not None:
            form["redirect_uri"] = redirect_uri
        if code_challenge is not None:
            form["code_challenge"] = code_challenge
            form["code_challenge_method"] = "S256"
        if action is not None:
            form["action"] = action
        response = requests.post(
            self.oauth_uri + "/authorization", data=form, allow_redirects=False, timeout=10
        )
        if response.status_code != 302:
            try:
                body = response.json()
                errno, message = int(body["errno"]), str(body["message"])
            except (ValueError, KeyError, TypeError):
                errno, message = ERRNO_UNEXPECTED, "unexpected answer"
            raise LocalFxAError(response.status_code, errno, message)
        return str(response.headers["Location"])
