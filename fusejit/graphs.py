"""Host loops replayed from a captured graph.

A host loop launches its body's kernels once per iteration: on a GPU, each launch costs a few
microseconds of CPU time.  When the body is nothing but kernel launches, the loop's first call
captures every launch of every iteration into a CUDA graph (CuPy's stream capture), and each
call replays it with one graph launch.  A graph holds fixed pointers, so the loop runs on
buffers of its own: each call copies its inputs into them, replays, and returns copies of the
results.  The backend's `capture(fn)` returns `replay()`: CUDA graphs on the `cuda` backend;
on the CPU backends, `fn` itself (the same buffers, copies and order of launches, so the
tests exercise everything but CuPy's capture calls).

FUSEJIT_GRAPHS=0 turns replays off; =1 turns them on for the CPU backends too (they gain
nothing there: it is for testing).  Default: on for `cuda` only.
"""
from __future__ import annotations

import threading
import warnings

from . import config, launch

MAX_ITERATION_ELEMENTS = 1 << 20  # larger bodies are bound by memory traffic, not by launches


def enabled(backend) -> bool:
    value = config.env("FUSEJIT_GRAPHS").strip().lower()
    if not value:
        return backend.name == "cuda"
    return value not in ("0", "false", "no", "off")


def capturable(compiled) -> bool:
    """A body whose every step is a kernel launch on buffers it is given (no library call, no
    nested loop, no value read back, no constant output allocated per run), small enough
    that launches, not memory traffic, take its time."""
    program = compiled.program
    return (all(isinstance(s, launch.Launch) for s in program.steps)
            and all(kind in ("slot", "input") for kind, *_ in program.outputs)
            and sum(s.n for s in program.launches) <= MAX_ITERATION_ELEMENTS)


class Replayed:
    """A loop's captured launches, per device and stream (`backend.graph_key()`): the buffers
    they read and write and the replay."""

    def __init__(self):
        self.lock = threading.Lock()
        self.captured: dict = {}
        self.failed = False

    def run(self, backend, arrays, allocate, iterate):
        """`allocate(backend, staged_inputs)` -> (state, results): the loop's buffers;
        `iterate(state)` launches every iteration on them.  Returns fresh copies of the results,
        or None when the capture failed (with a warning): the caller runs the loop itself."""
        with self.lock:
            if self.failed:
                return None
            key = backend.graph_key()
            entry = self.captured.get(key)
            if entry is None:
                staged = [backend.copy(a) for a in arrays]
                state, results = allocate(backend, staged)
                before = launch.counter.copy()
                try:
                    replay = backend.capture(lambda: iterate(state))
                except Exception as e:  # a CUDA stream capture refused: warned, never silent
                    self.failed = True
                    warnings.warn(f"fusejit: capturing a host loop's launches for replay failed ({e!r}); "
                                  "the loop runs launch by launch (FUSEJIT_GRAPHS=0 skips the attempt)",
                                  RuntimeWarning, stacklevel=2)
                    return None
                finally:
                    kernels = launch.counter["kernels"] - before["kernels"]
                    launch.counter.clear()
                    launch.counter.update(before)
                # A CUDA graph holds the addresses of the loop's buffers, not the buffers: the
                # entry keeps `state` (the carries' other buffer, each body's workspace), or
                # the memory pool would hand them to other arrays that replays then overwrite.
                entry = self.captured[key] = (staged, results, replay, kernels, state)
                launch.counter["captures"] += 1
                config.debug(1, f"loop captured for replay: {kernels} kernel launch(es) on {backend.name}")
            else:
                for buffer, a in zip(entry[0], arrays):
                    backend.copyto(buffer, a)
            staged, results, replay, kernels, _ = entry
            replay()
            launch.counter["kernels"] += kernels
            launch.counter["replays"] += 1
            return [backend.copy(r) for r in results]
