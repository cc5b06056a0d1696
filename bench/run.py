"""``make bench``: what kinto-fxa's authentication costs, measured in one run.

Two modes, against the local FxA server:

* in-process (``inprocess.py``): a Kinto WSGI app called from this process, so only the
  server's work is timed;
* HTTP (``httpmode.py``): ``kinto start`` processes (waitress, 4 threads) on the memory
  and PostgreSQL backends, keep-alive clients, what a client sees.

Timings are compared within one run (ratios, or differences of medians, of interleaved
measurements), since the machine is shared: absolute figures are given for reference only.
One table is printed on stdout at the end; progress goes to stderr.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import httpmode
import inprocess
from common import Table, postgresql, progress
from tokens import Minter

from kinto_fxa.testing.fxa_server import LocalFxAServer
from kinto_fxa.testing.postgresql import DEFAULT_ADMIN_URL


MODES = ("all", "http", "inprocess")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mode", choices=MODES, default="all")
    parser.add_argument("--rounds", type=int, default=1000, help="interleaved pairs per figure")
    parser.add_argument("--tokens", type=int, default=1000, help="new tokens (FxA calls)")
    parser.add_argument(
        "--rss-tokens",
        type=int,
        default=100_000,
        help="distinct tokens sent to one Kinto process to measure its RSS growth (0: skip)",
    )
    parser.add_argument(
        "--rss-cache-size",
        type=int,
        default=None,
        help="fxa-oauth.local_cache_size of that process (default: kinto-fxa's)",
    )
    parser.add_argument(
        "--rss-seconds",
        type=float,
        default=240,
        help="once the cache is full, stop sending tokens after this long (shared machines)",
    )
    parser.add_argument(
        "--postgresql-url",
        default=os.environ.get("KINTO_FXA_POSTGRESQL_URL", DEFAULT_ADMIN_URL),
        help="server where a temporary database is created",
    )
    args = parser.parse_args(argv)

    started = time.monotonic()
    table = Table()
    with (
        LocalFxAServer() as fxa,
        postgresql(args.postgresql_url) as url,
        tempfile.TemporaryDirectory(prefix="kinto-fxa-bench-") as workdir,
    ):
        fxa.register_client("kinto-client", "kinto-secret")
        if args.mode in ("all", "inprocess"):
            inprocess.run(table, fxa, url, args.rounds, args.tokens)
        if args.mode in ("all", "http"):
            with Minter(fxa) as minter:
                httpmode.run(
                    table,
                    Path(workdir),
                    fxa,
                    minter,
                    url,
                    args.rounds,
                    args.tokens,
                    args.rss_tokens,
                    args.rss_cache_size,
                    args.rss_seconds,
                )
    progress(f"done in {time.monotonic() - started:.0f} s")
    print(
        f"kinto-fxa benchmarks (Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"--rounds {args.rounds} --tokens {args.tokens} --rss-tokens {args.rss_tokens}; "
        f"ratios > 1 favour kinto-fxa for fxa/basicauth)"
    )
    print(table.render())
    misses = [r for r in table.rows if r.met is False]
    print(f"{len(misses)} target(s) missed" if misses else "every target met")


if __name__ == "__main__":
    main()
