"""Steady-state timing of one implementation.

Rules (see README): warm-up calls outside the timed region; each timed call is
`call(*args)` followed by the implementation's synchronisation, measured with
time.perf_counter; the input sets are rotated call by call so no input stays hot in a
cache; calls repeat until `min_time` seconds have been timed or `max_reps` calls were
made, but never fewer than `min_reps`; the garbage collector is off while timing; the
summary is the median.
"""
from __future__ import annotations

import dataclasses
import gc
import time

import numpy as np


@dataclasses.dataclass(frozen=True)
class Settings:
    min_time: float = 0.5     # seconds of timed calls to aim for
    min_reps: int = 5
    max_reps: int = 10_000
    warmup: int = 2           # untimed passes over all input sets


@dataclasses.dataclass(frozen=True)
class Timing:
    median: float             # seconds per call
    q1: float
    q3: float
    minimum: float
    reps: int

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def measure(call, input_sets, sync, settings: Settings) -> Timing:
    """Time `call` (one positional-argument tuple per input set); `sync(out)` waits for out."""
    for _ in range(settings.warmup):
        for args in input_sets:
            out = call(*args)
            sync(out)
            del out
    times = []
    total = 0.0
    k = 0
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        while len(times) < settings.min_reps or (total < settings.min_time
                                                   and len(times) < settings.max_reps):
            args = input_sets[k % len(input_sets)]
            k += 1
            t0 = time.perf_counter()
            out = call(*args)
            sync(out)
            elapsed = time.perf_counter() - t0
            del out  # freeing the output stays outside the timed region
            times.append(elapsed)
            total += elapsed
    finally:
        if gc_was_enabled:
            gc.enable()
    q1, med, q3 = np.percentile(times, [25, 50, 75])
    return Timing(float(med), float(q1), float(q3), float(min(times)), len(times))
