"""Host loops replayed from a captured graph.

A host loop launches its body's kernels once per iteration, each launch a few microseconds of
CPU time (a kernel call from Python on the host, a CUDA launch on a GPU).  When the body is
nothing but kernel launches, the loop's first call captures every launch of every iteration,
and each call replays them at once.  The backend's `capture(fn, staged)` returns the replay:

* cuda: a CUDA graph (CuPy's stream capture).  A graph holds fixed pointers, so the loop runs
  on buffers of its own: each call copies its inputs into them, replays, and returns copies
  of the results.
* host: the launches and copies recorded, not run (kernels/host_call.c), and replayed in one
  call with the GIL released once.  Each recorded address inside the buffers the loop was
  captured on (`staged`) is moved into the call's own inputs, so nothing is copied in: a
  scan over 63 rows of 16,000 floats, two kernels an iteration, went from about 520 us to
  410 (jax.jit about 300-430 in those runs, on a loaded machine).
* emulate: `fn` itself, on the loop's buffers (the same copies and order of launches, so the
  tests exercise the capture's bookkeeping).

Either way the entry keeps every buffer the graph names (the carries, the ys, each body's
workspace) for as long as the graph.  FUSEJIT_GRAPHS=0 turns replays off; =1 turns them on
for the emulation too.  Default: on for `cuda` and `host`.
"""
from __future__ import annotations

import threading
import warnings

import numpy as np

from . import config, launch

MAX_ITERATION_ELEMENTS = 1 << 20  # larger bodies are bound by memory traffic, not by launches


def enabled(backend) -> bool:
    value = config.env("FUSEJIT_GRAPHS").strip().lower()
    if not value:
        return backend.name == "cuda" or (backend.name == "host" and getattr(backend, "relocates", False))
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
                    replay = backend.capture(lambda: iterate(state), staged)
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
            elif not backend.relocates:
                for buffer, a in zip(entry[0], arrays):
                    backend.copyto(buffer, a)
            staged, results, replay, kernels, _ = entry
            if backend.relocates:
                replay([a if type(a) is np.ndarray else np.ascontiguousarray(a) for a in arrays])
            else:
                replay()
            launch.counter["kernels"] += kernels
            launch.counter["replays"] += 1
            return [backend.copy(r) for r in results]
