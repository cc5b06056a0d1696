"""Where the time of a never-seen JWT goes (not part of ``make bench``)::

    .venv/bin/python bench/coldpath.py [--requests 200] [--memory] [--top 25]

In-process Kinto app (PostgreSQL backends by default), the local FxA server. For a cold
request (a never-seen JWT of a user this process already knows) and a warm one (a cached
JWT), counts per request:

* Kinto cache-backend calls (``registry.cache`` methods), storage and permission backend
  calls (``registry.storage`` / ``registry.permission`` methods);
* SQL statements sent to PostgreSQL (``before_cursor_execute``), transactions begun,
  committed and rolled back, pool checkouts (SQLAlchemy events on every engine);

then profiles the cold and the warm requests with cProfile and lists the functions whose
cumulative time per request grows most from warm to cold.
"""

import argparse
import collections
import cProfile
import json
import os
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import inprocess
import jwt
from common import postgresql
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from fxa.oauth import Client as OAuthClient
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import Pool

from kinto_fxa.testing.fxa_server import LocalFxAServer
from kinto_fxa.testing.postgresql import DEFAULT_ADMIN_URL
from kinto_fxa.verification import parse_jws


class Counters:
    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self.statements: collections.Counter[str] = collections.Counter()

    def reset(self) -> None:
        self.counts.clear()
        self.statements.clear()


COUNTERS = Counters()


def listen_to_sqlalchemy() -> None:
    def execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        COUNTERS.counts["sql statements (round trips)"] += 1
        COUNTERS.statements[" ".join(statement.split())[:110]] += 1

    event.listen(Engine, "before_cursor_execute", execute)
    for name in ("begin", "commit", "rollback"):
        event.listen(Engine, name, lambda conn, name=name: COUNTERS.counts.update([f"sql {name}"]))
    event.listen(Pool, "checkout", lambda *a: COUNTERS.counts.update(["pool checkout"]))


def count_calls(backend: Any, kind: str) -> None:
    """Count every public method call of a Kinto backend (patched on the instance)."""
    for name in dir(backend):
        if name.startswith("_"):
            continue
        method = getattr(backend, name)
        if not callable(method) or isinstance(method, type):
            continue

        def counted(*args: Any, _method: Callable[..., Any] = method, _name: str = name, **kw):
            COUNTERS.counts[f"{kind}.{_name}"] += 1
            return _method(*args, **kw)

        setattr(backend, name, counted)


def per_request(run: Callable[[], Any], n: int) -> dict[str, float]:
    COUNTERS.reset()
    for _ in range(n):
        run()
    return {k: v / n for k, v in COUNTERS.counts.items()}


def median_us(run: Callable[[], Any], n: int) -> float:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        run()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e6


def breakdown(app: Any, fxa: LocalFxAServer, uid: str, cached: str, n: int) -> None:
    """The cold path's pieces, timed one by one (medians of ``n`` calls, no profiler)."""
    registry = app.registry
    authenticator = registry.fxa_authenticator
    verifier = registry.fxa_verifier
    tokens = [fxa.mint_jwt(uid) for _ in range(n)]
    token = tokens[0]
    fresh = iter(tokens)
    jwk = fxa.jwks["keys"][-1]
    jwk_json = json.dumps(jwk)
    pubkey = jwt.algorithms.RSAAlgorithm.from_jwk(jwk_json)
    signing_input, _, signature = token.rpartition(".")
    raw_signature = jwt.utils.base64url_decode(signature)
    numbers = pubkey.public_numbers()
    print(f"\nPieces of the cold path (median of {n} calls each, us; no profiler):")
    # PyFxA's own check, for comparison (kinto-fxa calls PyJWT directly).
    client = OAuthClient(
        server_url=fxa.oauth_uri, cache=None, jwks=verifier.jwks.keys_for(jwk["kid"])
    )
    options = {"verify_aud": False}
    pkcs1, sha256 = padding.PKCS1v15(), hashes.SHA256()
    message = signing_input.encode()
    verified = verifier.verify(token)
    pieces: list[tuple[str, Callable[[], Any]]] = [
        ("request, cached JWT (WSGI, whole request)", lambda: read_with(app, cached)),
        ("Authenticator.authenticate, cached JWT", lambda: authenticator.authenticate(cached)),
        (
            "Authenticator.authenticate, never-seen JWT",
            lambda: authenticator.authenticate(next(fresh)),
        ),
        ("TokenVerifier.verify (JWT)", lambda: verifier.verify(token)),
        ("  PyFxA OAuthClient.verify_token", lambda: client.verify_token(token)),
        (
            "    RSAAlgorithm.from_jwk (key built per token)",
            lambda: jwt.algorithms.RSAAlgorithm.from_jwk(jwk_json),
        ),
        ("      RSAPublicNumbers.public_key", lambda: numbers.public_key()),
        (
            "    jwt.decode with a prebuilt key",
            lambda: jwt.decode(token, pubkey, algorithms=["RS256"], options=options),
        ),
        (
            "      RSA verify (cryptography)",
            lambda: pubkey.verify(raw_signature, message, pkcs1, sha256),
        ),
        ("    jwt.get_unverified_header", lambda: jwt.get_unverified_header(token)),
        ("  kinto-fxa parse_jws (one pass, header memoized)", lambda: parse_jws(token)),
        ("hmac_digest(token)", lambda: authenticator.digest(token)),
        ("Revocations.cutoff (memo hit)", lambda: registry.fxa_revocations.cutoff(uid)),
        ("routing (memoized per scopes and client)", lambda: authenticator._route(verified, 0)),
    ]
    for label, run in pieces:
        print(f"  {label:<52} {median_us(run, n):8.1f}")


