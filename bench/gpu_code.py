"""Target 4 read off each workload's GPU code, with no GPU: every module the workload
compiles goes through NVRTC for sm_90, and its PTX and ptxas's report give, per kernel,
whether it moves 16- or 8-byte vectors (ld.global.nc.v2/v4, st.global.v2/v4), whether it
declares its launch bounds (.maxntid) and how many bytes it spills to local memory.
tests/test_gpu_code.py checks the same properties kernel kind by kernel kind."""
from __future__ import annotations

import re

from fusejit import nvrtc
from fusejit.errors import ToolchainError

ARCH = "sm_90"
VECTOR = re.compile(r"\b(?:ld\.global(?:\.nc)?|st\.global)\.v[24]\.")


def inspect(compiled) -> dict:
    """{kernels, vector_kernels, bounded, spill_bytes} over the modules of a Compiled, or
    {error} when NVRTC is not installed."""
    kernels = vectors = bounded = spilled = 0
    try:
        for source in compiled.modules():
            ptx = nvrtc.compile_source(source, ARCH, "ptx")
            ptx = ptx.decode() if isinstance(ptx, bytes) else ptx
            for entry in ptx.split(".entry ")[1:]:
                kernels += 1
                vectors += bool(VECTOR.search(entry))
                bounded += ".maxntid" in entry
            spilled += sum(r.spill_stores + r.spill_loads for r in nvrtc.resource_usage(source, ARCH).values())
    except ToolchainError as e:
        return {"error": str(e)[:200]}
    return {"kernels": kernels, "vector_kernels": vectors, "bounded": bounded, "spill_bytes": spilled}
