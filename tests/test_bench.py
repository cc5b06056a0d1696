"""``make bench`` keeps working: run it small and check that every figure of its table is
printed, and the counts it reports.

Timings are printed by the benchmark, never asserted here (shared, noisy machines).
"""

import re
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).parent.parent
SMOKE = ["--rounds", "20", "--tokens", "30", "--rss-tokens", "400", "--rss-cache-size", "100"]

INPROCESS_MEMORY, INPROCESS_PG = "in-process memory", "in-process PostgreSQL"
HTTP_MEMORY, HTTP_PG = "HTTP memory", "HTTP PostgreSQL"
BAD_TOKENS = (
    "opaque token unknown to FxA",
    "malformed JWT",
    "expired JWT",
    "JWT signed with an unknown key",
)


def figure(output: str, section: str, label: str) -> str:
    """The value of one row of the table."""
    match = re.search(rf"^{re.escape(section)}\s+{re.escape(label)}\s+(\S+)", output, re.MULTILINE)
    assert match, f"{section}: {label!r} missing from:\n{output}"
    return match.group(1)


def number(output: str, section: str, label: str) -> float:
    return float(figure(output, section, label))


def pair(output: str, section: str, label: str) -> tuple[float, float]:
    first, second = figure(output, section, label).split("/")
    return float(first), float(second)


def test_bench_reports_every_figure(postgresql_url):
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), *SMOKE],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    out = result.stdout
    assert "(skipped)" not in out

    # In-process.
    for section in (INPROCESS_MEMORY, INPROCESS_PG):
        number(out, section, "warm fxa/basicauth")
        number(out, section, "warm fxa/basicauth, CPU")
        assert figure(out, section, "FxA calls, warm reads") == "0"
        number(out, section, "never-seen - cached JWT, known user (ms)")
        number(out, section, "never-seen - cached JWT, known user, CPU (ms)")
    assert figure(out, INPROCESS_MEMORY, "FxA GET /v1/jwks per new tokens") == "1/30"
    assert figure(out, INPROCESS_MEMORY, "FxA POST /v1/verify per new tokens") == "0/30"
    for label in BAD_TOKENS:
        assert int(figure(out, INPROCESS_MEMORY, f"FxA calls, {label} x100")) <= 1
    for kind in ("cold", "warm"):
        number(out, INPROCESS_MEMORY, f"10 clients / 1 client, {kind}")
    assert figure(out, INPROCESS_MEMORY, "FxA calls, 10 vs 1 clients warm") == "0"

    # HTTP: kinto start processes.
    for section in (HTTP_MEMORY, HTTP_PG):
        for clients in ("1 client", "4 clients"):
            assert number(out, section, f"warm fxa/basicauth, {clients}") > 0
        assert number(out, section, "warm fxa/basicauth, 1 client, server CPU") > 0
        for clients in ("1 client(s)", "4 client(s)"):
            assert figure(out, section, f"FxA calls, warm reads, {clients}") == "0"
        for kind in ("known user", "new user"):
            number(out, section, f"never-seen - cached JWT, {kind} (ms)")
            number(out, section, f"never-seen - cached JWT, {kind}, server CPU (ms)")
            cold, warm = pair(out, section, f"cold / warm medians, {kind} (ms)")
            assert cold > 0 and warm > 0
    assert figure(out, HTTP_MEMORY, "FxA GET /v1/jwks per new tokens") == "1/30"
    assert figure(out, HTTP_MEMORY, "FxA POST /v1/verify per new tokens") == "0/30"
    for kind in ("cold", "warm"):
        assert number(out, HTTP_MEMORY, f"10 clients / 1 client, {kind}") > 0
        assert number(out, HTTP_MEMORY, f"10 clients / 1 client, {kind}, server CPU") > 0
    assert figure(out, HTTP_MEMORY, "FxA calls, 10 vs 1 clients warm") == "0"
    number(out, HTTP_MEMORY, "RSS growth, distinct tokens (MB)")
    number(out, HTTP_MEMORY, "RSS growth once the cache is full (MB)")
    number(out, HTTP_MEMORY, "RSS growth, second half of the tokens (MB)")
    assert "400 tokens in" in out
