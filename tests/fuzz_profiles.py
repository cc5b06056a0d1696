"""Hypothesis profiles of the fuzz tests (``tests/test_fuzz.py``, ``tests/test_chaos.py``).

- ``fuzz-ci`` (the default): a few hundred examples per target, the whole fuzz module in
  about a minute, so ``make test`` runs it on every change;
- ``fuzz`` (``make fuzz``, ``HYPOTHESIS_PROFILE=fuzz``): at least 10,000 examples per target.

Both are deterministic (``derandomize``, no example database): a failure found once is
found again by the same run. Deadlines are off: the properties are about answers, never
about timing. The profiles are applied per test (:func:`fuzz_settings`), never loaded
globally, so no other test of the suite changes.
"""

import os

from hypothesis import HealthCheck, settings


CI, LONG = "fuzz-ci", "fuzz"
#: ``make fuzz`` runs at least this many examples per target.
LONG_EXAMPLES = 10_000

_COMMON = {
    "derandomize": True,
    "database": None,
    "deadline": None,
    "print_blob": False,
    "suppress_health_check": [
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.large_base_example,
    ],
}
settings.register_profile(CI, max_examples=200, **_COMMON)  # type: ignore[arg-type]
settings.register_profile(LONG, max_examples=LONG_EXAMPLES, **_COMMON)  # type: ignore[arg-type]


def profile_name() -> str:
    name = os.environ.get("HYPOTHESIS_PROFILE", CI)
    return name if name in (CI, LONG) else CI


def fuzz_settings(ci_examples: int) -> settings:
    """The settings of one fuzz target: ``ci_examples`` examples in the CI profile, the
    long profile's count (10,000) in ``make fuzz``."""
    name = profile_name()
    parent = settings.get_profile(name)
    examples = ci_examples if name == CI else max(parent.max_examples, LONG_EXAMPLES)
    return settings(parent, max_examples=examples)
