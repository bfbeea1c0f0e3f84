"""Access to kernels/: the CUDA templates and preludes that ship inside the package."""
from __future__ import annotations

import functools
import hashlib
import os
import re
import string


@functools.lru_cache(maxsize=None)
def kernels_dir() -> str:
    """The directory holding fusejit.h and the templates.

    Installed, kernels/ is the `fusejit.kernels` package inside the wheel; in a source
    checkout it is the repository's kernels/ beside the package."""
    override = os.environ.get("FUSEJIT_KERNELS_DIR")
    if override:  # a modified copy of kernels/, for experiments on the templates
        return override
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = [os.path.join(os.path.dirname(here), "kernels")]
    try:
        import importlib.resources
        candidates.insert(0, str(importlib.resources.files("fusejit.kernels")))
    except (ImportError, TypeError, ValueError):
        pass
    for candidate in candidates:
        if os.path.exists(os.path.join(candidate, "fusejit.h")):
            return candidate
    raise FileNotFoundError("fusejit's kernels/ directory (fusejit.h) was not found; reinstall fusejit")


@functools.lru_cache(maxsize=None)
def template(name: str) -> string.Template:
    with open(os.path.join(kernels_dir(), name)) as f:
        return string.Template(f.read())


@functools.lru_cache(maxsize=None)
def kernels_hash() -> str:
    """A hash of every file in kernels/: part of every cache key."""
    h = hashlib.sha256()
    d = kernels_dir()
    for name in sorted(os.listdir(d)):
        path = os.path.join(d, name)
        if os.path.isfile(path) and not name.endswith(".pyc"):
            h.update(name.encode())
            with open(path, "rb") as f:
                h.update(f.read())
    return h.hexdigest()[:16]


def fill(template_name: str, **slots) -> str:
    return template(template_name).substitute(**slots)


def indent(lines, depth: int) -> str:
    """Lines of C for a template slot, indented `depth` levels of two spaces."""
    return "".join(f"{'  ' * depth}{line}\n" for line in lines)


# A statement codegen emits (`const T name = expr;  // comment`, KernelWriter.emit) and the
# names an expression reads: what the passes that move statements of a body parse.
DECLARATION = re.compile(r"const (.+) (\w+) = (.*);")
IDENTIFIER = re.compile(r"\b[A-Za-z_]\w*\b")


def declaration(line: str):
    """The match of DECLARATION (type, name, expression) on a body line without its comment,
    or None for another line (a store, a loop)."""
    return DECLARATION.fullmatch(line.split("  //")[0])


def paren(text: str) -> str:
    """`text` as one operand of a C expression: parenthesised unless it is a name or a number."""
    return text if text.replace("_", "").isalnum() else f"({text})"
