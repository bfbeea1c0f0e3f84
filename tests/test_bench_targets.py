"""bench/targets.py: the performance targets computed from a run's results, and how the
benchmark reports them (terminal table, report.md, JSON)."""
import json
import math

import pytest

from bench import report, targets

KEYS = {"name", "figure", "value", "op", "threshold", "holds", "note"}
NAMES = [t[0] for t in targets.TARGETS]


def workload(name, fusejit_s, jax_s, cold=(0.1, 0.1), warm=0.01):
    """A workload record shaped like bench.run.run_workload's, with latency figures
    (cold: fusejit's and jax's cold first call; warm: fusejit's first call, warm disk cache)."""
    phase = lambda s: {"first_call_s": s, "fusejit_cache": {}}  # noqa: E731
    return {"name": name, "stresses": "", "x64": False, "correct": True, "inputs": ["f32[9]"],
            "outputs": [], "max_ulp": 0.0, "max_abs": 0.0, "eager_vs_jax": {"ok": True, "max_ulp": 0.0},
            "kernels_fusejit": 1, "library_fusejit": 0, "xla": {"fusions": 1, "other": 0}, "bytes": 72,
            "time_s": {"fusejit": fusejit_s, "jax": jax_s, "eager": 1.0},
            "speedup_vs_jax": jax_s / fusejit_s, "speedup_vs_eager": 1.0 / fusejit_s,
            "bandwidth_fraction": {"fusejit": 0.5, "jax": 0.25, "eager": 0.1},
            "gpu_code": {"kernels": 2, "vector_kernels": 1, "bounded": 2, "spill_bytes": 0},
            "latency": {"fusejit_cold": phase(cold[0]), "fusejit_warm": phase(warm),
                        "jax_cold": phase(cold[1]), "jax_warm": phase(0.05), "jax_default": phase(0.06)}}


def results(*records, kind="cpu", scale=1.0, dispatch=(4e-6, 5e-6)):
    timing = lambda s: {"median": s, "q1": s, "q3": s, "minimum": s, "reps": 10}  # noqa: E731
    return {"device": {"kind": kind, "name": "test", "cores": 2, "fusejit_backend": "host",
                       "eager_baseline": "numpy", "jax_platform": "cpu"},
            "settings": {"quick": False, "scale": scale}, "copy_bandwidth_Bps": 1e10,
            "workloads": list(records),
            "dispatch": {"fusejit": timing(dispatch[0]), "jax": timing(dispatch[1]),
                         "eager": timing(1e-6)}}


def by_name(res):
    return {t["name"]: t for t in targets.evaluate(res)}


def holds(res):
    return [t["holds"] for t in targets.evaluate(res)]


def test_every_target_holds_on_a_good_run():
    res = results(workload("a", 1.0, 2.0), workload("b", 1.0, 3.0))
    assert holds(res) == [True, True, True, True, True, None, True, None]
    got = by_name(res)
    assert got[NAMES[0]]["figure"] == "2/2 faster"
    assert got[NAMES[1]]["value"] == pytest.approx(math.sqrt(6))
    assert got[NAMES[5]]["note"] == "GPU target; CPU run"
    assert got[NAMES[6]]["figure"] == "2/4 kernels move vectors (2/2 workloads); launch bounds 4/4; 0 bytes spilled"
    assert got[NAMES[7]]["note"].startswith("GPU only")


def test_gpu_code_target_fails_on_a_spill_or_a_kernel_without_bounds_and_says_when_nvrtc_is_missing():
    spilling, unbounded, plain = workload("a", 1.0, 2.0), workload("b", 1.0, 2.0), workload("c", 1.0, 2.0)
    spilling["gpu_code"] = dict(spilling["gpu_code"], spill_bytes=8)
    unbounded["gpu_code"] = dict(unbounded["gpu_code"], bounded=1)
    assert by_name(results(spilling, plain))[NAMES[6]]["holds"] is False
    assert by_name(results(unbounded, plain))[NAMES[6]]["holds"] is False
    plain["gpu_code"] = {"error": "NVRTC is not available: install fusejit[cuda12]"}
    got = by_name(results(plain))[NAMES[6]]
    assert got["holds"] is None and got["note"].startswith("NVRTC is not available")


