"""Where a host launch of several blocks runs (kernels/host_call.c): on the calling thread when
the OpenMP workers sleep and waking them would cost more than they save, on the workers
otherwise; the results are the same either way."""
import time

import numpy as np

import fusejit
from fusejit.backends.host import PreparedLaunch, host_extension, usable_cores
from helpers import bitwise_equal, rand


def test_a_cheap_launch_runs_on_the_calling_thread_when_the_workers_sleep():
    extension = host_extension()
    assert extension is not None, "the launch extension did not build"
    assert usable_cores() >= 2, "one core: every launch has one block"
    f = fusejit.jit(lambda a: a * 2.0 + 1.0, backend="host")
    x = rand(np.random.default_rng(1), (300, 301), np.float32)  # more elements than one block takes
    launch = next(b for b in f.lower(x).bound if isinstance(b, PreparedLaunch))
    assert launch.grid.value > 1
    want = f.reference(x)

    def run(cost, last_end=0):
        """One call with the launch's cost and last end set (after the workers fell asleep):
        (runs on the workers, runs on the calling thread)."""
        time.sleep(0.002)
        launch.state[0], launch.state[1] = cost, last_end
        before = extension.launch_stats()
        out = f(x)
        after = extension.launch_stats()
        assert bitwise_equal(np.asarray(out), np.asarray(want))  # (2x + 1 rounds once: XLA's too)
        return after[0] - before[0], after[1] - before[1]

    wake = extension.launch_stats()[2]
    assert wake > 0
    assert run(0) == (0, 1)                       # cheap, workers asleep: the calling thread
    assert launch.state[0] > 0                    # which measured its cost
    assert run(10 * wake) == (1, 0)               # costly: worth waking the workers
    assert run(0, time.monotonic_ns() + 10**9) == (1, 0)  # recurs back to back: keeps them awake
