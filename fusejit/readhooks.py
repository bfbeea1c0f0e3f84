"""What the host paths of map and reduction kernels share: rendering a body again at another
index, and read hooks (codegen's KernelWriter.cache) that read some operands from arrays the
path fills first (transposes.py's tiles, periodic.py's tables) instead of from memory."""
from __future__ import annotations

from .indexing import linearize


def render_stores(w, idx, spec) -> list[str]:
    """The body storing every output at idx, in a fresh scope (w.body is the caller's to
    restore)."""
    w.body = []
    w.new_scope()
    own = w.index(linearize(idx, spec.shape))
    for k, out in enumerate(spec.outputs):
        w.body.append(f"out{k}[{own}] = {w.read_output(out, idx)};")
    return w.body


class NamedReads:
    """A read hook's bookkeeping: each distinct read it takes (`key`) gets an array name,
    `prefix` and a number, up to `limit` of them; `load` is the hook's own."""

    def __init__(self, prefix: str, limit: int):
        self.prefix, self.limit = prefix, limit
        self.arrays: dict = {}  # key -> array name

    def array(self, key) -> str | None:
        """The array of `key`, named on its first read; None past the limit."""
        if key not in self.arrays:
            if len(self.arrays) == self.limit:
                return None
            self.arrays[key] = f"{self.prefix}{len(self.arrays)}"
        return self.arrays[key]

    def load(self, w, var, idx):
        raise NotImplementedError

    def loaded(self, w, var, idx, name):
        pass