def test_one_slower_workload_breaks_every_workload_but_not_the_geomean():
    res = results(workload("fast", 1.0, 4.0), workload("slow", 1.0, 0.9))
    got = by_name(res)
    assert got[NAMES[0]]["holds"] is False
    assert got[NAMES[0]]["figure"] == "1/2 faster; not faster: slow"
    assert got[NAMES[0]]["value"] == pytest.approx(0.9)
    assert got[NAMES[1]]["holds"] is True  # sqrt(3.6) = 1.9


def test_a_failed_workload_is_not_faster():
    res = results(workload("fast", 1.0, 4.0), {"name": "broken", "correct": False, "error": "E"})
    target = by_name(res)[NAMES[0]]
    assert target["holds"] is False and "broken (error)" in target["figure"]


def test_geomean_below_threshold_and_slow_dispatch():
    res = results(workload("a", 1.0, 1.2), workload("b", 1.0, 1.4), dispatch=(6e-6, 5e-6))
    got = by_name(res)
    assert got[NAMES[1]]["holds"] is False
    assert got[NAMES[2]]["holds"] is False and got[NAMES[2]]["value"] == pytest.approx(1.2)


def test_first_call_targets_per_workload():
    res = results(workload("ok", 1e-3, 2e-3, cold=(0.19, 0.1), warm=0.021),
                  workload("slow_cold", 1e-3, 2e-3, cold=(0.25, 0.1), warm=0.0212),
                  workload("no_latency", 1e-3, 2e-3))
    del res["workloads"][2]["latency"]
    got = by_name(res)
    cold, warm = got[NAMES[3]], got[NAMES[4]]
    assert cold["holds"] is False and cold["value"] == pytest.approx(2.5)
    assert cold["per_workload"] == pytest.approx({"ok": 1.9, "slow_cold": 2.5})
    assert cold["figure"].startswith("1/2 within")
    # limit: 1.2 * 1 ms + 20 ms = 21.2 ms
    assert warm["holds"] is True and warm["value"] == pytest.approx(1.0)
    res["workloads"][1]["latency"]["fusejit_warm"]["first_call_s"] = 0.030
    warm = by_name(res)[NAMES[4]]
    assert warm["holds"] is False and "fresh pages" not in warm["figure"] and not warm["note"]
    # The first write to new pages cost that call 12 ms: shown, and set aside in the note.
    res["workloads"][1]["latency"]["fusejit_warm"]["fresh_pages_s"] = 0.012
    warm = by_name(res)[NAMES[4]]
    assert warm["holds"] is False and "30 ms/21.2 ms (fresh pages 12 ms)" in warm["figure"]
    assert warm["note"].startswith("2/2 within once")
    res["workloads"][1]["latency"]["fusejit_warm"]["fresh_pages_s"] = 0.005  # 25 ms: still over
    assert by_name(res)[NAMES[4]]["note"].startswith("1/2 within once")


def test_no_latency_figures_means_not_applicable():
    res = results(workload("a", 1.0, 2.0))
    del res["workloads"][0]["latency"]
    got = by_name(res)
    for name in NAMES[3:5]:
        assert got[name]["holds"] is None and got[name]["value"] is None and got[name]["note"]


def test_not_at_default_size_is_noted_but_still_computed():
    target = by_name(results(workload("a", 1.0, 2.0), scale=0.01))[NAMES[0]]
    assert target["holds"] is True and target["note"] == "not at default size"


def test_copy_bandwidth_on_a_gpu_run_is_reported_without_verdict():
    target = by_name(results(workload("a", 1.0, 2.0), kind="gpu"))[NAMES[5]]
    assert target["holds"] is None and target["per_workload"] == {"a": 0.5}
    assert target["figure"] == "a 50%"


def test_report_renders_targets():
    res = results(workload("a", 1.0, 2.0), workload("b", 1.0, 0.5))
    res["targets"] = targets.evaluate(res)
    md = report.markdown(res)
    assert "## Targets" in md and "| faster than jax.jit on every workload | NO |" in md
    assert any(t.title.startswith("targets") for t in report.rich_tables(res))


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    from bench import cli
    path = tmp_path_factory.mktemp("bench") / "bench.json"
    status = cli.main(["--quick", "--filter", "sin_cos_9", "--no-save", "--json", str(path)])
    return status, json.loads(path.read_text())


