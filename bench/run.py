"""Running one workload: inputs, correctness against jax.jit, kernel counts, timings.

Each workload runs inside `x64(workload.x64)`, which sets jax_enable_x64 for the
workload and restores the previous value afterwards (the flag is global, and fusejit's
cache key includes it).
"""
from __future__ import annotations

import contextlib
import dataclasses

import jax
import numpy as np

import fusejit

from . import gpu_code, hlo, latency
from .timing import Settings, Timing, measure_all
from .workloads import Workload

IMPLS = ("fusejit", "jax", "eager")


@dataclasses.dataclass(frozen=True)
class Config:
    scale: float = 1.0
    input_sets: int = 3
    seed: int = 0
    timing: Settings = Settings()
    latency: bool = True
    cold_samples: int = 3  # children per cold first-call figure (their median)


@contextlib.contextmanager
def x64(enabled: bool):
    """jax_enable_x64 set to `enabled` inside the block, restored after."""
    previous = bool(jax.config.jax_enable_x64)
    jax.config.update("jax_enable_x64", enabled)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", previous)


@dataclasses.dataclass
class Inputs:
    host: list      # tuples of NumPy arrays
    device: list    # the same on the benchmark device (NumPy or CuPy): fusejit and eager
    jax: list       # the same as jax arrays on jax's default device


def make_inputs(w: Workload, dev, cfg: Config) -> Inputs:
    """`cfg.input_sets` independent random input sets (seeds seed, seed+1, ...)."""
    n = w.size_at(cfg.scale)
    host = [tuple(w.build(np.random.default_rng(cfg.seed + k), n)) for k in range(cfg.input_sets)]
    device = [tuple(dev.to_device(a) for a in s) for s in host]
    jax_sets = [tuple(jax.device_put(a) for a in s) for s in host]
    jax.block_until_ready(jax_sets)
    dev.sync()
    return Inputs(host, device, jax_sets)


def implementations(w: Workload, dev) -> dict:
    """impl name -> (callable, sync, which input list it takes)."""
    fj = fusejit.jit(w.fn, backend=dev.backend)

    def eager(*args):
        return w.eager(dev.xp, *args)

    return {
        "fusejit": (fj, dev.sync, "device"),
        "jax": (jax.jit(w.fn), jax.block_until_ready, "jax"),
        "eager": (eager, dev.sync, "device"),
    }


def check_outputs(fj, w: Workload, dev, inputs: Inputs) -> dict:
    """fusejit.check on every input set, merged: per output the worst max ULP / abs / rel."""
    from fusejit.check import compare
    merged: dict = {}
    for args, host_args in zip(inputs.device, inputs.host):
        try:
            report = fusejit.check(fj, *args, **w.tolerance)
        except Exception:  # e.g. CuPy inputs with a CPU-only jax: compare through the host
            if dev.kind == "cpu":
                raise
            report = compare(jax.jit(w.fn)(*host_args), fj(*args), **w.tolerance)
        for o in report.outputs:
            row = merged.setdefault(o.path, {"path": o.path, "shape": list(o.shape), "dtype": o.dtype,
                                             "max_abs": 0.0, "max_rel": 0.0, "max_ulp": 0.0,
                                             "ok": True, "problem": ""})
            row["max_abs"] = max(row["max_abs"], o.max_abs)
            row["max_rel"] = max(row["max_rel"], o.max_rel)
            row["max_ulp"] = max(row["max_ulp"], o.max_ulp)
            if not o.ok:
                row["ok"] = False
                row["problem"] = row["problem"] or o.problem
    return merged


def eager_agrees(w: Workload, dev, inputs: Inputs) -> dict:
    """The eager baseline against jax.jit on the first input set: catches a wrong baseline."""
    from fusejit.check import compare
    want = jax.jit(w.fn)(*inputs.jax[0])
    got = w.eager(dev.xp, *inputs.device[0])
    report = compare(want, jax.tree_util.tree_map(dev.to_host, got))
    return {"ok": report.ok, "max_ulp": max((o.max_ulp for o in report.outputs), default=0.0)}


def short_type(a) -> str:
    """HLO-style type of an array: f32[1000,1000]."""
    kind = {"f": "f", "i": "s", "u": "u", "b": "pred", "c": "c"}[a.dtype.kind]
    name = kind if kind == "pred" else f"{kind}{a.dtype.itemsize * 8}"
    return f"{name}[{','.join(map(str, a.shape))}]"


