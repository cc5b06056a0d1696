"""Metrics of kinto-fxa, sent through Kinto's metrics service (StatsD, Prometheus...).

Every metric kinto-fxa sends is declared here with its label names: Prometheus fixes a
metric's label names at its first use, so each call must give exactly those labels.
Without a metrics service (Kinto's ``setup_metrics`` step absent) nothing is sent.
"""

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


#: Counter: token verifications, by ``outcome`` (``accepted``, ``refused``,
#: ``unavailable``), ``reason`` (why refused: ``expired``, ``scope``, ``unknown_key``,
#: ``foreign_client``, ``revoked``, ``malformed``...; ``none`` otherwise) and ``source``
#: (where the answer came from: ``memo``, ``local``, ``shared``, ``jwt``, ``verify``).
VERIFICATIONS = "fxa_verifications"
#: Timer: calls to FxA, by ``endpoint`` (``verify``, ``jwks``, ``token``, ``heartbeat``).
FXA_CALL_DURATION = "fxa_call_duration_seconds"
#: Counter: failed calls to FxA, by ``endpoint`` and ``kind`` (``timeout``, ``refused``,
#: ``5xx``, ``4xx``, ``malformed``, ``rate_limited``).
FXA_CALL_FAILURES = "fxa_call_failures"
#: Counter: JWKS refreshes, by ``trigger`` (``initial``, ``scheduled``, ``unknown_kid``)
#: and ``outcome`` (``ok``, ``failed``).
JWKS_REFRESHES = "fxa_jwks_refreshes"
#: Counter: responses of the login and token endpoints, by ``endpoint`` and ``status``.
RELIER_RESPONSES = "fxa_relier_responses"
#: Counter and timer of account events (see :mod:`kinto_fxa.events`).
ACCOUNT_EVENTS = "fxa_account_events"
ACCOUNT_EVENT_DURATION = "fxa_account_events_duration_seconds"

LABELS: dict[str, tuple[str, ...]] = {
    VERIFICATIONS: ("outcome", "reason", "source"),
    FXA_CALL_DURATION: ("endpoint",),
    FXA_CALL_FAILURES: ("endpoint", "kind"),
    JWKS_REFRESHES: ("trigger", "outcome"),
    RELIER_RESPONSES: ("endpoint", "status"),
    ACCOUNT_EVENTS: ("source", "event", "outcome"),
    ACCOUNT_EVENT_DURATION: ("source", "event"),
}


def _labels(name: str, labels: dict[str, str]) -> list[tuple[str, str]]:
    expected = LABELS[name]
    if tuple(labels) != expected:
        raise ValueError(f"{name} takes the labels {expected}, got {tuple(labels)}")
    return [(key, str(value)) for key, value in labels.items()]


class Metrics:
    """Kinto's metrics service, looked up when used (it is set up after ``includeme`` may
    run), with kinto-fxa's names and labels.

    ``service`` is a callable returning the service or ``None``; typically
    ``lambda: getattr(registry, "metrics", None)``.
    """

    def __init__(self, service: Callable[[], Any] = lambda: None) -> None:
        self._service = service

    def count(self, name: str, **labels: str) -> None:
        service = self._service()
        if service is not None:
            service.count(name, unique=_labels(name, labels))

    def observe_seconds(self, name: str, seconds: float, **labels: str) -> None:
        service = self._service()
        if service is not None:
            service.timer(name, value=seconds, labels=_labels(name, labels))

    @contextmanager
    def timed(self, name: str, **labels: str) -> Iterator[None]:
        """Time the block (also when it raises)."""
        started = time.monotonic()
        try:
            yield
        finally:
            self.observe_seconds(name, time.monotonic() - started, **labels)


def for_registry(registry: Any) -> Metrics:
    """The :class:`Metrics` of a Pyramid registry."""
    return Metrics(lambda: getattr(registry, "metrics", None))
