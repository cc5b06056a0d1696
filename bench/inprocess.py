"""In-process mode: a Kinto WSGI app called from this process (no network between the
client and Kinto, so only the server's work is timed), against the local FxA server."""

import time
import warnings
from collections.abc import Callable
from typing import Any

import kinto
from common import (
    BASIC,
    COLD_TARGET_MS,
    MEMORY,
    POSTGRESQL,
    READ_PATH,
    WARM_TARGET,
    Table,
    backend_settings,
    interleaved,
    median_ms,
    pg_rounds,
    progress,
    ratio_of_medians,
)
from webob import Request

from kinto_fxa.testing.fxa_server import LocalFxAServer


SECTION = "in-process"
#: This thread's CPU time during the last :func:`call`.
LAST_CPU = [0.0]


def with_cpu(run: Callable[[], float], cpu: list[float]) -> Callable[[], float]:
    """``run``, also appending the CPU time of its request to ``cpu``."""

    def wrapped() -> float:
        elapsed = run()
        cpu.append(LAST_CPU[0])
        return elapsed

    return wrapped


def make_app(fxa: LocalFxAServer, postgresql_url: str | None = None, clients: int = 0) -> Any:
    """A Kinto app; with ``clients``, that many named clients configured as kinto-fxa 2.x
    documents them (``required_scope = profile app-<i>``), among which tokens are routed."""
    settings: dict[str, str] = {
        **backend_settings(postgresql_url),
        "includes": "kinto_fxa",
        "userid_hmac_secret": "bench",
        "multiauth.policies": "fxa basicauth",
        "multiauth.policy.fxa.use": "kinto_fxa.authentication.FxAOAuthAuthenticationPolicy",
        "bucket_create_principals": "system.Authenticated",
        "fxa-oauth.oauth_uri": fxa.oauth_uri,
        "fxa-oauth.client_id": "kinto-client",
    }
    for i in range(clients):
        settings[f"fxa-oauth.clients.app{i}.client_id"] = f"app{i}"
        settings[f"fxa-oauth.clients.app{i}.required_scope"] = f"profile app-{i}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        app = kinto.main({}, **settings)
    for name in ("storage", "permission", "cache"):
        getattr(app.registry, name).initialize_schema()
    # Data readable by every authenticated user.
    admin = {"Authorization": BASIC}
    body = b'{"permissions": {"read": ["system.Authenticated"]}}'
    for path in ("/v1/buckets/bench", "/v1/buckets/bench/collections/bench"):
        call(app, path, admin, method="PUT", body=body, expect=(200, 201))
    for i in range(10):
        call(app, f"{READ_PATH}/r{i}", admin, "PUT", b'{"data": {"n": 1}}', expect=(200, 201))
    return app


