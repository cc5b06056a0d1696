"""HTTP mode: ``kinto start`` processes (waitress, 4 threads) and keep-alive clients.

What a client sees, network stack and WSGI server included (over loopback, so the client's
own work is timed too: it is the same on both sides of every comparison). Latencies are
the medians of interleaved pairs on one keep-alive connection (a ``requests.Session``);
with 4 concurrent clients, each is a thread with its own session, doing interleaved pairs.
"""

import http.client
import queue
import statistics
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import requests
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
from processes import KintoServer
from tokens import Minter

from kinto_fxa.testing.fxa_server import LocalFxAServer


#: Kinto's root URL: authenticates (its answer names the user) and does little else.
HELLO_PATH = "/v1/"
WARMUP = 50

CLIENTS_TARGET = 1.05


def kinto_settings(
    fxa: LocalFxAServer, postgresql_url: str | None = None, clients: int = 0, **extra: str
) -> dict[str, str]:
    """Kinto with kinto-fxa and basicauth; with ``clients``, that many named clients
    configured as kinto-fxa 2.x documents them (``required_scope = profile app-<i>``)."""
    settings = {
        **backend_settings(postgresql_url),
        "kinto.includes": "kinto_fxa",
        "kinto.userid_hmac_secret": "bench",
        "multiauth.policies": "fxa basicauth",
        "multiauth.policy.fxa.use": "kinto_fxa.authentication.FxAOAuthAuthenticationPolicy",
        "kinto.bucket_create_principals": "system.Authenticated",
        "fxa-oauth.oauth_uri": fxa.oauth_uri,
        "fxa-oauth.client_id": "kinto-client",
    }
    for i in range(clients):
        settings[f"fxa-oauth.clients.app{i}.client_id"] = f"app{i}"
        settings[f"fxa-oauth.clients.app{i}.required_scope"] = f"profile app-{i}"
    settings.update(extra)
    return settings


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Client:
    """One keep-alive connection to a Kinto."""

    def __init__(self, server: KintoServer, measure_cpu: bool = False) -> None:
        self.server = server
        self.base = server.url
        self.session = requests.Session()
        #: With ``measure_cpu``, the server's CPU time of each request (only meaningful
        #: with a single client at a time).
        self.measure_cpu = measure_cpu
        self.last_cpu = 0.0

    def call(
        self,
        path: str,
        headers: dict[str, str],
        method: str = "GET",
        body: bytes | None = None,
        expect: int | tuple[int, ...] = 200,
    ) -> float:
        """One request; returns its duration in seconds (until the body is read)."""
        if body is not None:
            headers = {**headers, "Content-Type": "application/json"}
        cpu_before = self.server.cpu_seconds() if self.measure_cpu else 0.0
        start = time.perf_counter()
        response = self.session.request(method, self.base + path, headers=headers, data=body)
        elapsed = time.perf_counter() - start
        if self.measure_cpu:
            self.last_cpu = self.server.cpu_seconds() - cpu_before
        expected = expect if isinstance(expect, tuple) else (expect,)
        if response.status_code not in expected:
            raise SystemExit(f"{method} {path}: {response.status_code} {response.text[:200]}")
        return elapsed

    def read(self, token: str | None = None) -> float:
        auth = BASIC if token is None else f"Bearer {token}"
        return self.call(READ_PATH, {"Authorization": auth})

    def close(self) -> None:
        self.session.close()


def seed(server: KintoServer) -> None:
    """Records every authenticated user can read."""
    client = Client(server)
    admin = {"Authorization": BASIC}
    body = b'{"permissions": {"read": ["system.Authenticated"]}}'
    for path in ("/v1/buckets/bench", "/v1/buckets/bench/collections/bench"):
        client.call(path, admin, method="PUT", body=body, expect=(200, 201))
    for i in range(10):
        client.call(f"{READ_PATH}/r{i}", admin, "PUT", b'{"data": {"n": 1}}', expect=(200, 201))
    client.close()


