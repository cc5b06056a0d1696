"""What the in-process and HTTP benchmarks share: the result table, interleaving, backends."""

import base64
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from kinto_fxa.testing.postgresql import temporary_database


MEMORY, POSTGRESQL = "memory", "PostgreSQL"
#: The benchmark user's basicauth credentials and what every timed request reads.
BASIC = "Basic " + base64.b64encode(b"bench:secret").decode()
READ_PATH = "/v1/buckets/bench/collections/bench/records"
#: (memory, PostgreSQL) targets: warm fxa/basicauth ratio, never-seen - cached JWT.
WARM_TARGET = {MEMORY: 0.97, POSTGRESQL: 0.95}
COLD_TARGET_MS = {MEMORY: 0.3, POSTGRESQL: 1.0}


def backend_settings(postgresql_url: str | None, pool_size: int = 4) -> dict[str, str]:
    """Kinto storage, permission and cache settings: memory, or PostgreSQL for all three."""
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
            ("pool_size", str(pool_size)),
        )
    }


def interleaved(rounds: int, *runs: Callable[[], float]) -> list[list[float]]:
    """Run each callable once per round, in turn, so that noise hits them all alike (in
    reverse order every other round: neither always follows the other)."""
    samples: list[list[float]] = [[] for _ in runs]
    order = list(enumerate(runs))
    for n in range(rounds):
        for i, run in order if n % 2 == 0 else reversed(order):
            samples[i].append(run())
    return samples


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def ratio_of_medians(numerator: list[float], denominator: list[float]) -> float:
    return statistics.median(numerator) / statistics.median(denominator)


def pg_rounds(rounds: int) -> int:
    """Pairs for a PostgreSQL figure: half as many (its requests take several times longer,
    and its targets are looser)."""
    return max(rounds // 2, 10)


_STARTED = time.monotonic()


def progress(message: str) -> None:
    """Where the run is (stderr: stdout is the table)."""
    print(f"... {time.monotonic() - _STARTED:5.0f} s  {message}", file=sys.stderr, flush=True)


@dataclass
class Row:
    section: str
    label: str
    value: str
    target: str = ""
    #: Whether the target is met; ``None``: no target, or nothing to compare.
    met: bool | None = None
    note: str = ""


@dataclass
class Table:
    """Every figure of one run, printed once at the end."""

    rows: list[Row] = field(default_factory=list)

    def add(
        self,
        section: str,
        label: str,
        value: str,
        target: str = "",
        met: bool | None = None,
        note: str = "",
    ) -> None:
        self.rows.append(Row(section, label, value, target, met, note))

    def skipped(self, section: str, why: str) -> None:
        self.rows.append(Row(section, "(skipped)", "-", note=why))

    def render(self) -> str:
        header = Row("where", "figure", "value", "target", None, "details")
        width = max(len(r.label) for r in [header, *self.rows])
        where = max(len(r.section) for r in [header, *self.rows])
        lines = []
        for i, row in enumerate([header, *self.rows]):
            met = "" if row.met is None else ("ok" if row.met else "MISS")
            if i == 0:
                met = "met"
            lines.append(
                f"{row.section:<{where}} {row.label:<{width}} {row.value:>12}  {row.target:<12} "
                f"{met:<4}  {row.note}".rstrip()
            )
            if i == 0:
                lines.append("-" * len(lines[0]))
        return "\n".join(lines)


@contextmanager
def postgresql(admin_url: str) -> Iterator[str | None]:
    """A temporary database's URL, or ``None`` (said on stderr) when none can be made."""
    database = temporary_database(admin_url)
    try:
        url = database.__enter__()
    except Exception as e:  # Unreachable server: say so, run the rest.
        progress(f"PostgreSQL unreachable at {admin_url} ({e.__class__.__name__}): skipped")
        yield None
        return
    try:
        yield url
    finally:
        database.__exit__(None, None, None)
