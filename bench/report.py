"""Presenting results: the rich tables on the terminal, report.md, report.json, ratios.png.

`results` is the JSON-ready dict built by bench.cli: {"device", "settings",
"copy_bandwidth_Bps", "workloads": [...], "dispatch": {...}, "targets": [...]}; each
workload record is the dict from bench.run.run_workload, each target the dict from
bench.targets.evaluate.
"""
from __future__ import annotations

import json
import math
import pathlib

from rich.table import Table

SPEEDUP_NOTE = ("× columns: speedup = baseline time / fusejit time (above 1: fusejit is faster); "
                "% copy BW: fusejit's bytes/call / time / copy bandwidth")
LATENCY_COLUMNS = (
    ("fusejit_cold", "fusejit cold"),
    ("jax_cold", "jax.jit cold"),
    ("fusejit_warm", "fusejit new proc, disk cache"),
    ("jax_warm", "jax.jit new proc, persistent cache"),
    ("jax_default", "jax.jit new proc, default (no cache)"),
)


def fmt_time(seconds) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def fmt_bytes(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} B"


def fmt_speedup(x) -> str:
    return "-" if x is None else f"{x:.2f}×"


def main_header(results: dict) -> list[str]:
    eager = results["device"]["eager_baseline"]
    return ["workload", "inputs", "fusejit", "jax.jit", eager, "× jax.jit", f"× {eager}",
            "kernels fj/XLA", "bytes/call", "% copy BW", "max ULP (abs)", "vs jax.jit"]


def main_rows(results: dict) -> list[list[str]]:
    rows = []
    for r in results["workloads"]:
        if "error" in r:
            rows.append([r["name"], "", "", "", "", "", "", "", "", "", "", f"ERROR {r['error'][:60]}"])
            continue
        t = r["time_s"]
        xla = r["xla"]
        xla_cell = f"{xla['fusions']}" + (f"+{xla['other']}" if xla["other"] else "")
        verdict = "pass" if r["correct"] else "FAIL " + "; ".join(
            o["problem"] for o in r["outputs"] if not o["ok"])[:60]
        rows.append([r["name"], " ".join(r["inputs"]), fmt_time(t["fusejit"]), fmt_time(t["jax"]),
                     fmt_time(t["eager"]), fmt_speedup(r["speedup_vs_jax"]),
                     fmt_speedup(r["speedup_vs_eager"]), f"{fj_launches(r)} / {xla_cell}",
                     fmt_bytes(r["bytes"]), f"{100 * r['bandwidth_fraction']['fusejit']:.1f}%",
                     f"{r['max_ulp']:.0f} ({r['max_abs']:.2g})", verdict])
    return rows


def fj_launches(r: dict) -> str:
    """fusejit's kernel launches per call, `+N` library calls (cuBLAS, LAPACK, sort, ...)."""
    library = r.get("library_fusejit", 0)
    return f"{r['kernels_fusejit']}" + (f"+{library}" if library else "")


def latency_rows(results: dict) -> list[list[str]]:
    rows = []
    for r in results["workloads"]:
        lat = r.get("latency")
        if not lat:
            continue
        cells = [r["name"]]
        for key, _ in LATENCY_COLUMNS:
            entry = lat.get(key, {})
            cell = "error" if "error" in entry else fmt_time(entry.get("first_call_s"))
            if key == "fusejit_warm" and entry.get("fusejit_cache", {}).get("compiles"):
                cell += " (recompiled!)"
            if key == "fusejit_cold" and entry.get("interpreted"):
                cell += " (interpreted)"
            cells.append(cell)
        rows.append(cells)
    return rows


def dispatch_rows(results: dict) -> list[list[str]]:
    d = results.get("dispatch") or {}
    names = {"fusejit": "fusejit", "jax": "jax.jit", "eager": results["device"]["eager_baseline"]}
    return [[names[k], fmt_time(t["median"]), f"{fmt_time(t['q1'])} – {fmt_time(t['q3'])}", str(t["reps"])]
            for k, t in d.items()]


TARGET_HEADER = ["target", "holds", "figure", "note"]


def target_rows(results: dict) -> list[list[str]]:
    verdict = {True: "yes", False: "NO", None: "n/a"}
    return [[t["name"], verdict[t["holds"]], t["figure"], t["note"]]
            for t in results.get("targets") or []]


