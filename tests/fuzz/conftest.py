"""Reports how many inputs the loader fuzz suite tried, per loader, and how long it took."""

from __future__ import annotations

import time

import pytest

from tests.fuzz.fuzzing import COUNTS, LOADED

_ELAPSED: list[float] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    start = time.perf_counter()
    yield
    if "tests/fuzz" in item.nodeid.replace("\\", "/"):
        _ELAPSED.append(time.perf_counter() - start)


def pytest_terminal_summary(terminalreporter):
    if not COUNTS:
        return
    parts = ", ".join(f"{name}: {n}" for name, n in sorted(COUNTS.items()))
    terminalreporter.write_line(
        f"fuzz: {sum(COUNTS.values())} inputs tried in {sum(_ELAPSED):.1f} s ({parts}); "
        f"{sum(LOADED.values())} of them loaded, the rest raised the project's own errors"
    )
    fuzzed = [name for name in sorted(COUNTS) if not name.startswith("safety")]
    terminalreporter.write_line(
        "fuzz: loaded per loader: " + ", ".join(f"{name}: {LOADED[name]}" for name in fuzzed)
    )
