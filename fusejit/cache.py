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


def entry_path(kind: str, key: str, suffix: str) -> str:
    return os.path.join(config.cache_dir(), kind, f"{key}{suffix}")


def lookup(kind: str, key: str, suffix: str) -> str | None:
    if not enabled():
        return None
    path = entry_path(kind, key, suffix)
    if os.path.exists(path):
        stats["disk_hits"] += 1
        return path
    return None


def store(kind: str, key: str, suffix: str, build) -> str:
    """Run build(tmp_path) to produce the entry, then move it into place atomically.

    With the cache disabled the entry goes to a private temporary directory."""
    stats["compiles"] += 1
    if enabled():
        directory = os.path.join(config.cache_dir(), kind)
        os.makedirs(directory, exist_ok=True)
    else:
        directory = tempfile.mkdtemp(prefix="fusejit-")
    final = os.path.join(directory, f"{key}{suffix}")
    fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=suffix, dir=directory)
    os.close(fd)
    try:
        build(tmp)
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return final


def clear() -> None:
    """Remove every cached kernel."""
    import shutil
    shutil.rmtree(config.cache_dir(), ignore_errors=True)
