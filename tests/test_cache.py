"""The kernel caches: in memory per backend, on disk per key, reused by a new process."""
import os
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
import pytest

import fusejit
from fusejit import backends, cache


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FUSEJIT_CACHE_DIR", str(tmp_path / "cache"))
    backends._instances.clear()  # drop the in-memory module caches
    cache.stats.clear()
    yield tmp_path / "cache"
    backends._instances.clear()


def test_same_key_hits_memory_and_traces_once(fresh_cache):
    f = fusejit.jit(lambda x: jnp.exp(x) - 1.25)
    x = np.ones(7, np.float32)
    for _ in range(3):
        f(x)
    assert f.trace_count == 1
    assert cache.stats["compiles"] == 1 and cache.stats["disk_hits"] == 0
    g = fusejit.jit(lambda x: jnp.exp(x) - 1.25)  # a new function object, same source: memory hit
    g(x)
    assert cache.stats["compiles"] == 1 and cache.stats["memory_hits"] == 1


def test_entries_are_complete_files_only(fresh_cache):
    fusejit.jit(lambda x: x * 3.5)(np.ones(3, np.float32))
    files = sorted(os.listdir(fresh_cache / "host"))
    assert len(files) == 1 and files[0].endswith(".so") and not files[0].startswith(".")


SCRIPT = textwrap.dedent("""
    import json, numpy as np, jax.numpy as jnp, fusejit
    f = fusejit.jit(lambda x: jnp.tanh(x) * 0.3125)
    y = f(np.linspace(-1, 1, 11).astype(np.float32))
    print(json.dumps(dict(fusejit.cache.stats)))
""")


def test_second_process_reuses_disk_cache_without_compiling(fresh_cache):
    env = dict(os.environ, FUSEJIT_CACHE_DIR=str(fresh_cache))
    first = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True)
    second = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True)
    import json
    a, b = json.loads(first.stdout.splitlines()[-1]), json.loads(second.stdout.splitlines()[-1])
    assert a.get("compiles") == 1 and a.get("disk_hits", 0) == 0
    assert b.get("compiles", 0) == 0 and b.get("disk_hits") == 1


def test_failed_compile_leaves_nothing(fresh_cache):
    backend = backends.get("host")
    bad = '#include "fusejit.h"\nextern "C" void broken( { }\n'
    with pytest.raises(fusejit.CompileError) as info:
        backend.compile(bad, [])
    assert "1 | #include" in str(info.value) and "2 | extern" in str(info.value)
    assert not (fresh_cache / "host").exists() or os.listdir(fresh_cache / "host") == []


def test_cache_disabled_writes_nothing(fresh_cache, monkeypatch):
    monkeypatch.setenv("FUSEJIT_CACHE", "0")
    fusejit.jit(lambda x: x - 0.75)(np.ones(3, np.float32))
    assert not fresh_cache.exists()


def test_key_changes_with_source_and_backend(fresh_cache):
    x = np.ones(3, np.float32)
    fusejit.jit(lambda x: x + 1.0)(x)
    fusejit.jit(lambda x: x + 2.0)(x)
    assert cache.stats["compiles"] == 2
    a = backends.get("host").compile_key("source")
    b = backends.get("emulate").compile_key("source")
    assert a != b


def test_clear(fresh_cache):
    fusejit.jit(lambda x: x * 9.0)(np.ones(2, np.float32))
    assert fresh_cache.exists()
    fusejit.cache.clear()
    assert not fresh_cache.exists()
