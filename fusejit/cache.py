"""The on-disk cache of compiled kernels, behind each backend's in-memory one.

Entries are keyed by a hash of everything that determines the binary: the source,
the compiler and its version, the flags, the fusejit version and a hash of
kernels/.  An entry is written to a temporary file in the same directory and
moved into place with os.replace, so readers never see a partial file.
"""
from __future__ import annotations

import collections
import hashlib
import os
import tempfile
import warnings

from . import config
from ._version import __version__
from .templates import kernels_hash

# Counters the tests read: memory hits, disk hits, compiles.
stats = collections.Counter()


def make_key(*parts) -> str:
    h = hashlib.sha256()
    for part in (__version__, kernels_hash()) + parts:
        data = part if isinstance(part, bytes) else repr(part).encode()
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()[:40]


def enabled() -> bool:
    return os.environ.get("FUSEJIT_CACHE", "1").strip() not in ("0", "false", "off", "no")


def entry_path(kind: str, key: str, suffix: str, root: str | None = None) -> str:
    return os.path.join(root or config.cache_dir(), kind, f"{key}{suffix}")


def _digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _drop(*paths: str) -> None:
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def lookup(kind: str, key: str, suffix: str, root: str | None = None, stat: str | None = None) -> str | None:
    """The path of a valid entry, or None.  An entry whose checksum does not match (truncated,
    corrupted) is removed with a warning, so the caller compiles it again.  `root`: another
    cache directory (the toolchain's), which FUSEJIT_CACHE=0 leaves on, counted apart; `stat`:
    the counter a hit adds to, where not a compiled module's."""
    if root is None and not enabled():
        return None
    path = entry_path(kind, key, suffix, root)
    if not os.path.exists(path):
        return None
    sidecar = path + ".sha256"
    try:
        with open(sidecar) as f:
            expected, _, seen = f.read().partition("\n")
        # The digest is checked again only when the entry changed since it was last checked
        # (its size and modification time, recorded in the sidecar): a large entry (the
        # precompiled preludes) is not hashed by every process.
        st = os.stat(path)
        stamp = f"{st.st_size} {st.st_mtime_ns}"
        valid = seen.strip() == stamp or _digest(path) == expected.strip()
        if valid and seen.strip() != stamp:
            _write_sidecar(sidecar, expected.strip(), stamp)
    except OSError:
        valid = False
    if not valid:
        warnings.warn(f"fusejit: cache entry {path} is corrupted or incomplete; recompiling", stacklevel=3)
        _drop(path, sidecar)
        return None
    try:
        os.utime(sidecar)  # least recently used goes first when the cache is over its size cap
    except OSError:
        pass
    stats[stat or ("disk_hits" if root is None else "toolchain_hits")] += 1
    return path


def write_text(path: str, text: str) -> None:
    """Write `path` atomically: a temporary file beside it, moved into place."""
    fd, tmp = tempfile.mkstemp(prefix=".", suffix=os.path.splitext(path)[1], dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        _drop(tmp)


def _write_sidecar(sidecar: str, digest: str, stamp: str) -> None:
    """The entry's digest and the stamp it was checked at, written atomically."""
    write_text(sidecar, f"{digest}\n{stamp}\n")


_warned_dirs: set = set()


def _writable_dir(kind: str, root: str | None = None) -> str:
    """The cache directory for `kind`, or a private temporary one (with a warning) when the
    cache is disabled, missing and uncreatable, or read-only."""
    if root is not None or enabled():
        directory = os.path.join(root or config.cache_dir(), kind)
        try:
            os.makedirs(directory, exist_ok=True)
            if os.access(directory, os.W_OK):
                return directory
            problem = "is read-only"
        except OSError as e:
            problem = f"cannot be created ({e.strerror})"
        if directory not in _warned_dirs:
            _warned_dirs.add(directory)
            warnings.warn(f"fusejit: cache directory {directory} {problem}; compiled kernels are kept for "
                          f"this process only (set FUSEJIT_CACHE_DIR to a writable directory)", stacklevel=4)
    return tempfile.mkdtemp(prefix="fusejit-")


def store(kind: str, key: str, suffix: str, build, root: str | None = None, stat: str | None = None) -> str:
    """Run build(tmp_path) to produce the entry, then move it into place atomically, its
    checksum first.  A failed build leaves nothing behind.  `stat` as in lookup."""
    stats[stat or ("compiles" if root is None else "toolchain_builds")] += 1
    directory = _writable_dir(kind, root)
    final = os.path.join(directory, f"{key}{suffix}")
    fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=suffix, dir=directory)
    os.close(fd)
    try:
        build(tmp)
        fd, tmp_sum = tempfile.mkstemp(prefix=f".{key}.", suffix=".sha256", dir=directory)
        with os.fdopen(fd, "w") as f:
            f.write(_digest(tmp))  # no stamp yet: the first lookup checks the digest
        os.replace(tmp_sum, final + ".sha256")
        os.replace(tmp, final)
    finally:
        _drop(tmp)
    if root is None:
        enforce_size_cap()
    else:
        prune(directory, suffix, TOOLCHAIN_KEEP)
    return final


# Toolchain entries kept of each suffix (a precompiled prelude, the launch extension): each
# build of kernels/ or change of flags makes new ones, and a precompiled prelude is megabytes.
TOOLCHAIN_KEEP = 4


def prune(directory: str, suffix: str, keep: int) -> list[str]:
    """Remove all but the `keep` most recently used entries of `directory` whose names end in
    `suffix` (their sidecars record the last use); returns the paths removed.  A process
    still using a removed entry has it open or builds it again."""
    entries = []
    for name in os.listdir(directory):
        if name.startswith(".") or not name.endswith(suffix):
            continue
        path = os.path.join(directory, name)
        try:
            entries.append((os.stat(path + ".sha256").st_mtime_ns, path))
        except OSError:  # no sidecar: not a complete entry
            continue
    removed = [path for _, path in sorted(entries, reverse=True)[keep:]]
    for path in removed:
        _drop(path, path + ".sha256")
        stats["toolchain_pruned"] += 1
    return removed


def enforce_size_cap() -> None:
    """With FUSEJIT_CACHE_MAX_BYTES set, remove least recently used entries until under it."""
    cap = os.environ.get("FUSEJIT_CACHE_MAX_BYTES")
    if not cap or not enabled():
        return
    entries = []
    for root, _, files in os.walk(config.cache_dir()):
        for name in files:
            if name.startswith(".") or name.endswith(".sha256"):
                continue
            path = os.path.join(root, name)
            try:
                st = os.stat(path)
                used = os.stat(path + ".sha256").st_mtime  # touched by every lookup
            except OSError:
                continue
            entries.append((used, st.st_size, path))
    total = sum(size for _, size, _ in entries)
    for _, size, path in sorted(entries):
        if total <= int(cap):
            break
        _drop(path, path + ".sha256")
        total -= size
        stats["evictions"] += 1


def clear() -> None:
    """Remove every cached kernel."""
    import shutil
    shutil.rmtree(config.cache_dir(), ignore_errors=True)