def concurrently(count: int, work: Callable[[int], Any]) -> list[Any]:
    """``work(i)`` in ``count`` threads started together; their results, in order."""
    results: list[Any] = [None] * count
    errors: list[BaseException] = []
    barrier = threading.Barrier(count)

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except BaseException as e:
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def warm_reads(
    table: Table, server: KintoServer, fxa: LocalFxAServer, token: str, backend: str, rounds: int
) -> None:
    """kinto-fxa vs basicauth, warm caches, 1 and 4 concurrent clients."""
    target = WARM_TARGET[backend]
    section = f"HTTP {backend}"
    for clients in (1, 4):
        pairs = rounds if clients == 1 else max(rounds // clients, 10)  # Same total.
        progress(f"{section}: warm reads, {clients} client(s), {pairs} pairs each")

        def work(
            _: int, pairs: int = pairs, alone: bool = clients == 1
        ) -> tuple[list[float], ...]:
            client = Client(server, measure_cpu=alone)
            for _ in range(5):  # Connect.
                client.read(token)
                client.read()
            fxa_cpu: list[float] = []
            basic_cpu: list[float] = []

            def fxa_read() -> float:
                elapsed = client.read(token)
                fxa_cpu.append(client.last_cpu)
                return elapsed

            def basic_read() -> float:
                elapsed = client.read()
                basic_cpu.append(client.last_cpu)
                return elapsed

            fxa_times, basic_times = interleaved(pairs, fxa_read, basic_read)
            client.close()
            return fxa_times, basic_times, fxa_cpu, basic_cpu

        warmup = Client(server)
        for _ in range(WARMUP):
            warmup.read(token)
            warmup.read()
        warmup.close()
        fxa.reset_calls()
        results = concurrently(clients, work)
        fxa_times = [t for r in results for t in r[0]]
        basic_times = [t for r in results for t in r[1]]
        ratio = ratio_of_medians(basic_times, fxa_times)
        table.add(
            section,
            f"warm fxa/basicauth, {clients} client{'s' if clients > 1 else ''}",
            f"{ratio:.3f}",
            f">= {target}",
            ratio >= target,
            f"basicauth median / fxa median; {len(fxa_times)} pairs; "
            f"medians {median_ms(fxa_times):.2f} / {median_ms(basic_times):.2f} ms",
        )
        if clients == 1:
            fxa_cpu, basic_cpu = results[0][2], results[0][3]
            cpu_ratio = ratio_of_medians(basic_cpu, fxa_cpu)
            table.add(
                section,
                "warm fxa/basicauth, 1 client, server CPU",
                f"{cpu_ratio:.3f}",
                f">= {target}",
                cpu_ratio >= target,
                "basicauth / fxa medians of the server's CPU time per request; "
                f"{median_ms(fxa_cpu):.2f} / {median_ms(basic_cpu):.2f} ms",
            )
        calls = fxa.calls.total()
        table.add(
            section, f"FxA calls, warm reads, {clients} client(s)", str(calls), "0", calls == 0
        )


def cold_vs_cached(
    table: Table,
    server: KintoServer,
    minter: Minter,
    fxa: LocalFxAServer,
    backend: str,
    rounds: int,
) -> None:
    """Never-seen JWT vs cached JWT, interleaved on one connection: of a user the process
    already knows (a refreshed token), and of a user it has never seen."""
    section = f"HTTP {backend}"
    target = COLD_TARGET_MS[backend]
    known = fxa.uid_for("known@example.com")
    cached = minter.mint([known])[0]
    client = Client(server, measure_cpu=True)
    for _ in range(WARMUP):
        client.read(cached)
    for kind, uids in (
        ("known user", [known] * rounds),
        ("new user", [fxa.uid_for(f"cold-{backend}-{i}@example.com") for i in range(rounds)]),
    ):
        progress(f"{section}: never-seen vs cached JWT, {kind}, {rounds} pairs")
        fresh = iter(minter.mint(uids))
        cold_cpu: list[float] = []
        warm_cpu: list[float] = []

        def read(token: str, cpu: list[float]) -> float:
            elapsed = client.read(token)
            cpu.append(client.last_cpu)
            return elapsed

        cold, warm = interleaved(
            rounds,
            lambda fresh=fresh, cpu=cold_cpu: read(next(fresh), cpu),
            lambda cpu=warm_cpu: read(cached, cpu),
        )
        added = median_ms(cold) - median_ms(warm)
        table.add(
            section,
            f"never-seen - cached JWT, {kind} (ms)",
            f"{added:+.3f}",
            f"<= +{target}",
            added <= target,
            f"difference of medians of {rounds} interleaved pairs; "
            f"{added / median_ms(warm):.1%} of the cached request (scales with the machine)",
        )
        table.add(
            section,
            f"cold / warm medians, {kind} (ms)",
            f"{median_ms(cold):.2f}/{median_ms(warm):.2f}",
            note=f"p90 {quantile_ms(cold, 0.9):.2f}/{quantile_ms(warm, 0.9):.2f}",
        )
        added_cpu = median_ms(cold_cpu) - median_ms(warm_cpu)
        table.add(
            section,
            f"never-seen - cached JWT, {kind}, server CPU (ms)",
            f"{added_cpu:+.3f}",
            f"<= +{target}",
            added_cpu <= target,
            f"the server's CPU time per request (load-independent); medians "
            f"{median_ms(cold_cpu):.2f} / {median_ms(warm_cpu):.2f} ms",
        )
    client.close()


def quantile_ms(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100)[int(q * 100) - 1] * 1000


def fxa_calls_for_new_tokens(
    table: Table, server: KintoServer, minter: Minter, fxa: LocalFxAServer, count: int
) -> None:
    """FxA calls made by a fresh process for ``count`` distinct tokens (distinct users)."""
    progress(f"HTTP {MEMORY}: FxA calls for {count} new tokens")
    tokens = minter.mint([fxa.uid_for(f"new-{i}@example.com") for i in range(count)])
    client = Client(server)
    fxa.reset_calls()
    for token in tokens:
        client.read(token)
    client.close()
    jwks, verify = fxa.calls["/v1/jwks"], fxa.calls["/v1/verify"]
    table.add(
        f"HTTP {MEMORY}",
        "FxA GET /v1/jwks per new tokens",
        f"{jwks}/{count}",
        "<= 1/1000",
        jwks <= max(1, count // 1000),
        "a fresh process",
    )
    table.add(
        f"HTTP {MEMORY}",
        "FxA POST /v1/verify per new tokens",
        f"{verify}/{count}",
        "0",
        verify == 0,
    )


def many_clients(
    table: Table, workdir: Path, fxa: LocalFxAServer, minter: Minter, rounds: int
) -> None:
    """10 named clients vs 1, tokens with scope ``profile app-0`` (routed to ``app0``)."""
    section = f"HTTP {MEMORY}"
    scope = "profile app-0"
    known = fxa.uid_for("clients@example.com")
    with (
        KintoServer(workdir, kinto_settings(fxa, clients=1)) as one,
        KintoServer(workdir, kinto_settings(fxa, clients=10)) as ten,
    ):
        for server in (one, ten):
            seed(server)
        c1, c10 = Client(one, measure_cpu=True), Client(ten, measure_cpu=True)
        warm = minter.mint([known], scope=scope)[0]
        for _ in range(WARMUP):
            c1.read(warm)
            c10.read(warm)
        progress(f"{section}: 10 clients vs 1, {rounds} pairs cold and warm")
        fresh = iter(minter.mint([known] * 2 * rounds, scope=scope))
        cpu: dict[tuple[str, Client], list[float]] = {}

        def read(kind: str, client: Client, token: str) -> float:
            elapsed = client.read(token)
            cpu.setdefault((kind, client), []).append(client.last_cpu)
            return elapsed

        cold_one, cold_ten = interleaved(
            rounds,
            lambda: read("cold", c1, next(fresh)),
            lambda: read("cold", c10, next(fresh)),
        )
        fxa.reset_calls()
        warm_one, warm_ten = interleaved(
            rounds, lambda: read("warm", c1, warm), lambda: read("warm", c10, warm)
        )
        calls = fxa.calls.total()
        for kind, ten_times, one_times in (
            ("cold", cold_ten, cold_one),
            ("warm", warm_ten, warm_one),
        ):
            ratio = ratio_of_medians(ten_times, one_times)
            table.add(
                section,
                f"10 clients / 1 client, {kind}",
                f"{ratio:.3f}",
                f"<= {CLIENTS_TARGET}",
                ratio <= CLIENTS_TARGET,
                f"ratio of medians, {rounds} pairs; "
                f"{median_ms(ten_times):.2f} / {median_ms(one_times):.2f} ms",
            )
            ten_cpu, one_cpu = cpu[(kind, c10)], cpu[(kind, c1)]
            cpu_ratio = ratio_of_medians(ten_cpu, one_cpu)
            table.add(
                section,
                f"10 clients / 1 client, {kind}, server CPU",
                f"{cpu_ratio:.3f}",
                f"<= {CLIENTS_TARGET}",
                cpu_ratio <= CLIENTS_TARGET,
                f"ratio of the servers' CPU time per request (medians); "
                f"{median_ms(ten_cpu):.2f} / {median_ms(one_cpu):.2f} ms",
            )
        table.add(section, "FxA calls, 10 vs 1 clients warm", str(calls), "0", calls == 0)
        c1.close()
        c10.close()


def flood(server: KintoServer, chunks: Iterable[list[str]], connections: int = 4) -> int:
    """Send every token once (``GET /v1/``) over ``connections`` keep-alive connections;
    returns how many were accepted."""
    work: queue.Queue[list[str] | None] = queue.Queue(maxsize=4 * connections)
    accepted = [0] * connections

    def send(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        while (chunk := work.get()) is not None:
            for token in chunk:
                conn.request("GET", HELLO_PATH, headers={"Authorization": f"Bearer {token}"})
                response = conn.getresponse()
                body = response.read()
                if response.status == 200 and b'"user"' in body:
                    accepted[i] += 1
        conn.close()

    threads = [threading.Thread(target=send, args=(i,)) for i in range(connections)]
    for thread in threads:
        thread.start()
    try:
        for chunk in chunks:
            work.put(chunk)
    finally:
        for _ in threads:
            work.put(None)
        for thread in threads:
            thread.join()
    return sum(accepted)


def rss_growth(
    table: Table,
    workdir: Path,
    fxa: LocalFxAServer,
    minter: Minter,
    count: int,
    cache_size: int | None,
    budget_seconds: float,
) -> None:
    """VmRSS of a Kinto process before and after ``count`` distinct tokens (distinct users),
    read every tenth of the way, the first time once ``local_cache_size`` tokens were seen
    (the caches are full). Past that point, sending stops after ``budget_seconds``."""
    section = f"HTTP {MEMORY}"
    extra = {} if cache_size is None else {"fxa-oauth.local_cache_size": str(cache_size)}
    size = cache_size if cache_size is not None else 10000  # kinto-fxa's default.
    full_at = min(size, count)
    step = max(full_at, count // 10, 1)
    uids = [fxa.uid_for(f"rss-{i}@example.com") for i in range(count)]
    with KintoServer(workdir, kinto_settings(fxa, **extra)) as server:
        # Warm up every code path first (JWKS, basicauth, the caches' structures).
        warmup = minter.mint([fxa.uid_for(f"rss-warmup-{i}@example.com") for i in range(200)])
        if flood(server, [warmup]) != len(warmup):
            raise SystemExit("RSS: warm-up tokens refused")
        client = Client(server)
        for _ in range(200):
            client.call(HELLO_PATH, {"Authorization": BASIC})
        client.close()
        progress(f"{section}: RSS, {count} distinct tokens (cache size {size})")
        start = time.monotonic()
        readings = [(0, server.rss_kb())]  # (tokens sent, VmRSS in kB)
        sent = accepted = 0
        while sent < count:
            if sent >= full_at and time.monotonic() - start > budget_seconds:
                break
            batch = uids[sent : sent + (full_at if sent == 0 else step)]
            accepted += flood(server, minter.iter_mint(batch))
            sent += len(batch)
            readings.append((sent, server.rss_kb()))
        seconds = time.monotonic() - start
    if accepted != sent:
        raise SystemExit(f"RSS: {sent - accepted} of {sent} tokens refused")
    before, at_full, after = readings[0][1], readings[1][1], readings[-1][1]
    half_sent, at_half = next(r for r in readings if r[0] >= sent // 2)
    stopped = f" (stopped by --rss-seconds {budget_seconds:.0f})" if sent < count else ""
    table.add(
        section,
        "RSS growth, distinct tokens (MB)",
        f"{(after - before) / 1024:.1f}",
        "bounded",
        None,
        f"{sent} tokens in {seconds:.0f} s{stopped}; VmRSS {before / 1024:.1f} -> "
        f"{after / 1024:.1f} MB; local_cache_size {size}",
    )
    table.add(
        section,
        "RSS growth once the cache is full (MB)",
        f"{(after - at_full) / 1024:.1f}",
        "~ 0",
        None,
        f"from token {full_at} to {sent}",
    )
    table.add(
        section,
        "RSS growth, second half of the tokens (MB)",
        f"{(after - at_half) / 1024:.1f}",
        "~ 0",
        None,
        f"from token {half_sent} to {sent}: a plateau if the caches are bounded",
    )


def run(
    table: Table,
    workdir: Path,
    fxa: LocalFxAServer,
    minter: Minter,
    postgresql_url: str | None,
    rounds: int,
    tokens: int,
    rss_tokens: int,
    rss_cache_size: int | None,
    rss_seconds: float,
) -> None:
    with KintoServer(workdir, kinto_settings(fxa)) as server:
        seed(server)
        fxa_calls_for_new_tokens(table, server, minter, fxa, tokens)
        warm = minter.mint([fxa.uid_for("reader@example.com")])[0]
        warm_reads(table, server, fxa, warm, MEMORY, rounds)
        cold_vs_cached(table, server, minter, fxa, MEMORY, rounds)
    if postgresql_url is None:
        table.skipped(f"HTTP {POSTGRESQL}", "PostgreSQL unreachable")
    else:
        with KintoServer(workdir, kinto_settings(fxa, postgresql_url)) as server:
            seed(server)
            warm = minter.mint([fxa.uid_for("reader@example.com")])[0]
            warm_reads(table, server, fxa, warm, POSTGRESQL, pg_rounds(rounds))
            cold_vs_cached(table, server, minter, fxa, POSTGRESQL, pg_rounds(rounds))
    many_clients(table, workdir, fxa, minter, rounds)
    if rss_tokens > 0:
        rss_growth(table, workdir, fxa, minter, rss_tokens, rss_cache_size, rss_seconds)