def read_with(app: Any, token: str) -> float:
    return inprocess.call(app, inprocess.READ_PATH, inprocess.bearer(token))


def where(func: tuple[str, int, str]) -> str:
    filename, line, name = func
    for marker in ("site-packages/", "/work/main/"):
        if marker in filename:
            filename = filename.split(marker, 1)[1]
    return f"{filename}:{line}({name})" if line else name


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--memory", action="store_true", help="memory backends")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--pyinstrument", action="store_true", help="also a pyinstrument tree")
    parser.add_argument(
        "--postgresql-url", default=os.environ.get("KINTO_FXA_POSTGRESQL_URL", DEFAULT_ADMIN_URL)
    )
    args = parser.parse_args(argv)
    n = args.requests
    listen_to_sqlalchemy()
    with LocalFxAServer() as fxa, postgresql(args.postgresql_url) as url:
        if not args.memory and url is None:
            raise SystemExit("PostgreSQL unreachable")
        app = inprocess.make_app(fxa, None if args.memory else url)
        registry = app.registry
        for kind in ("cache", "storage", "permission"):
            count_calls(getattr(registry, kind), kind)
        uid = fxa.uid_for("known@example.com")
        cached = fxa.mint_jwt(uid)
        # Fresh tokens: counts, profiles (cProfile, pyinstrument).
        fresh = iter([fxa.mint_jwt(uid) for _ in range(3 * n + 2)])
        new_users = iter([fxa.mint_jwt(fxa.uid_for(f"u{i}@example.com")) for i in range(n)])

        def read(token: str) -> float:
            return inprocess.call(app, inprocess.READ_PATH, inprocess.bearer(token))

        for _ in range(50):
            read(cached)

        def warm() -> float:
            return read(cached)

        def cold() -> float:
            return read(next(fresh))

        def cold_new_user() -> float:
            return read(next(new_users))

        backend = "memory" if args.memory else "PostgreSQL"
        print(f"Per request, in-process, {backend} backends, {n} requests of each kind")
        counts = {
            "warm (cached JWT)": per_request(warm, n),
            "cold (new JWT, known user)": per_request(cold, n),
            "cold (new JWT, new user)": per_request(cold_new_user, n),
        }
        keys = sorted({k for c in counts.values() for k in c})
        print(f"  {'':<34}" + "".join(f"{kind:>30}" for kind in counts))
        for key in keys:
            print(f"  {key:<34}" + "".join(f"{c.get(key, 0):>30.2f}" for c in counts.values()))

        COUNTERS.reset()
        read(next(fresh))
        print("\nSQL statements of one cold request (known user):")
        for statement, times in COUNTERS.statements.most_common():
            print(f"  {times} x {statement}")
        COUNTERS.reset()
        read(cached)
        print("SQL statements of one warm request:")
        for statement, times in COUNTERS.statements.most_common():
            print(f"  {times} x {statement}")

        breakdown(app, fxa, uid, cached, n)

        # Interleaved profiles: noise (PostgreSQL, other processes) hits both alike.
        cold_profiler, warm_profiler = cProfile.Profile(), cProfile.Profile()
        for _ in range(n):
            cold_profiler.enable()
            cold()
            cold_profiler.disable()
            warm_profiler.enable()
            warm()
            warm_profiler.disable()
        cold_table: dict[Any, Any] = pstats.Stats(cold_profiler).stats  # type: ignore[attr-defined]
        warm_table: dict[Any, Any] = pstats.Stats(warm_profiler).stats  # type: ignore[attr-defined]
        rows = []
        for func, (_cc, calls, tottime, cumtime, _callers) in cold_table.items():
            w = warm_table.get(func, (0, 0, 0.0, 0.0, {}))
            rows.append(((cumtime - w[3]) / n, (tottime - w[2]) / n, (calls - w[1]) / n, func))
        total_cold = sum(v[2] for v in cold_table.values()) / n
        total_warm = sum(v[2] for v in warm_table.values()) / n
        print(
            f"\ncProfile ({n} interleaved cold/warm requests; cProfile inflates many small "
            f"calls): cold {total_cold * 1e3:.3f} ms, warm {total_warm * 1e3:.3f} ms, extra "
            f"{(total_cold - total_warm) * 1e3:.3f} ms per request"
        )
        print(f"Top {args.top} by extra cumulative time per cold request (vs warm), us:")
        print(f"  {'extra cum':>9} {'extra own':>9} {'+calls':>7}  function")
        for dcum, dtot, dcalls, func in sorted(rows, key=lambda r: -r[0])[: args.top]:
            print(f"  {dcum * 1e6:9.1f} {dtot * 1e6:9.1f} {dcalls:7.1f}  {where(func)}")
        print(f"Top {args.top} by extra own time per cold request (vs warm), us:")
        for _dcum, dtot, dcalls, func in sorted(rows, key=lambda r: -r[1])[: args.top]:
            print(f"  {dtot * 1e6:9.1f} {dcalls:7.1f}  {where(func)}")

        if args.pyinstrument:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0002)
            profiler.start()
            for _ in range(n):
                cold()
            profiler.stop()
            text = profiler.output_text(unicode=False, color=False, show_all=False)
            lines = [line for line in text.splitlines() if line.strip()]
            marker = next((i for i, line in enumerate(lines) if "authenticate" in line), 0)
            print(f"\npyinstrument, {n} cold requests, from the first authenticate frame:")
            print("\n".join(lines[marker : marker + 60]))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
