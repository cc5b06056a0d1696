"""``make bench``: what kinto-fxa's authentication costs, measured in one run.

Everything runs in this process against a Kinto WSGI app (no network between the client
and Kinto, so only the server's work is timed) and the local FxA server over HTTP.
Timings are compared within one run (ratios of interleaved measurements), since the
machine is shared: absolute figures are given for reference only.
"""

import argparse
import base64
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import kinto
from webob import Request

from kinto_fxa.testing.fxa_server import LocalFxAServer
from kinto_fxa.testing.postgresql import DEFAULT_ADMIN_URL, temporary_database


BASIC = "Basic " + base64.b64encode(b"bench:secret").decode()
READ_PATH = "/v1/buckets/bench/collections/bench/records"


def backend_settings(postgresql_url: str | None) -> dict[str, str]:
    if postgresql_url is None:
        return {
            "storage_backend": "kinto.core.storage.memory",
            "permission_backend": "kinto.core.permission.memory",
            "cache_backend": "kinto.core.cache.memory",
        }
    return {
        f"{name}_{key}": value
        for name in ("storage", "permission", "cache")
        for key, value in (
            ("backend", f"kinto.core.{name}.postgresql"),
            ("url", postgresql_url),
            ("pool_size", "4"),
        )
    }


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
        call(app, f"{READ_PATH}/r{i}", admin, method="PUT", body=b'{"data": {"n": 1}}', expect=201)
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
    start = time.perf_counter()
    response = request.get_response(app)
    elapsed = time.perf_counter() - start
    expected = expect if isinstance(expect, tuple) else (expect,)
    if response.status_code not in expected:
        raise SystemExit(f"{method} {path}: {response.status} {response.text[:200]}")
    return elapsed


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def interleaved(rounds: int, *runs: Callable[[], float]) -> list[list[float]]:
    """Run each callable once per round, in turn, so that noise hits them all alike."""
    samples: list[list[float]] = [[] for _ in runs]
    for _ in range(rounds):
        for i, run in enumerate(runs):
            samples[i].append(run())
    return samples


def median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


def report(label: str, value: str, target: str = "") -> None:
    print(f"  {label:<58} {value:>18}   {target}")


def warm_reads(app: Any, fxa: LocalFxAServer, rounds: int, label: str) -> None:
    token = fxa.mint_jwt(fxa.uid_for("reader@example.com"))
    for _ in range(50):  # Warm up both paths and the caches.
        call(app, READ_PATH, bearer(token))
        call(app, READ_PATH, {"Authorization": BASIC})
    fxa.reset_calls()
    fxa_times, basic_times = interleaved(
        rounds,
        lambda: call(app, READ_PATH, bearer(token)),
        lambda: call(app, READ_PATH, {"Authorization": BASIC}),
    )
    ratio = statistics.median(basic_times) / statistics.median(fxa_times)
    total_ratio = sum(basic_times) / sum(fxa_times)
    print(f"\nWarm authenticated reads, {label} ({rounds} interleaved pairs)")
    report(
        "median kinto-fxa / basicauth (us)",
        f"{median_us(fxa_times):.0f} / {median_us(basic_times):.0f}",
    )
    target = "target >= 0.97" if "memory" in label else "target >= 0.95"
    report("throughput ratio kinto-fxa vs basicauth (medians)", f"{ratio:.3f}", target)
    report("throughput ratio kinto-fxa vs basicauth (totals)", f"{total_ratio:.3f}")
    report("FxA calls during the run", str(fxa.calls.total()), "target 0")


def distinct_tokens(fxa: LocalFxAServer, count: int, scope: str = "profile") -> list[str]:
    return [fxa.mint_jwt(fxa.uid_for(f"user{i}@example.com"), scope=scope) for i in range(count)]


