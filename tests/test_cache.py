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
    assert len(files) == 2 and files[0].endswith(".so") and files[1] == files[0] + ".sha256"


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


def test_corrupted_entry_is_detected_and_recompiled(fresh_cache):
    f = lambda x: x * 6.5  # noqa: E731
    fusejit.jit(f)(np.ones(3, np.float32))
    (entry,) = [p for p in (fresh_cache / "host").iterdir() if p.suffix == ".so"]
    data = entry.read_bytes()
    entry.unlink()  # a new file: this process still has the old one mapped
    entry.write_bytes(data[: len(data) // 2])  # truncated
    backends._instances.clear()
    cache.stats.clear()
    with pytest.warns(UserWarning, match="corrupted or incomplete"):
        out = fusejit.jit(f)(np.ones(3, np.float32))
    np.testing.assert_array_equal(out, np.full(3, 6.5, np.float32))
    assert cache.stats["compiles"] == 1 and cache.stats["disk_hits"] == 0


def test_unusable_cache_dir_falls_back_to_memory(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("FUSEJIT_CACHE_DIR", str(blocker / "cache"))
    backends._instances.clear()
    with pytest.warns(UserWarning, match="cannot be created"):
        out = fusejit.jit(lambda x: x + 0.125)(np.zeros(2, np.float32))
    np.testing.assert_array_equal(out, [0.125, 0.125])
    backends._instances.clear()


def test_size_cap_evicts_least_recently_used(fresh_cache, monkeypatch):
    x = np.ones(2, np.float32)
    fusejit.jit(lambda x: x + 11.0)(x)
    size = sum(p.stat().st_size for p in (fresh_cache / "host").iterdir() if p.suffix == ".so")
    monkeypatch.setenv("FUSEJIT_CACHE_MAX_BYTES", str(int(size * 1.5)))
    fusejit.jit(lambda x: x + 12.0)(x)
    entries = [p for p in (fresh_cache / "host").iterdir() if p.suffix == ".so"]
    assert len(entries) == 1 and cache.stats["evictions"] == 1


CONCURRENT = textwrap.dedent("""
    import numpy as np, jax.numpy as jnp, fusejit
    print(float(fusejit.jit(lambda x: jnp.cos(x) * 0.0625)(np.zeros(5, np.float32))[0]))
""")


def test_two_processes_compiling_at_once_both_succeed(fresh_cache):
    env = dict(os.environ, FUSEJIT_CACHE_DIR=str(fresh_cache))
    procs = [subprocess.Popen([sys.executable, "-c", CONCURRENT], env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert [o.strip().splitlines()[-1] for o in outs] == ["0.0625", "0.0625"]
    entries = [p for p in (fresh_cache / "host").iterdir() if not p.name.startswith(".")]
    assert sorted(p.suffix for p in entries) == [".sha256", ".so"]


def test_eight_threads_different_shapes_compile_once_each():
    import concurrent.futures
    f = fusejit.jit(lambda x: jnp.sin(x) * 2.0 + 1.0)
    shapes = [(n,) for n in (3, 5, 7, 9)] * 2
    inputs = [np.random.default_rng(k).standard_normal(s).astype(np.float32) for k, s in enumerate(shapes)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        outs = list(pool.map(f, inputs))
    for x, y in zip(inputs, outs):
        np.testing.assert_allclose(y, np.sin(x) * 2 + 1, rtol=1e-6)
    assert f.trace_count == 4


def test_precompiled_preludes_are_built_once_and_optional(tmp_path, monkeypatch, fresh_cache):
    """fusejit.h is precompiled once per machine, in the toolchain directory (apart from the
    kernel cache, also with FUSEJIT_CACHE=0); a compile without it still works."""
    monkeypatch.setenv("FUSEJIT_TOOLCHAIN_DIR", str(tmp_path / "toolchain"))
    monkeypatch.setenv("FUSEJIT_CACHE", "0")
    backends._instances.clear()
    host = backends.get("host")  # (which builds the launch extension here, if this process has not)
    built = cache.stats["toolchain_builds"]
    pch = host.precompiled_header()
    assert os.path.exists(os.path.join(pch, "fusejit.h.gch")) and str(tmp_path / "toolchain") in pch
    assert cache.stats["toolchain_builds"] == built + 1
    x = np.linspace(-1, 1, 9).astype(np.float32)
    assert fusejit.check(fusejit.jit(lambda x: jnp.sin(x) * 2.5, backend="host"), x).ok
    os.unlink(os.path.join(pch, "fusejit.h.gch"))  # gone: GCC reads the header itself
    assert fusejit.check(fusejit.jit(lambda x: jnp.cos(x) * 2.5, backend="host"), x).ok
    backends._instances.clear()
    assert backends.get("host").precompiled_header() == pch and cache.stats["toolchain_hits"] == 1


def test_the_toolchain_directory_keeps_its_most_recently_used_entries(tmp_path, monkeypatch, fresh_cache):
    """Each kernels/ or flags change builds new toolchain entries (a precompiled prelude is
    megabytes): storing one removes all but the TOOLCHAIN_KEEP most recently used of its kind,
    and a precompiled prelude's link directory goes with it."""
    root = str(tmp_path / "toolchain")
    keep = cache.TOOLCHAIN_KEEP
    keys = [f"{k:040x}" for k in range(keep + 3)]
    monkeypatch.setattr(cache, "TOOLCHAIN_KEEP", 100)  # none pruned while they are made
    for age, key in enumerate(keys):
        path = cache.store("host", key, ".gch", lambda out, key=key: open(out, "w").write(key), root)
        os.utime(path + ".sha256", ns=(age * 10**9, age * 10**9))  # used in this order
    monkeypatch.setattr(cache, "TOOLCHAIN_KEEP", keep)
    # The oldest entry is used again: it outlives the ones used after it.
    assert cache.lookup("host", keys[0], ".gch", root) is not None
    cache.store("host", "f" * 40, ".gch", lambda out: open(out, "w").write("new"), root)
    left = sorted(n for n in os.listdir(os.path.join(root, "host")) if n.endswith(".gch"))
    assert left == sorted(f"{k}.gch" for k in [keys[0], *keys[-2:], "f" * 40])
    assert cache.stats["toolchain_pruned"] == len(keys) + 1 - keep
    assert cache.lookup("host", keys[1], ".gch", root) is None
    # Other kinds of entry are pruned apart.
    cache.store("host", "e" * 40, ".so", lambda out: open(out, "w").write("ext"), root)
    assert os.path.exists(os.path.join(root, "host", "e" * 40 + ".so"))

    # A precompiled prelude whose .gch was pruned loses its directory when the next is built.
    monkeypatch.setenv("FUSEJIT_TOOLCHAIN_DIR", root)
    stale = os.path.join(root, "host", f"pch-{keys[1]}")
    os.makedirs(stale)
    os.symlink(os.path.join(root, "host", f"{keys[1]}.gch"), os.path.join(stale, "fusejit.h.gch"))
    backends._instances.clear()
    pch = backends.get("host").precompiled_header()
    assert os.path.exists(os.path.join(pch, "fusejit.h.gch")) and not os.path.exists(stale)
    x = np.linspace(-1, 1, 9).astype(np.float32)
    assert fusejit.check(fusejit.jit(lambda x: jnp.tanh(x) * 1.5, backend="host"), x).ok


def test_the_compiler_version_is_asked_once_per_compiler_binary(tmp_path, monkeypatch):
    """The compiler's --version (part of every cache key) is remembered in the toolchain
    directory per binary: a new process asks again only when the binary changed."""
    from fusejit.backends import cxx
    calls = tmp_path / "calls"
    script = tmp_path / "cxx"
    script.write_text(f'#!/bin/sh\n[ "$1" = --version ] && echo >> {calls}\nexec g++ "$@"\n')
    script.chmod(0o755)
    monkeypatch.setenv("FUSEJIT_CXX", str(script))
    monkeypatch.setenv("FUSEJIT_TOOLCHAIN_DIR", str(tmp_path / "toolchain"))

    def new_process():
        for f in (cxx.compiler, cxx.version_text, cxx.is_gnu):
            f.cache_clear()
        return cxx.compiler()

    def asked():
        return len(calls.read_text().splitlines()) if calls.exists() else 0

    try:
        path, version = new_process()
        assert path == str(script) and version.startswith("g++") and cxx.is_gnu() and asked() == 1
        assert new_process() == (path, version) and asked() == 1
        script.write_text(script.read_text() + "# upgraded\n")  # another binary
        assert new_process() == (path, version) and asked() == 2
    finally:
        monkeypatch.undo()
        for f in (cxx.compiler, cxx.version_text, cxx.is_gnu):
            f.cache_clear()
