"""The performance targets, checked against one run's results.

`evaluate(results)` turns the results dict built by bench.cli (workload records from
bench.run, `dispatch`, per-workload `latency` from bench.latency, `device`) into a list
of JSON-ready entries: name, figure (text), value, op, threshold, holds (True/False, or
None where the run cannot tell), note and, where a target is per workload, per_workload.
`holds` is `value op threshold`. Targets never change the exit status.
"""
from __future__ import annotations

import math
import operator

OPS = {">": operator.gt, ">=": operator.ge, "<=": operator.le}
WARM_FACTOR, WARM_SLACK_S = 1.2, 0.020  # target 5: first call in a new process, warm disk cache


def _timed(results):
    return [r for r in results["workloads"] if "error" not in r]


def _first_call(r, phase):
    return ((r.get("latency") or {}).get(phase) or {}).get("first_call_s")


def _not_default_size(results):
    return "not at default size" if results["settings"].get("scale", 1.0) != 1.0 else ""


def _entry(value, figure, per=None, note=""):
    return {"value": value, "figure": figure, "per_workload": per, "note": note}


def _ms(s):
    return f"{1e3 * s:.3g} ms"


def faster_everywhere(results, threshold):
    timed = _timed(results)
    slower = [r["name"] for r in timed if not r["speedup_vs_jax"] > threshold]
    slower += [f"{r['name']} (error)" for r in results["workloads"] if "error" in r]
    total = len(results["workloads"])
    figure = f"{total - len(slower)}/{total} faster"
    if slower:
        figure += f"; not faster: {', '.join(slower)}"
    per = {r["name"]: r["speedup_vs_jax"] for r in timed}
    entry = _entry(min(per.values(), default=None), figure, per, _not_default_size(results))
    if len(timed) < total:
        entry["holds"] = False  # a workload that failed is not faster
    return entry


def geomean_speedup(results, threshold):
    speedups = [r["speedup_vs_jax"] for r in _timed(results)]
    if not speedups:
        return _entry(None, "-", None, "no workload ran")
    g = math.exp(sum(math.log(s) for s in speedups) / len(speedups))
    return _entry(g, f"{g:.2f}× over {len(speedups)} workload(s)", note=_not_default_size(results))


def dispatch(results, threshold):
    d = results.get("dispatch") or {}
    if "fusejit" not in d or "jax" not in d:
        return _entry(None, "-", None, "dispatch not measured")
    fj, jx = d["fusejit"]["median"], d["jax"]["median"]
    figure = f"fusejit {fj * 1e6:.3g} µs vs jax.jit {jx * 1e6:.3g} µs ({fj / jx:.2f}×)"
    return _entry(fj / jx, figure)


def _per_latency(results, threshold, ratio, show):
    """The worst `ratio(r)` over the workloads with latency figures, each shown in the figure."""
    per, shown, failed = {}, [], []
    for r in _timed(results):
        if not r.get("latency"):
            continue
        x = ratio(r)
        if x is None:
            failed.append(r["name"])
            continue
        per[r["name"]] = x
        shown.append(f"{r['name']} {show(r, x)}")
    note = f"latency child failed: {', '.join(failed)}" if failed else ""
    if not per:
        return _entry(None, "-", None, note or "no latency figures (latency children skipped)")
    within = sum(x <= threshold for x in per.values())
    return _entry(max(per.values()), f"{within}/{len(per)} within: " + "; ".join(shown), per, note)


def cold_first_call(results, threshold):
    def ratio(r):
        fj, jx = _first_call(r, "fusejit_cold"), _first_call(r, "jax_cold")
        return fj / jx if fj is not None and jx else None
    return _per_latency(results, threshold, ratio, lambda r, x: f"{x:.2f}×")


def _fresh_pages(r):
    return ((r.get("latency") or {}).get("fusejit_warm") or {}).get("fresh_pages_s") or 0.0