def call(
    app: Any,
    path: str,
    headers: dict[str, str],
    method: str = "GET",
    body: bytes | None = None,
    expect: int | tuple[int, ...] = 200,
) -> float:
    """One request through the WSGI app; returns its duration in seconds."""
    request = Request.blank(path, method=method, headers=headers, body=body)
    if body is not None:
        request.content_type = "application/json"
    cpu_start = time.thread_time()
    start = time.perf_counter()
    response = request.get_response(app)
    elapsed = time.perf_counter() - start
    LAST_CPU[0] = time.thread_time() - cpu_start
    expected = expect if isinstance(expect, tuple) else (expect,)
    if response.status_code not in expected:
        raise SystemExit(f"{method} {path}: {response.status} {response.text[:200]}")
    return elapsed


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def warm_reads(table: Table, app: Any, fxa: LocalFxAServer, backend: str, rounds: int) -> None:
    progress(f"{SECTION} {backend}: warm reads, {rounds} pairs")
    token = fxa.mint_jwt(fxa.uid_for("reader@example.com"))
    for _ in range(50):  # Warm up both paths and the caches.
        call(app, READ_PATH, bearer(token))
        call(app, READ_PATH, {"Authorization": BASIC})
    fxa.reset_calls()
    fxa_cpu: list[float] = []
    basic_cpu: list[float] = []
    fxa_times, basic_times = interleaved(
        rounds,
        with_cpu(lambda: call(app, READ_PATH, bearer(token)), fxa_cpu),
        with_cpu(lambda: call(app, READ_PATH, {"Authorization": BASIC}), basic_cpu),
    )
    ratio = ratio_of_medians(basic_times, fxa_times)
    cpu_ratio = ratio_of_medians(basic_cpu, fxa_cpu)
    target = WARM_TARGET[backend]
    table.add(
        f"{SECTION} {backend}",
        "warm fxa/basicauth",
        f"{ratio:.3f}",
        f">= {target}",
        ratio >= target,
        f"ratio of medians; {rounds} pairs; medians "
        f"{median_ms(fxa_times):.2f} / {median_ms(basic_times):.2f} ms",
    )
    table.add(
        f"{SECTION} {backend}",
        "warm fxa/basicauth, CPU",
        f"{cpu_ratio:.3f}",
        f">= {target}",
        cpu_ratio >= target,
        f"basicauth / fxa medians of the request's CPU time; "
        f"{median_ms(fxa_cpu):.2f} / {median_ms(basic_cpu):.2f} ms",
    )
    calls = fxa.calls.total()
    table.add(f"{SECTION} {backend}", "FxA calls, warm reads", str(calls), "0", calls == 0)


def distinct_tokens(fxa: LocalFxAServer, count: int, scope: str = "profile") -> list[str]:
    return [fxa.mint_jwt(fxa.uid_for(f"user{i}@example.com"), scope=scope) for i in range(count)]


