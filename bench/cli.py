"""The command line: `python -m bench [--quick] [--filter S] [--size X] [--backend B] [--json P]`.

Exit status: 0 when every output of every workload matched jax.jit, 1 otherwise (a
mismatch or a workload that raised), 2 for bad arguments.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import time

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                           TimeElapsedColumn)

RESULTS_DIR = pathlib.Path(__file__).resolve().parent / "results"
STEPS_PER_WORKLOAD = 7  # inputs, check, kernel counts, 3 timings, latency
QUICK_SCALE = 0.01


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=(
        "Time fusejit against jax.jit and an eager NumPy/CuPy baseline, and diff every output "
        "against jax.jit. See bench/README.md."))
    p.add_argument("--quick", action="store_true",
                   help=f"small sizes (scale {QUICK_SCALE}), short timings, first-call latency for "
                        "one workload only: a correctness smoke run for CI")
    p.add_argument("--filter", metavar="SUBSTR", help="only workloads whose name contains SUBSTR")
    p.add_argument("--size", metavar="X", type=float, default=None,
                   help="scale factor on each workload's default element count (default 1, "
                        f"{QUICK_SCALE} with --quick); fixed-size workloads (sin_cos_9) ignore it")
    p.add_argument("--backend", choices=("host", "cuda"), default=None,
                   help="fusejit backend and device (default: cuda with a GPU, else host)")
    p.add_argument("--json", metavar="PATH", type=pathlib.Path, help="also write the JSON report here")
    p.add_argument("--no-save", action="store_true", help=f"do not write {RESULTS_DIR.name}/ files")
    p.add_argument("--no-latency", action="store_true", help="skip the first-call latency children")
    p.add_argument("--min-time", type=float, default=None, metavar="S",
                   help="seconds of timed calls per implementation (default 0.5, 0.05 with --quick)")
    p.add_argument("--reps", type=int, default=None, metavar="N",
                   help="at most N timed calls per implementation (default 10000, 200 with --quick)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first input set (default 0)")
    args = p.parse_args(argv)
    if args.size is not None and args.size <= 0:
        p.error("--size must be positive")
    return args


def make_config(args):
    from .run import Config
    from .timing import Settings
    quick = args.quick
    timing = Settings(min_time=args.min_time if args.min_time is not None else (0.05 if quick else 0.5),
                      min_reps=5,
                      max_reps=args.reps if args.reps is not None else (200 if quick else 10_000),
                      warmup=1 if quick else 2, rounds=5)
    scale = args.size if args.size is not None else (QUICK_SCALE if quick else 1.0)
    return Config(scale=scale, input_sets=3, seed=args.seed, timing=timing,
                  latency=not args.no_latency, cold_samples=1 if quick else 3)


def main(argv=None) -> int:
    args = parse_args(argv)
    console = Console()
    if not console.is_terminal:  # logs and pipes: do not squeeze the tables into 80 columns
        console = Console(width=180)
    from . import device as device_mod, report, run, targets, workloads

    selected = workloads.select(args.filter)
    if not selected:
        console.print(f"[red]no workload name contains {args.filter!r}; "
                      f"known: {', '.join(workloads.REGISTRY)}[/red]")
        return 2
    try:
        dev = device_mod.make(args.backend)
    except device_mod.DeviceError as e:
        console.print(f"[red]bench: {e}[/red]")
        return 2
    cfg = make_config(args)
    started = time.time()
    results = {"device": dev.describe(),
               "settings": {"quick": args.quick, "scale": cfg.scale, "input_sets": cfg.input_sets,
                            "seed": cfg.seed, **dataclasses.asdict(cfg.timing)},
               "workloads": [], "loadavg_start": _loadavg()}

    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        total = STEPS_PER_WORKLOAD * len(selected) + 2
        task = progress.add_task("copy bandwidth", total=total)
        mib = 64 if args.quick else 256
        results["copy_bandwidth_Bps"] = dev.copy_bandwidth(mib << 20, reps=3 if args.quick else 7)
        results["settings"]["copy_bytes"] = mib << 20
        progress.advance(task)
        for i, w in enumerate(selected):
            def step(msg, w=w):
                progress.update(task, description=f"{w.name}: {msg}", advance=1)
            # --quick times first calls for the first workload only (each child is a new process)
            w_cfg = cfg if (not args.quick or i == 0) else dataclasses.replace(cfg, latency=False)
            progress.update(task, description=f"{w.name}")
            results["workloads"].append(run.run_workload(w, dev, w_cfg, results["copy_bandwidth_Bps"], step))
            progress.update(task, completed=1 + STEPS_PER_WORKLOAD * (i + 1))
        progress.update(task, description="dispatch overhead")
        results["dispatch"] = run.dispatch_overhead(dev, cfg)
        progress.advance(task)
    results["wall_s"] = time.time() - started
    results["loadavg_end"] = _loadavg()
    results["targets"] = targets.evaluate(results)

    for table in report.rich_tables(results):
        console.print(table)
    _warnings(console, results)
    if not args.no_save:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        report.write_json(results, RESULTS_DIR / "report.json")
        (RESULTS_DIR / "report.md").write_text(report.markdown(results))
        report.plot(results, RESULTS_DIR / "ratios.png")
        console.print(f"wrote {RESULTS_DIR}/report.json, report.md, ratios.png")
    if args.json:
        report.write_json(results, args.json)
        console.print(f"wrote {args.json}")
    bad = [r["name"] for r in results["workloads"] if not r["correct"]]
    if bad:
        console.print(f"[red]outputs differ from jax.jit (or the workload failed): {', '.join(bad)}[/red]")
        return 1
    console.print(f"all {len(results['workloads'])} workload(s) match jax.jit "
                  f"({results['wall_s']:.0f} s)")
    return 0


def _loadavg():
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def _warnings(console: Console, results: dict) -> None:
    cores = results["device"]["cores"]
    for key in ("loadavg_start", "loadavg_end"):
        load = results.get(key)
        if load and load[0] >= cores:
            console.print(f"[yellow]warning: 1-minute load average {load[0]:.1f} at the "
                          f"{key.split('_')[1]} on {cores} core(s): other processes compete, "
                          f"timings are noisy[/yellow]")
    for r in results["workloads"]:
        if "error" in r:
            console.print(f"[red]{r['name']} failed: {r['error']}[/red]")
        eager = r.get("eager_vs_jax")
        if eager and not eager["ok"]:
            console.print(f"[yellow]warning: {r['name']}: the eager baseline disagrees with jax.jit "
                          f"(max ULP {eager['max_ulp']:.0f}); is it the same computation?[/yellow]")
        for phase, entry in (r.get("latency") or {}).items():
            if "error" in entry:
                console.print(f"[yellow]warning: {r['name']}: latency child {phase}: {entry['error']}[/yellow]")
