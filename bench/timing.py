"""Steady-state timing of several implementations of one workload.

Rules (see README): warm-up calls outside the timed region; each timed call is
`call(*args)` followed by the implementation's synchronisation, measured with
time.perf_counter; the input sets are rotated call by call so no input stays hot in a
cache; per implementation, calls repeat until `min_time` seconds have been timed or
`max_reps` calls were made, but never fewer than `min_reps`; the garbage collector is off
while timing; the summary is the median.

The implementations are interleaved: the timed calls are split into `rounds` rounds and
each round times every implementation in turn, so a burst of load from other processes
hits all of them alike instead of whichever happened to be running.
"""
from __future__ import annotations

import dataclasses
import gc
import math
import time

import numpy as np


@dataclasses.dataclass(frozen=True)
class Settings:
    min_time: float = 0.5     # seconds of timed calls to aim for, per implementation
    min_reps: int = 5
    max_reps: int = 10_000
    warmup: int = 2           # untimed passes over all input sets
    rounds: int = 5           # interleaving rounds


@dataclasses.dataclass(frozen=True)
class Timing:
    median: float             # seconds per call
    q1: float
    q3: float
    minimum: float
    reps: int

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def of(cls, times) -> "Timing":
        q1, med, q3 = np.percentile(times, [25, 50, 75])
        return cls(float(med), float(q1), float(q3), float(min(times)), len(times))


def warm_up(call, input_sets, sync, passes: int) -> None:
    for _ in range(passes):
        for args in input_sets:
            out = call(*args)
            sync(out)
            del out


def timed_calls(call, input_sets, sync, budget: float, min_calls: int, max_calls: int,
                first: int = 0) -> list:
    """Per-call seconds of at least `min_calls` calls, more until `budget` s or `max_calls`;
    input set `first + k` (cyclically) for the k-th call."""
    times = []
    total = 0.0
    k = first
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        while len(times) < min_calls or (total < budget and len(times) < max_calls):
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
    return times


def measure_all(impls: dict, settings: Settings, step=None) -> dict:
    """impls: name -> (call, input_sets, sync). Returns name -> Timing.

    `step(message)` is called before each implementation's warm-up."""
    for name, (call, input_sets, sync) in impls.items():
        if step:
            step(f"time {name}")
        warm_up(call, input_sets, sync, settings.warmup)
    rounds = max(1, settings.rounds)
    min_calls = math.ceil(settings.min_reps / rounds)
    max_calls = max(1, settings.max_reps // rounds)
    times: dict = {name: [] for name in impls}
    for _ in range(rounds):
        for name, (call, input_sets, sync) in impls.items():
            times[name] += timed_calls(call, input_sets, sync, settings.min_time / rounds,
                                       min_calls, max_calls, first=len(times[name]))
    return {name: Timing.of(t) for name, t in times.items()}