def summary_line(results: dict) -> str:
    dev = results["device"]
    bw = results["copy_bandwidth_Bps"] / 1e9
    return (f"{dev['name']} ({dev['kind']}, {dev['cores']} cores), fusejit backend {dev['fusejit_backend']}, "
            f"jax.jit on {dev['jax_platform']}, eager baseline {dev['eager_baseline']}; "
            f"measured copy bandwidth {bw:.1f} GB/s (read + write)"
            + (f"; NumPy's OpenBLAS runs its {dev['blas']} kernels" if dev.get("blas") else ""))


def _rich_table(title: str, header, rows, caption: str | None = None, text: bool = False) -> Table:
    """Numbers right-aligned after the first column; `text`: every column left-aligned."""
    table = Table(title=title, caption=caption, title_justify="left", caption_justify="left")
    for k, col in enumerate(header):
        table.add_column(col, justify="left" if k == 0 or text else "right", overflow="fold")
    for row in rows:
        style = "red" if any(str(c).startswith(("FAIL", "ERROR")) for c in row) else None
        style = "yellow" if text and style is None and "NO" in row else style
        table.add_row(*row, style=style)
    return table


def rich_tables(results: dict) -> list[Table]:
    tables = [_rich_table("fusejit benchmark: median time per call", main_header(results),
                          main_rows(results), caption=SPEEDUP_NOTE + ". " + summary_line(results))]
    lat = latency_rows(results)
    if lat:
        tables.append(_rich_table("first-call latency (each in a fresh process, see README)",
                                  ["workload"] + [c for _, c in LATENCY_COLUMNS], lat))
    disp = dispatch_rows(results)
    if disp:
        tables.append(_rich_table("steady-state dispatch overhead: sin(x)+cos(x) on 9 float32",
                                  ["implementation", "median per call", "IQR", "reps"], disp))
    targets = target_rows(results)
    if targets:
        tables.append(_rich_table("targets (never change the exit status, see README)",
                                  TARGET_HEADER, targets, text=True))
    return tables


def _md_table(header, rows) -> str:
    def esc(c):
        return str(c).replace("|", "\\|")
    lines = ["| " + " | ".join(map(esc, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(esc, row)) + " |" for row in rows]
    return "\n".join(lines)


def markdown(results: dict) -> str:
    parts = ["# fusejit benchmark", "", summary_line(results) + ".", "",
             f"Settings: {json.dumps(results['settings'])}", "",
             "## Median time per call", "", SPEEDUP_NOTE + ".", "",
             _md_table(main_header(results), main_rows(results))]
    lat = latency_rows(results)
    if lat:
        parts += ["", "## First-call latency", "",
                  _md_table(["workload"] + [c for _, c in LATENCY_COLUMNS], lat)]
    disp = dispatch_rows(results)
    if disp:
        parts += ["", "## Steady-state dispatch overhead (sin(x)+cos(x), 9 float32)", "",
                  _md_table(["implementation", "median per call", "IQR", "reps"], disp)]
    targets = target_rows(results)
    if targets:
        parts += ["", "## Targets", "",
                  "Measured in this run; they never change the exit status (see bench/README.md).",
                  "", _md_table(TARGET_HEADER, targets)]
    return "\n".join(parts) + "\n"


def plot(results: dict, path: pathlib.Path) -> None:
    """Grouped bars of the two speedups per workload on a log scale, drawn from 1 (parity):
    up for fusejit faster, down for fusejit slower."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    done = [r for r in results["workloads"] if "error" not in r]
    eager = results["device"]["eager_baseline"]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(done) + 2), 4))
    width = 0.38
    for k, (key, label) in enumerate((("speedup_vs_jax", "vs jax.jit"),
                                      ("speedup_vs_eager", f"vs {eager}"))):
        xs = [i + (k - 0.5) * width for i in range(len(done))]
        values = [r[key] for r in done]
        bars = ax.bar(xs, [v - 1.0 for v in values], width, bottom=1.0, label=label)
        ax.bar_label(bars, labels=[f"{v:.2f}×" for v in values], fontsize=8)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    everything = [r[k] for r in done for k in ("speedup_vs_jax", "speedup_vs_eager")] or [1.0]
    span = max(2.0, max(everything) * 1.6, 1.6 / min(everything))
    ax.set_ylim(1.0 / span, span)
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}×"))
    ax.set_xticks(range(len(done)), [r["name"] for r in done])
    ax.set_ylabel("speedup of fusejit (baseline / fusejit)")
    ax.set_title(f"fusejit speedup on {results['device']['name']}", fontsize=10)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_json(results: dict, path: pathlib.Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_finite(results), indent=2, allow_nan=False) + "\n")


def _finite(x):
    """A copy of x that strict JSON accepts: NumPy scalars as Python numbers, inf/NaN as null."""
    if isinstance(x, dict):
        return {str(k): _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x