def test_the_benchmark_writes_every_target_to_json(quick_run):
    status, res = quick_run
    assert status == 0
    assert [t["name"] for t in res["targets"]] == NAMES
    for t in res["targets"]:
        assert KEYS <= set(t)
        assert isinstance(t["figure"], str) and t["holds"] in (True, False, None)
        assert t["value"] is None or isinstance(t["value"], (int, float))
    got = {t["name"]: t for t in res["targets"]}
    assert got[NAMES[0]]["note"] == "not at default size"  # --quick
    for name in NAMES[:5]:  # --quick times first calls for the first (here the only) workload
        assert got[name]["holds"] is not None, got[name]
    if res["device"]["kind"] == "cpu":
        assert got[NAMES[5]]["holds"] is None and got[NAMES[5]]["note"] == "GPU target; CPU run"
    assert got[NAMES[6]]["holds"] is True, got[NAMES[6]]  # the PTX of the run's own kernels
    assert all(r["gpu_code"]["kernels"] >= 1 for r in res["workloads"])


def test_ulp_sweep_checks_every_nth_float(capsys):
    """bench.ulp_sweep over a coarse sweep: every function within one ULP, exit status 0; an
    unknown function name is an error that lists the known ones."""
    from bench import ulp_sweep
    assert ulp_sweep.main(["--step", "65521", "sin", "tanh"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["sin", "tanh"] and all(" ok " in line for line in lines)
    with pytest.raises(SystemExit):
        ulp_sweep.main(["lgamma"])
    assert "choose from exp" in capsys.readouterr().err


def test_survey_times_and_diffs_each_case(capsys, monkeypatch):
    """bench.survey on a small matrix: a row per case, each diffed against jax.jit; a case
    whose diff fails is named and makes the exit status 1."""
    from bench import survey
    args = ["--filter", "softmax", "--rows", "40", "--cols", "30", "--min-time", "0.01"]
    assert survey.main(args) == 0
    out = capsys.readouterr().out
    assert "log_softmax" in out and "short_softmax" in out and "causal_softmax" in out and "FAIL" not in out

    class Failed:
        ok = False
    monkeypatch.setattr(survey.fusejit, "check", lambda *args, **kwargs: Failed())
    assert survey.main(["--filter", "log_softmax", "--rows", "40", "--cols", "30", "--min-time", "0.01"]) == 1
    assert "differ from jax.jit: log_softmax" in capsys.readouterr().out


def test_cold_figures_are_the_median_of_their_children_and_interpreted_calls_are_marked():
    from bench import latency
    samples = [{"first_call_s": s, "interpreted": 1} for s in (0.3, 0.1, 0.2)]
    median = latency._median_of(samples)
    assert median["first_call_s"] == 0.2 and median["samples_s"] == [0.3, 0.1, 0.2]
    assert "error" in latency._median_of(samples + [{"error": "exit 1"}])
    rec = workload("w", 1.0, 2.0)
    rec["latency"]["fusejit_cold"]["interpreted"] = 1
    row = report.latency_rows(results(rec))[0]
    assert row[1].endswith("(interpreted)") and not row[3].endswith("(interpreted)")


def test_checks_counts_and_timings_run_the_kernels_not_the_interpreter(tmp_path, monkeypatch):
    """With first calls interpreted while the kernels compile (FUSEJIT_TIERED on) and an empty
    kernel cache, the benchmark waits for the kernels before it checks, counts or times
    fusejit: a kernel count of 0 was an interpreted call."""
    from bench import cli
    from fusejit import backends, ufuncs
    ufuncs.wait(backends.get("host"))  # the interpreter's library: without it, first calls compile first
    monkeypatch.setenv("FUSEJIT_TIERED", "1")
    monkeypatch.setenv("FUSEJIT_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "bench.json"
    assert cli.main(["--quick", "--filter", "sin_cos_9", "--no-save", "--no-latency", "--json", str(path)]) == 0
    (w,) = json.loads(path.read_text())["workloads"]
    assert w["kernels_fusejit"] == 1 and w["correct"]
