"""Best-of-R wall-clock timing shared by the benchmark scripts."""

from __future__ import annotations

import time


def timed(fn, repeat: int):
    """Run ``fn`` ``repeat`` times; return (best wall time in s, result of the last call)."""
    best, result = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result
