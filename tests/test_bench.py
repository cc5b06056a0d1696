"""``make bench`` keeps working: run it small and check the counts it reports.

Timings are printed by the benchmark, never asserted here (shared, noisy machines).
"""

import re
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).parent.parent


def figure(output: str, label: str) -> str:
    match = re.search(rf"^\s+{re.escape(label)}\s+(\S+)", output, re.MULTILINE)
    assert match, f"{label!r} missing from:\n{output}"
    return match.group(1)


def test_bench_reports_every_figure(postgresql_url):
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--rounds", "20", "--tokens", "30"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    out = result.stdout
    assert "Warm authenticated reads, memory backends" in out
    assert "Warm authenticated reads, PostgreSQL backends" in out
    assert figure(out, "GET /v1/jwks") == "1"
    assert figure(out, "POST /v1/verify") == "0"
    for label in ("opaque token unknown to FxA", "malformed JWT", "expired JWT"):
        assert int(figure(out, label)) <= 1
    assert figure(out, "FxA calls per cached request") == "0.00"
    float(figure(out, "throughput ratio kinto-fxa vs basicauth (medians)"))
    assert figure(out, "added latency of a never-seen token").replace(".", "").isdigit()
