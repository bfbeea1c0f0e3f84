"""First-call latency, measured in fresh processes, fusejit beside jax.jit.

Every figure comes from its own child process, `python -m bench.latency ...`, which
imports the libraries, builds the inputs, initialises jax's backend (jax.devices()) and,
for fusejit, fusejit's (fusejit.init(): its launch extension and worker threads) and then
times exactly one first call, synchronised, printing one JSON line. Five phases per
workload (all but jax default the median of three children each, one with --quick):

  fusejit cold  FUSEJIT_CACHE_DIR is a fresh empty directory; the process first compiles
                an unrelated warm-up function, then calls jax.clear_caches(), so the
                figure is the trace + compile + run of a new function in a process where
                fusejit is already in use (on the host, a first call the interpreter
                takes while the kernels compile: "interpreted" in the JSON line).
  fusejit warm  a new process on the directory the cold child filled: the first call of a
                fresh process with a warm on-disk kernel cache (no warm-up function).  The
                child also reports what writing fresh pages costs its calls (fresh_pages_s:
                a call on new buffers less one on reused ones; host backend).
  jax cold      same as fusejit cold (warm-up function, jax.clear_caches(), then a fresh
                function object); jax's persistent compilation cache is switched on in a
                fresh empty directory, so the child fills it, as the fusejit cold child
                fills its disk cache.
  jax warm      a new process on that directory: jax's first call with a warm persistent
                cache (which jax has off by default).
  jax default   a new process with jax's defaults (persistent cache off): what a plain
                jax program pays on every start.

Running the children in fresh processes keeps in-memory caches (fusejit's loaded
modules, jax's tracing and executable caches) from turning a "cold" call warm.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
PHASES = ("fusejit_cold", "fusejit_warm", "jax_cold", "jax_warm", "jax_default")


def _warmup_fn(x):
    """Unrelated to every workload: puts the library to use before the timed first call."""
    return x * 3.0 - 1.0


# ---- parent side -----------------------------------------------------------------------------

def _child(workload: str, impl: str, mode: str, backend: str, scale: float, env: dict,
           jax_cache: str | None, timeout: float) -> dict:
    cmd = [sys.executable, "-m", "bench.latency", "--workload", workload, "--impl", impl,
           "--mode", mode, "--backend", backend, "--scale", repr(scale)]
    if jax_cache:
        cmd += ["--jax-cache", jax_cache]
    full_env = {**os.environ, **env}
    full_env.pop("FUSEJIT_CHECK", None)  # a checked call would time jax.jit as well
    try:
        proc = subprocess.run(cmd, cwd=REPO_ROOT, env=full_env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": f"exit {proc.returncode}: {' | '.join(tail)}"}
    return json.loads(lines[-1])


def _median_of(samples: list[dict]) -> dict:
    """The sample with the median first call (its other fields with it), all times listed;
    the first failed sample instead, if any failed."""
    failed = [r for r in samples if "error" in r]
    if failed:
        return failed[0]
    ordered = sorted(samples, key=lambda r: r["first_call_s"])
    return {**ordered[len(ordered) // 2], "samples_s": [r["first_call_s"] for r in samples]}


def first_calls(workload: str, backend: str, scale: float, timeout: float = 300.0, cold_samples: int = 3) -> dict:
    """Phase name -> the child's result ({'first_call_s': ..., ...} or {'error': ...}).  The two
    cold phases take the median of `cold_samples` children each (alternating fusejit and
    jax.jit, each child with fresh empty caches), so one noisy process does not decide the
    ratio; so do the two warm phases, every child on the caches the last cold children
    filled.  jax's default (no persistent cache) runs once."""
    results = {}
    cold = {"fusejit_cold": [], "jax_cold": []}
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as root:
        for k in range(max(1, cold_samples)):
            fj_dir = os.path.join(root, f"fusejit-{k}")
            jax_dir = os.path.join(root, f"jax-{k}")
            os.makedirs(fj_dir)
            os.makedirs(jax_dir)
            fj_env = {"FUSEJIT_CACHE_DIR": fj_dir}
            cold["fusejit_cold"].append(_child(workload, "fusejit", "cold", backend, scale, fj_env, None, timeout))
            cold["jax_cold"].append(_child(workload, "jax", "cold", backend, scale, fj_env, jax_dir, timeout))
        results["fusejit_cold"] = _median_of(cold["fusejit_cold"])
        results["jax_cold"] = _median_of(cold["jax_cold"])
        warm = {"fusejit_warm": [], "jax_warm": []}
        for _ in range(max(1, cold_samples)):
            warm["fusejit_warm"].append(_child(workload, "fusejit", "warm", backend, scale, fj_env, None, timeout))
            warm["jax_warm"].append(_child(workload, "jax", "warm", backend, scale, fj_env, jax_dir, timeout))
        results.update((phase, _median_of(samples)) for phase, samples in warm.items())
        results["jax_default"] = _child(workload, "jax", "warm", backend, scale, fj_env, None, timeout)
    return results


