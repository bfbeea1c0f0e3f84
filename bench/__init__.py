"""The fusejit benchmark harness: `python -m bench` (see bench/README.md).

Modules: workloads (the registry), run (one workload: inputs, check, kernel counts,
timings), timing (the timed loop), latency (first calls in child processes), hlo
(counting XLA's fusions), device (CPU/GPU, synchronisation, copy bandwidth), report
(tables, Markdown, JSON, plot), cli (the command line).
"""