def warm_first_call(results, threshold):
    """Each workload's first call against its limit; where writing fresh pages cost the call
    a millisecond or more (bench.latency.fresh_pages_s), that cost is shown, and the note
    counts the workloads within once it is set aside: the first write to a new page faults,
    which no cache can spare a new process (a steady call reuses its buffers)."""
    def limit(r):
        return WARM_FACTOR * r["time_s"]["fusejit"] + WARM_SLACK_S

    def ratio(r):
        warm = _first_call(r, "fusejit_warm")
        return warm / limit(r) if warm is not None else None

    def show(r, x):
        fresh = _fresh_pages(r)
        pages = f" (fresh pages {_ms(fresh)})" if fresh >= 1e-3 else ""
        return f"{_ms(_first_call(r, 'fusejit_warm'))}/{_ms(limit(r))}{pages}"

    entry = _per_latency(results, threshold, ratio, show)
    missed = [r for r in _timed(results) if r["name"] in (entry["per_workload"] or {})
              and entry["per_workload"][r["name"]] > threshold]
    if any(_fresh_pages(r) >= 1e-3 for r in missed):
        spared = sum((_first_call(r, "fusejit_warm") - _fresh_pages(r)) / limit(r) <= threshold for r in missed)
        note = (f"{len(entry['per_workload']) - len(missed) + spared}/{len(entry['per_workload'])} within once each "
                f"call's cost of writing fresh pages (measured in the same process) is set aside")
        entry["note"] = "; ".join(filter(None, [entry["note"], note]))
    return entry


def copy_bandwidth(results, threshold):
    if results["device"]["kind"] != "gpu":
        return _entry(None, "-", None, "GPU target; CPU run")
    per = {r["name"]: r["bandwidth_fraction"]["fusejit"] for r in _timed(results)}
    figure = "; ".join(f"{name} {100 * f:.0f}%" for name, f in per.items())
    note = "; ".join(filter(None, ["no threshold set: reported only", _not_default_size(results)]))
    return _entry(min(per.values(), default=None), figure or "-", per or None, note)


def gpu_kernels(results, threshold):
    """Target 4 from each workload's PTX and ptxas report (bench/gpu_code.py): it holds when
    no kernel spills and every kernel declares its launch bounds; the figure also counts the
    kernels that move vectors (the others read at shifted or gathered indices, or reduce
    columns: tests/test_gpu_code.py says which kinds do)."""
    codes = {r["name"]: r["gpu_code"] for r in _timed(results) if "gpu_code" in r}
    missing = [c["error"] for c in codes.values() if "error" in c]
    if not codes or missing:
        return _entry(None, "-", None, missing[0] if missing else "no workload compiled")
    total = sum(c["kernels"] for c in codes.values())
    vectors = sum(c["vector_kernels"] for c in codes.values())
    bounded = sum(c["bounded"] for c in codes.values())
    spilled = sum(c["spill_bytes"] for c in codes.values())
    with_vectors = sum(bool(c["vector_kernels"]) for c in codes.values())
    figure = (f"{vectors}/{total} kernels move vectors ({with_vectors}/{len(codes)} workloads); "
              f"launch bounds {bounded}/{total}; {spilled} bytes spilled")
    entry = _entry(None, figure, {n: c["vector_kernels"] / max(c["kernels"], 1) for n, c in codes.items()},
                   "NVRTC sm_90, no GPU needed")
    entry["holds"] = spilled == 0 and bounded == total
    return entry


def not_checked_here(note):
    return lambda results, threshold: _entry(None, "-", None, note)


# name, op, threshold, rule ((results, threshold) -> {value, figure, per_workload, note[, holds]})
TARGETS = (
    ("faster than jax.jit on every workload", ">", 1.0, faster_everywhere),
    ("geometric mean speedup vs jax.jit ≥ 1.5×", ">=", 1.5, geomean_speedup),
    ("dispatch overhead ≤ jax.jit's", "<=", 1.0, dispatch),  # value: fusejit / jax.jit
    ("cold first call ≤ 2× jax.jit's cold first call", "<=", 2.0, cold_first_call),
    ("first call in a new process with a warm disk cache ≤ 1.2 × steady-state call + 20 ms",
     "<=", 1.0, warm_first_call),  # value: the worst fusejit warm / (1.2 × steady + 20 ms)
    ("fraction of copy bandwidth", ">=", None, copy_bandwidth),
    ("GPU kernels: vector loads, no spills, launch bounds", None, None, gpu_kernels),
    ("host loops replay a CUDA graph", None, None, not_checked_here("GPU only; no workload runs a host loop: tests/test_graphs.py runs the host's replay of recorded launches")),
)


def evaluate(results: dict) -> list[dict]:
    out = []
    for name, op, threshold, rule in TARGETS:
        got = rule(results, threshold)
        holds = None
        if got["value"] is not None and threshold is not None:
            holds = bool(OPS[op](got["value"], threshold))
        entry = {"name": name, "figure": got["figure"], "value": got["value"], "op": op,
                 "threshold": threshold, "holds": got.get("holds", holds), "note": got["note"]}
        if got["per_workload"] is not None:
            entry["per_workload"] = got["per_workload"]
        out.append(entry)
    return out