# ---- child side ------------------------------------------------------------------------------

def fresh_pages_s(f, call_args, sync) -> float:
    """What a call of f in this process pays to write fresh pages: a call whose large buffers
    are new mappings (the host pool emptied, as in the first call) less a call that reuses
    them.  The first write to each new page faults; on the development machine, a virtual
    machine, 128 MB of output took about 30 ms that way, more than a steady call's work."""
    from fusejit.backends.pool import pool
    pool.clear()  # the buffers go back to the system: the next call maps new ones
    t0 = time.perf_counter()
    sync(f(*call_args))
    fresh = time.perf_counter() - t0
    steady = []
    for _ in range(2):
        t0 = time.perf_counter()
        sync(f(*call_args))
        steady.append(time.perf_counter() - t0)
    return max(0.0, fresh - min(steady))


def _enable_jax_cache(jax, directory: str) -> None:
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def child_main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.latency",
                                     description="Time one first call in this fresh process.")
    parser.add_argument("--workload", required=True)
    parser.add_argument("--impl", choices=("fusejit", "jax"), required=True)
    parser.add_argument("--mode", choices=("cold", "warm"), required=True,
                        help="cold: compile an unrelated warm-up function first")
    parser.add_argument("--backend", choices=("host", "cuda"), default=None)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jax-cache", default=None, help="turn on jax's persistent cache here")
    args = parser.parse_args(argv)

    import jax
    import numpy as np
    import fusejit
    from . import device as device_mod
    from .workloads import REGISTRY

    w = REGISTRY[args.workload]
    jax.config.update("jax_enable_x64", w.x64)
    if args.jax_cache:
        _enable_jax_cache(jax, args.jax_cache)
    dev = device_mod.make(args.backend)
    jax.devices()
    if args.impl == "fusejit":
        fusejit.init(dev.backend)
    host_args = w.build(np.random.default_rng(args.seed), w.size_at(args.scale))
    if args.impl == "fusejit":
        def make(fn):
            return fusejit.jit(fn, backend=dev.backend)
        call_args = tuple(dev.to_device(a) for a in host_args)
        sync = dev.sync
    else:
        make = jax.jit
        call_args = tuple(jax.device_put(a) for a in host_args)
        jax.block_until_ready(call_args)
        sync = jax.block_until_ready
    if args.mode == "cold":
        warm = np.random.default_rng(1).random(3).astype(np.float32) + 0.5
        warm_args = (dev.to_device(warm),) if args.impl == "fusejit" else (jax.device_put(warm),)
        warm_fn = make(_warmup_fn)
        sync(warm_fn(*warm_args))
        if args.impl == "fusejit":
            warm_fn.lower(*warm_args)  # its kernels, if they compile in the background, are done
        jax.clear_caches()  # nothing of the warm-up's tracing may help the timed call
    dev.sync()
    stats_before = dict(fusejit.cache.stats)
    interpreted_before = fusejit.launch.counter["interpreted"]
    f = make(w.fn)
    t0 = time.perf_counter()
    out = f(*call_args)
    sync(out)
    dev.sync()
    elapsed = time.perf_counter() - t0
    stats = {k: v - stats_before.get(k, 0) for k, v in fusejit.cache.stats.items()}
    interpreted = fusejit.launch.counter["interpreted"] - interpreted_before
    del out  # its buffers go back to the pool
    fresh = fresh_pages_s(f, call_args, sync) if args.impl == "fusejit" and dev.backend == "host" else None
    print(json.dumps({"first_call_s": elapsed, "fusejit_cache": stats, "interpreted": interpreted, "impl": args.impl,
                      "mode": args.mode, "workload": w.name, "fresh_pages_s": fresh}))
    return 0


if __name__ == "__main__":
    sys.exit(child_main())