def fxa_calls_for_distinct_tokens(table: Table, fxa: LocalFxAServer, count: int) -> None:
    progress(f"{SECTION} {MEMORY}: FxA calls for {count} new tokens")
    app = make_app(fxa)
    tokens = distinct_tokens(fxa, count)
    fxa.reset_calls()
    for token in tokens:
        call(app, READ_PATH, bearer(token))
    jwks, verify = fxa.calls["/v1/jwks"], fxa.calls["/v1/verify"]
    section = f"{SECTION} {MEMORY}"
    table.add(
        section,
        "FxA GET /v1/jwks per new tokens",
        f"{jwks}/{count}",
        "<= 1/1000",
        jwks <= max(1, count // 1000),
    )
    table.add(section, "FxA POST /v1/verify per new tokens", f"{verify}/{count}", "0", verify == 0)


def cold_latency(
    table: Table, fxa: LocalFxAServer, backend: str, postgresql_url: str | None, rounds: int
) -> None:
    """Never-seen JWT (of a user already known) vs cached JWT, interleaved."""
    progress(f"{SECTION} {backend}: never-seen vs cached JWT, {rounds} pairs")
    app = make_app(fxa, postgresql_url)
    uid = fxa.uid_for("known@example.com")
    fresh = iter([fxa.mint_jwt(uid) for _ in range(rounds + 1)])
    cached = next(fresh)
    for _ in range(50):
        call(app, READ_PATH, bearer(cached))
    cold_cpu: list[float] = []
    warm_cpu: list[float] = []
    cold, warm = interleaved(
        rounds,
        with_cpu(lambda: call(app, READ_PATH, bearer(next(fresh))), cold_cpu),
        with_cpu(lambda: call(app, READ_PATH, bearer(cached)), warm_cpu),
    )
    added = median_ms(cold) - median_ms(warm)
    added_cpu = median_ms(cold_cpu) - median_ms(warm_cpu)
    target = COLD_TARGET_MS[backend]
    table.add(
        f"{SECTION} {backend}",
        "never-seen - cached JWT, known user (ms)",
        f"{added:+.3f}",
        f"<= +{target}",
        added <= target,
        f"{rounds} pairs; medians {median_ms(cold):.2f} / {median_ms(warm):.2f} ms",
    )
    table.add(
        f"{SECTION} {backend}",
        "never-seen - cached JWT, known user, CPU (ms)",
        f"{added_cpu:+.3f}",
        f"<= +{target}",
        added_cpu <= target,
        f"the request's CPU time (load-independent); medians "
        f"{median_ms(cold_cpu):.2f} / {median_ms(warm_cpu):.2f} ms",
    )


def bad_token(table: Table, fxa: LocalFxAServer, repeat: int) -> None:
    progress(f"{SECTION} {MEMORY}: bad tokens")
    app = make_app(fxa)
    call(app, READ_PATH, bearer(fxa.mint_jwt(fxa.uid_for("first@example.com"))))  # JWKS.
    bad = {
        "opaque token unknown to FxA": "0" * 64,
        "malformed JWT": "eyJhbGciOiJSUzI1NiJ9.bad.token",
        "expired JWT": fxa.mint_jwt(
            fxa.uid_for("x@example.com"), iat=int(time.time()) - 99, ttl=1
        ),
        "JWT signed with an unknown key": fxa.mint_jwt(
            fxa.uid_for("x@example.com"), kid="unknown", signing_key=fxa.new_key()
        ),
    }
    for label, token in bad.items():
        fxa.reset_calls()
        for _ in range(repeat):
            call(app, READ_PATH, bearer(token), expect=401)
        calls = fxa.calls.total()
        table.add(
            f"{SECTION} {MEMORY}", f"FxA calls, {label} x{repeat}", str(calls), "<= 1", calls <= 1
        )


def many_clients(table: Table, fxa: LocalFxAServer, rounds: int) -> None:
    progress(f"{SECTION} {MEMORY}: 10 clients vs 1, {rounds} pairs")
    one, ten = make_app(fxa, clients=1), make_app(fxa, clients=10)
    scope = "profile app-0"  # Routed to the same client in both.
    for app in (one, ten):
        call(app, READ_PATH, bearer(fxa.mint_jwt(fxa.uid_for("first@example.com"), scope=scope)))
    # Cold: alternate apps token by token.
    fresh = iter(distinct_tokens(fxa, 2 * rounds, scope))
    cold_one, cold_ten = interleaved(
        rounds,
        lambda: call(one, READ_PATH, bearer(next(fresh))),
        lambda: call(ten, READ_PATH, bearer(next(fresh))),
    )
    token = fxa.mint_jwt(fxa.uid_for("warm@example.com"), scope=scope)
    for _ in range(50):
        call(one, READ_PATH, bearer(token))
        call(ten, READ_PATH, bearer(token))
    fxa.reset_calls()
    warm_one, warm_ten = interleaved(
        rounds,
        lambda: call(one, READ_PATH, bearer(token)),
        lambda: call(ten, READ_PATH, bearer(token)),
    )
    section = f"{SECTION} {MEMORY}"
    for kind, ten_times, one_times in (("cold", cold_ten, cold_one), ("warm", warm_ten, warm_one)):
        ratio = ratio_of_medians(ten_times, one_times)
        table.add(
            section,
            f"10 clients / 1 client, {kind}",
            f"{ratio:.3f}",
            "<= 1.05",
            ratio <= 1.05,
            f"ratio of medians, {rounds} pairs",
        )
    calls = fxa.calls.total()
    table.add(section, "FxA calls, 10 vs 1 clients warm", str(calls), "0", calls == 0)


def run(
    table: Table, fxa: LocalFxAServer, postgresql_url: str | None, rounds: int, tokens: int
) -> None:
    warm_reads(table, make_app(fxa), fxa, MEMORY, rounds)
    if postgresql_url is None:
        table.skipped(f"{SECTION} {POSTGRESQL}", "PostgreSQL unreachable")
    else:
        warm_reads(table, make_app(fxa, postgresql_url), fxa, POSTGRESQL, pg_rounds(rounds))
    fxa_calls_for_distinct_tokens(table, fxa, tokens)
    cold_latency(table, fxa, MEMORY, None, rounds)
    if postgresql_url is not None:
        cold_latency(table, fxa, POSTGRESQL, postgresql_url, pg_rounds(rounds))
    bad_token(table, fxa, 100)
    many_clients(table, fxa, rounds)