def nbytes(tree) -> int:
    return int(sum(x.nbytes for x in jax.tree_util.tree_leaves(tree)))


def time_impls(impls: dict, inputs: Inputs, settings: Settings, step=None) -> dict:
    """impl name -> Timing, the implementations interleaved (see timing.measure_all)."""
    runs = {name: (call, getattr(inputs, which), sync) for name, (call, sync, which) in impls.items()}
    return measure_all(runs, settings, step)


def run_workload(w: Workload, dev, cfg: Config, bandwidth: float, step=None) -> dict:
    """Everything the report shows for one workload, as a JSON-ready dict."""
    step = step or (lambda _msg: None)
    record = {"name": w.name, "stresses": w.stresses, "x64": w.x64, "correct": False}
    try:
        with x64(w.x64):
            _run(w, dev, cfg, bandwidth, step, record)
    except Exception as e:  # one broken workload must not hide the others
        record["error"] = f"{type(e).__name__}: {e}".strip()[:500]
        record["correct"] = False
    if cfg.latency and "error" not in record:
        step("first-call latency (child processes)")
        record["latency"] = latency.first_calls(w.name, dev.backend, cfg.scale, cold_samples=cfg.cold_samples)
    return record


def _run(w, dev, cfg, bandwidth, step, record):
    step("inputs")
    inputs = make_inputs(w, dev, cfg)
    record["inputs"] = [short_type(a) for a in inputs.host[0]]
    impls = implementations(w, dev)
    fj = impls["fusejit"][0]

    # The kernels, compiled before anything is checked, counted or timed: on the host a first
    # call otherwise runs in the interpreter while they compile (the latency children measure
    # first calls, each in a fresh process).
    step("compile")
    compiled = fj.lower(*inputs.device[0])
    step("GPU code (NVRTC)")
    record["gpu_code"] = gpu_code.inspect(compiled)

    step("check vs jax.jit")
    outputs = check_outputs(fj, w, dev, inputs)
    record["outputs"] = list(outputs.values())
    record["correct"] = bool(outputs) and all(o["ok"] for o in outputs.values())
    record["max_ulp"] = max((o["max_ulp"] for o in outputs.values()), default=0.0)
    record["max_abs"] = max((o["max_abs"] for o in outputs.values()), default=0.0)
    record["eager_vs_jax"] = eager_agrees(w, dev, inputs)

    step("kernel counts")
    before = dict(fusejit.launch.counter)
    out = fj(*inputs.device[0])
    dev.sync()
    record["kernels_fusejit"] = fusejit.launch.counter["kernels"] - before.get("kernels", 0)
    record["library_fusejit"] = fusejit.launch.counter["library"] - before.get("library", 0)
    hlo_text = jax.jit(w.fn).lower(*inputs.jax[0]).compile().as_text()
    record["xla"] = hlo.count_kernels(hlo_text).as_dict()
    record["bytes"] = nbytes(inputs.device[0]) + nbytes(out)
    del out

    timings = time_impls(impls, inputs, cfg.timing, step)
    record["time_s"] = {k: t.median for k, t in timings.items()}
    record["timing"] = {k: t.as_dict() for k, t in timings.items()}
    fj_t = timings["fusejit"].median
    record["speedup_vs_jax"] = timings["jax"].median / fj_t
    record["speedup_vs_eager"] = timings["eager"].median / fj_t
    record["bandwidth_fraction"] = {k: record["bytes"] / t.median / bandwidth for k, t in timings.items()}


def dispatch_overhead(dev, cfg: Config) -> dict:
    """Steady-state time per call of sin(x) + cos(x) on 9 float32: the per-call overhead."""
    from .workloads import Workload, sin_cos, sin_cos_eager, uniform
    w = Workload(name="dispatch", fn=sin_cos, eager=sin_cos_eager, size=9, scalable=False,
                 build=lambda rng, n: (uniform(rng, (n,), np.float32),), stresses="dispatch")
    with x64(False):
        small = dataclasses.replace(cfg, scale=1.0)
        inputs = make_inputs(w, dev, small)
        timings: dict[str, Timing] = time_impls(implementations(w, dev), inputs, cfg.timing)
    return {k: t.as_dict() for k, t in timings.items()}
