"""Host loops replayed from a captured graph (fusejit/graphs.py).  On the GPU a CUDA graph; on
the host the loop's recorded launches and copies, replayed in one call on the call's own
inputs; on the emulation (FUSEJIT_GRAPHS=1) the captured function run again.  The loop's own
buffers, the copies in and out and the launch counts are tested against jax.jit with fresh
inputs on every call."""
import gc
import weakref

import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import fusejit
from fusejit import graphs, launch, steps
from fusejit.backends.host import HostBackend
from helpers import rand, verify


def counts(f, *args):
    before = launch.counter.copy()
    f(*args)
    return {k: launch.counter[k] - before[k] for k in ("kernels", "library", "captures", "replays")}


def coupled_scan(xs, init, w):
    """A body too large for a block loop (its carry does not fit shared memory) and not
    elementwise (a reduction couples the elements): a host loop of kernels only."""
    def body(c, x):
        new = jnp.tanh(c * w + x["u"]) - jnp.mean(c) * 0.1
        return new, {"last": new[-1], "total": (new.sum(), x["v"] * 2.0)}
    return lax.scan(body, init, xs, reverse=True)


def scan_args(seed):
    rng = np.random.default_rng(seed)
    xs = {"u": rand(rng, (5, 9001), np.float32) * 0.1, "v": rand(rng, (5, 3), np.float32)}
    return xs, rand(rng, (9001,), np.float32), rand(rng, (9001,), np.float32) * 0.1


@pytest.mark.parametrize("backend", ["host", "emulate"])
def test_loop_replays_its_captured_launches_with_fresh_inputs(backend, monkeypatch):
    monkeypatch.setenv("FUSEJIT_GRAPHS", "1")
    f = fusejit.jit(coupled_scan, backend=backend, scan="loop")
    assert "replayed as a graph" in f.lower(*scan_args(0)).as_text()
    plain = fusejit.jit(coupled_scan, backend=backend, scan="loop")
    monkeypatch.setenv("FUSEJIT_GRAPHS", "0")
    expected_kernels = counts(plain, *scan_args(0))["kernels"]
    monkeypatch.setenv("FUSEJIT_GRAPHS", "1")
    seen = []
    for seed in range(3):  # new inputs every call: copied into the loop's buffers, or read in place (host)
        args = scan_args(seed)
        report = fusejit.check(f, *args)
        assert report.ok, report
        seen.append(counts(f, *args))
    assert seen[0]["kernels"] == expected_kernels > 5
    assert sum(c["captures"] for c in seen) == 0  # captured once, by the first check
    assert all(c["replays"] == 1 for c in seen)


def test_results_are_fresh_arrays_not_the_loops_buffers(monkeypatch):
    monkeypatch.setenv("FUSEJIT_GRAPHS", "1")
    f = fusejit.jit(coupled_scan, scan="loop")
    first = f(*scan_args(1))
    kept = np.array(first[0], copy=True)
    f(*scan_args(2))
    np.testing.assert_array_equal(first[0], kept)


def test_bodies_with_library_calls_are_not_captured(monkeypatch):
    monkeypatch.setenv("FUSEJIT_GRAPHS", "1")
    def f(x):
        return lax.scan(lambda c, _: (jnp.sort(c[::-1] * 0.5 + 1.0), None), x, None, length=9)[0]
    compiled = verify(f, rand(np.random.default_rng(3), (5,), np.float32), scan="loop")
    assert "host loop of 9" in compiled.as_text() and "replayed" not in compiled.as_text()
    assert counts(fusejit.jit(f, scan="loop"), rand(np.random.default_rng(4), (5,), np.float32))["replays"] == 0


def test_replays_are_on_by_default_for_cuda_and_the_host(monkeypatch):
    class Named:
        def __init__(self, name, relocates=False):
            self.name, self.relocates = name, relocates
    monkeypatch.delenv("FUSEJIT_GRAPHS", raising=False)
    assert graphs.enabled(Named("cuda")) and graphs.enabled(Named("host", True))
    assert not graphs.enabled(Named("emulate")) and not graphs.enabled(Named("host", False))
    f = fusejit.jit(coupled_scan, scan="loop")
    assert counts(f, *scan_args(5))["replays"] == 1
    monkeypatch.setenv("FUSEJIT_GRAPHS", "0")
    assert not graphs.enabled(Named("cuda"))
    f = fusejit.jit(coupled_scan, scan="loop")
    assert counts(f, *scan_args(5))["replays"] == 0


def test_host_replays_read_each_calls_inputs_in_place_and_record_copies(monkeypatch):
    """The host's replay reads every call's own inputs (consts, xs, the initial carries), not
    those it was captured on, and replays the loop's copies: a carry passed through unchanged,
    a ys that is a const."""
    monkeypatch.delenv("FUSEJIT_GRAPHS", raising=False)

    def passing(w, init, xs):
        def body(c, x):
            kept, moving = c
            new = jnp.tanh(moving * w + x) - jnp.mean(moving) * 0.1
            return (kept, new), (w, new[:3].sum())
        return lax.scan(body, (init * 2.0, init), xs)

    f = fusejit.jit(passing, scan="loop")
    rng = np.random.default_rng(8)
    for seed in range(4):
        args = (rand(rng, (9001,), np.float32), rand(rng, (9001,), np.float32),
                rand(rng, (6, 9001), np.float32) * 0.1)
        report = fusejit.check(f, *args)
        assert report.ok, report
        assert counts(f, *args)["replays"] == 1
    assert "replayed as a graph" in f.lower(*args).as_text()


def test_a_failed_capture_warns_and_runs_the_loop_launch_by_launch(monkeypatch):
    monkeypatch.setenv("FUSEJIT_GRAPHS", "1")
    f = fusejit.jit(coupled_scan, scan="loop")
    backend = f.lower(*scan_args(6)).backend

    def refuse(fn, staged=()):
        raise RuntimeError("operation not permitted when stream is capturing")
    monkeypatch.setattr(backend, "capture", refuse)
    with pytest.warns(RuntimeWarning, match="capturing a host loop's launches for replay failed"):
        report = fusejit.check(f, *scan_args(6))
    assert report.ok, report
    assert counts(f, *scan_args(7))["replays"] == 0


def test_the_loops_buffers_live_as_long_as_its_captured_graph(monkeypatch):
    """A CUDA graph holds the addresses of the loop's buffers, not the buffers: the carries'
    other buffer and each body's workspace must live as long as the capture, or the memory
    pool hands them to other arrays that each replay overwrites.  Here a capture that keeps
    nothing of the function it captured, as CUDA's keeps nothing of the Python that launched,
    and weak references to every buffer the loop allocated."""
    monkeypatch.setenv("FUSEJIT_GRAPHS", "1")
    allocated = []
    allocate = steps.HostScan.allocate

    def watched(self, backend, arrays):
        state, results = allocate(self, backend, arrays)
        _, buffers, ys, workspaces = state
        arrays_ = [*(b for pair in buffers for b in pair), *ys, *(a for w in workspaces.values() for a in w.values())]
        allocated.extend(weakref.ref(a) for a in arrays_)
        return state, results

    def capture(self, fn, staged=()):
        fn()  # CUDA records these launches; here they run, once
        return lambda *arrays: None

    monkeypatch.setattr(steps.HostScan, "allocate", watched)
    monkeypatch.setattr(HostBackend, "capture", capture)
    f = fusejit.jit(coupled_scan, scan="loop")
    f(*scan_args(0))
    gc.collect()
    assert len(allocated) > 3 and all(r() is not None for r in allocated)