def fxa_calls_for_distinct_tokens(fxa: LocalFxAServer, count: int) -> None:
    app = make_app(fxa)
    tokens = distinct_tokens(fxa, count)
    fxa.reset_calls()
    for token in tokens:
        call(app, READ_PATH, bearer(token))
    print(f"\nFxA calls for {count} distinct JWT tokens")
    report("GET /v1/jwks", str(fxa.calls["/v1/jwks"]), "target 1")
    report("POST /v1/verify", str(fxa.calls["/v1/verify"]), "target 0")


def cold_vs_cached(app: Any, fxa: LocalFxAServer, rounds: int) -> tuple[float, float]:
    """Median time (us) of a request with a never-seen JWT and with a cached one."""
    fresh = iter(distinct_tokens(fxa, rounds + 1))
    cached = next(fresh)
    for _ in range(50):
        call(app, READ_PATH, bearer(cached))
    cold, warm = interleaved(
        rounds,
        lambda: call(app, READ_PATH, bearer(next(fresh))),
        lambda: call(app, READ_PATH, bearer(cached)),
    )
    return median_us(cold), median_us(warm)


def cold_latency(fxa: LocalFxAServer, rounds: int) -> None:
    app = make_app(fxa)
    call(app, READ_PATH, bearer(fxa.mint_jwt(fxa.uid_for("first@example.com"))))  # JWKS.
    cold, warm = cold_vs_cached(app, fxa, rounds)
    print(f"\nNever-seen JWT vs cached JWT ({rounds} interleaved pairs)")
    report("median cold / cached (us)", f"{cold:.0f} / {warm:.0f}")
    report(
        "added latency of a never-seen token", f"{(cold - warm) / 1000:.3f} ms", "target <= 0.5 ms"
    )


def bad_token(fxa: LocalFxAServer, repeat: int) -> None:
    app = make_app(fxa)
    call(app, READ_PATH, bearer(fxa.mint_jwt(fxa.uid_for("first@example.com"))))  # JWKS.
    print(f"\nThe same bad token sent {repeat} times (FxA calls it caused)")
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
        report(label, str(fxa.calls.total()), "target <= 1")


def many_clients(fxa: LocalFxAServer, rounds: int) -> None:
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
    print(f"\n10 client configs vs 1 ({rounds} interleaved pairs each)")
    report(
        "cold: median 10 clients / 1 client",
        f"{statistics.median(cold_ten) / statistics.median(cold_one):.3f}",
        "target <= 1.05",
    )
    report(
        "warm: median 10 clients / 1 client",
        f"{statistics.median(warm_ten) / statistics.median(warm_one):.3f}",
        "target <= 1.05",
    )
    report("FxA calls per cached request", f"{fxa.calls.total() / (2 * rounds):.2f}", "target 0")


@contextmanager
def postgresql(admin_url: str) -> Iterator[str | None]:
    try:
        with temporary_database(admin_url) as url:
            yield url
    except Exception as e:  # Unreachable server: say so, run the rest.
        print(f"\n!! PostgreSQL unreachable at {admin_url} ({e.__class__.__name__}): skipped")
        yield None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2000, help="interleaved pairs per figure")
    parser.add_argument("--tokens", type=int, default=1000, help="distinct tokens to count")
    parser.add_argument(
        "--postgresql-url",
        default=os.environ.get("KINTO_FXA_POSTGRESQL_URL", DEFAULT_ADMIN_URL),
        help="server where a temporary database is created",
    )
    args = parser.parse_args(argv)

    with LocalFxAServer() as fxa:
        fxa.register_client("kinto-client", "kinto-secret")
        print(f"kinto-fxa benchmarks (Python {sys.version.split()[0]}, local FxA at {fxa.url})")
        warm_reads(make_app(fxa), fxa, args.rounds, "memory backends")
        with postgresql(args.postgresql_url) as url:
            if url is not None:
                warm_reads(make_app(fxa, url), fxa, args.rounds, "PostgreSQL backends")
        fxa_calls_for_distinct_tokens(fxa, args.tokens)
        cold_latency(fxa, min(args.rounds, 1000))
        bad_token(fxa, 100)
        many_clients(fxa, min(args.rounds, 1000))


if __name__ == "__main__":
    main()
