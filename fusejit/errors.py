"""The exceptions fusejit raises.  Each names the problem and, where known, the user's source line."""


class FusejitError(Exception):
    """Base class of every fusejit error."""


class UnsupportedError(FusejitError, NotImplementedError):
    """A primitive, dtype or parameter that fusejit cannot run (yet)."""

    def __init__(self, message: str, primitive: str | None = None, source: str | None = None):
        self.primitive = primitive
        self.source = source
        if source:
            message = f"{message}\n  at {source}"
        super().__init__(message)


class CompileError(FusejitError):
    """A kernel failed to compile.  The message holds the numbered source and the compiler's log."""

    def __init__(self, message: str, source: str = "", log: str = ""):
        self.source = source
        self.log = log
        super().__init__(message)


class MismatchError(FusejitError, AssertionError):
    """fusejit's result differs from jax.jit's beyond the dtype's tolerance."""

    def __init__(self, report):
        self.report = report
        super().__init__(f"fusejit result differs from jax.jit:\n{report}")


class ToolchainError(FusejitError, RuntimeError):
    """A compiler or library that a backend needs is missing or broken."""


class DeviceMemoryError(FusejitError, MemoryError):
    """The device (the GPU, or the host's memory) could not hold a call's buffers."""


def numbered(source: str) -> str:
    """The source with line numbers, as compile errors show it."""
    lines = source.splitlines()
    width = len(str(len(lines)))
    return "\n".join(f"{i + 1:>{width}} | {line}" for i, line in enumerate(lines))
