"""The decorator: `@fusejit.jit`, `@fusejit.jit(static_argnums=...)`, `from fusejit import fusejit`.

A call flattens its arguments (jax.tree_util), builds the specialization key
(tree structure, each leaf's shape/dtype/weak type, static values, x64 flag,
backend and device architecture) and runs the Compiled for that key, tracing and
compiling it on a miss: a new key exactly when jax.jit would retrace.
"""
from __future__ import annotations

import functools
import inspect
import threading

import jax
import numpy as np

from . import backends, config, halves, jaxcompat, keys
from .compiler import SCAN_STRATEGIES, Compiled
from .tiered import Tiered, compile_tiered
from .trace import graph_from_jaxpr


def leaf_spec(x):
    """(shape, dtype, weak_type) of one dynamic argument, as jax.jit would see it."""
    if isinstance(x, np.ndarray):
        return x.shape, jaxcompat.canonical_dtype(x.dtype), False
    if isinstance(x, (bool, np.bool_)):
        return (), np.dtype(np.bool_), False
    if isinstance(x, int):
        return (), jaxcompat.canonical_dtype(np.int64), True
    if isinstance(x, float):
        return (), jaxcompat.canonical_dtype(np.float64), True
    if isinstance(x, np.generic):
        return (), jaxcompat.canonical_dtype(x.dtype), False
    if isinstance(x, jax.Array):
        if isinstance(x, jax.core.Tracer):
            raise InsideTrace
        if keys.is_key(x):  # typed PRNG keys: the kernels get their data
            return tuple(x.shape), x.dtype, False
        return tuple(x.shape), np.dtype(x.dtype), bool(getattr(x, "weak_type", False))
    if type(x).__module__.startswith("cupy") and hasattr(x, "__cuda_array_interface__"):
        return tuple(x.shape), jaxcompat.canonical_dtype(x.dtype), False
    if isinstance(x, complex):
        return (), jaxcompat.canonical_dtype(np.complex128), True
    raise NotAnArray(x)


class NotAnArray(TypeError):
    """An argument that is not an array (the caller names where it was passed)."""

    def __init__(self, value):
        self.value = value
        super().__init__(f"a value of type {type(value)} is not an array")


class InsideTrace(Exception):
    """A fusejit function called while JAX traces an outer function: it is inlined, as jax.jit is."""


def _hashable(value):
    try:
        hash(value)
    except TypeError as e:
        raise ValueError(
            f"Non-hashable static arguments are not supported. An error occurred while trying to hash an "
            f"object of type {type(value)}, {value}. The error was:\nTypeError: {e}") from e
    return value


class Jitted:
    """A function compiled by fusejit; call it like the original."""

    def __init__(self, fun, static_argnums=(), static_argnames=(), backend=None, check=False,
                 index64=False, scan=None, donate_argnums=(), donate_argnames=()):
        functools.update_wrapper(self, fun)
        self.fun = fun
        # Accepted as jax.jit accepts them, so a decorator switches over unchanged.  A donated
        # argument is a permission, not a promise: fusejit never writes into its arguments,
        # so it reuses no donated buffer (and the caller's array stays valid).
        self.donate_argnums = (donate_argnums,) if isinstance(donate_argnums, int) else tuple(donate_argnums)
        self.donate_argnames = (donate_argnames,) if isinstance(donate_argnames, str) else tuple(donate_argnames)
        if isinstance(static_argnums, int):
            static_argnums = (static_argnums,)
        if isinstance(static_argnames, str):
            static_argnames = (static_argnames,)
        self.static_argnums = tuple(int(k) for k in static_argnums)
        self.static_argnames = tuple(static_argnames)
        try:
            self.signature = inspect.signature(fun)
        except (TypeError, ValueError):
            self.signature = None
        self._infer_static()
        self.backend = backend
        self.check = check
        self.index64 = index64
        if scan is not None and scan not in SCAN_STRATEGIES:
            raise ValueError(f"scan must be one of {', '.join(SCAN_STRATEGIES)}, not {scan!r}")
        self.scan = scan
        self.cache: dict = {}
        self.fast_cache: dict = {}
        self.trace_count = 0
        self.lock = threading.Lock()
        self._reference = None

    def _infer_static(self):
        """As jax.jit does: static_argnames imply static_argnums and the reverse."""
        if self.signature is None:
            return
        params = list(self.signature.parameters.values())
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        var_args = any(p.kind == p.VAR_POSITIONAL for p in params)
        n = len(positional)
        nums = {k if k >= 0 else k + n for k in self.static_argnums}
        if not var_args:
            for k in nums:
                if k >= n or k < 0:
                    raise ValueError(f"jitted function has static_argnums={self.static_argnums}, "
                                     f"but only accepts {n} positional arguments.")
        names = set(self.static_argnames)
        for k, p in enumerate(positional):
            if p.name in names:
                nums.add(k)
            if k in nums and p.kind != p.POSITIONAL_ONLY:
                names.add(p.name)
        self.static_argnums = tuple(sorted(nums))
        self.static_argnames = tuple(sorted(names))

    # ---- specialization ----
    def _split(self, args, kwargs):
        static_pos = tuple((k, _hashable(args[k])) for k in self.static_argnums if k < len(args))
        static_kw = tuple(sorted((k, _hashable(v)) for k, v in kwargs.items()
                                 if k in self.static_argnames))
        dyn_args = tuple(a for k, a in enumerate(args) if k not in self.static_argnums)
        dyn_kwargs = {k: v for k, v in kwargs.items() if k not in self.static_argnames}
        return static_pos, static_kw, dyn_args, dyn_kwargs

    def specialize(self, args, kwargs):
        """(Compiled, flat dynamic arguments) for this call, compiling on a cache miss."""
        options = config.call_options()
        backend = backends.get(self.backend or options.backend or backends.default_name())
        index64 = self.index64 or options.index64
        scan = self.scan or options.scan
        # Fast path for the common call: positional NumPy arrays only.  Their specs follow from
        # (shape, dtype) and the x64 flag alone, so no tree flattening is needed; the key is
        # the one __call__ builds (the backend as asked for: None for the default).
        fast_key = None
        if not kwargs and not self.static_argnums:
            fast_key = [jaxcompat.x64_enabled(), self.backend or options.backend, index64, scan]
            for a in args:
                if type(a) is not np.ndarray:
                    fast_key = None
                    break
                fast_key += (a.shape, a.dtype)
            if fast_key is not None:
                fast_key = tuple(fast_key)
                compiled = self.fast_cache.get(fast_key)
                if compiled is not None:
                    return compiled, args
        static_pos, static_kw, dyn_args, dyn_kwargs = self._split(args, kwargs)
        leaves, treedef = jax.tree_util.tree_flatten((dyn_args, dyn_kwargs))
        try:
            specs = tuple(leaf_spec(x) for x in leaves)
        except NotAnArray as e:
            raise TypeError(
                f"Error interpreting argument to {self.fun} as an abstract array. The problematic value is of "
                f"type {type(e.value)} and was passed to the function at path {self._path_of(e.value, args, kwargs)}."
                f"\nThis typically means that a jit-wrapped function was called with a non-array argument, and "
                f"this argument was not marked as static using the static_argnums or static_argnames parameters "
                f"of fusejit.jit.") from None
        key = (treedef, specs, static_pos, static_kw, jaxcompat.x64_enabled(), backend.name, index64, scan)
        compiled = self.cache.get(key)
        if compiled is None:
            with self.lock:
                compiled = self.cache.get(key)
                if compiled is None:
                    compiled = self._compile(backend, treedef, specs, static_pos, static_kw, args, kwargs, index64,
                                                  scan)
                    self.cache[key] = compiled
                    if isinstance(compiled, Tiered):
                        compiled.on_ready = functools.partial(self._replace, compiled)
        if fast_key is not None:
            self.fast_cache[fast_key] = compiled
        if compiled.key_inputs:
            leaves = [jax.random.key_data(x) if k in compiled.key_inputs else x for k, x in enumerate(leaves)]
        return compiled, leaves

    def _replace(self, tiered: Tiered, compiled: Compiled) -> None:
        """The compiled program takes the place of the interpreted one in the caches."""
        for table in (self.cache, self.fast_cache):
            for k, v in list(table.items()):
                if v is tiered:
                    table[k] = compiled

    def _path_of(self, value, args, kwargs) -> str:
        """Where `value` sits among the arguments, named as jax.jit names it (`x`, `b['k']`)."""
        names = []
        if self.signature is not None:
            names = [p.name for p in self.signature.parameters.values()
                     if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        for where, tree in [(names[k] if k < len(names) else f"args[{k}]", a) for k, a in enumerate(args)] + \
                list(kwargs.items()):
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
                if leaf is value:
                    return where + jax.tree_util.keystr(path)
        return "(unknown)"

    def _compile(self, backend, treedef, specs, static_pos, static_kw, args, kwargs, index64, scan) -> Compiled:
        self.trace_count += 1
        out_tree = []
        nargs = len(args)
        static_at = dict(static_pos)

        def flat_fun(*flat):
            dyn_args, dyn_kwargs = jax.tree_util.tree_unflatten(treedef, flat)
            it = iter(dyn_args)
            full = [static_at[k] if k in static_at else next(it) for k in range(nargs)]
            full += list(it)
            out = self.fun(*full, **dyn_kwargs, **dict(static_kw))
            leaves, tree = jax.tree_util.tree_flatten(out)
            out_tree.append(tree)
            return leaves

        jaxcompat.name_traced_function(flat_fun, self.fun, args, kwargs, self.static_argnums, self.static_argnames)
        structs = [jax.ShapeDtypeStruct(shape, dtype, weak_type=weak) for shape, dtype, weak in specs]
        closed = jax.make_jaxpr(flat_fun)(*structs)
        graph = graph_from_jaxpr(closed, jaxcompat.caller_line())
        halves.check_backend(graph, backend)
        compiled = compile_tiered(graph, backend, getattr(self.fun, "__name__", "fn"),
                                  force_index64=index64, scan=scan)
        compiled.key_inputs = frozenset(k for k, (_, dtype, _) in enumerate(specs) if keys.is_key_dtype(dtype))
        compiled.set_out_tree(out_tree[0], [a.dtype if keys.is_key(a) else None for a in closed.out_avals])
        if isinstance(compiled, Compiled):
            config.debug(1, f"compiled {getattr(self.fun, '__name__', 'fn')} for {backend.name}: "
                            f"{compiled.kernel_count} kernel launch(es) per call")
        return compiled

    # ---- calls ----
    def run(self, *args, **kwargs):
        """Call without the diff against jax.jit (that `check=True` or FUSEJIT_CHECK ask for)."""
        try:
            compiled, leaves = self.specialize(args, kwargs)
        except InsideTrace:
            return self.fun(*args, **kwargs)
        try:
            flat = compiled.run(leaves)
        except OverflowError as e:
            raise self._overflow(leaves, args, kwargs) or e
        return compiled.unflatten(flat)

    def _overflow(self, leaves, args, kwargs) -> OverflowError | None:
        """jax.jit's error for a Python int argument that its weak integer type (int32, or int64
        with 64-bit types on) cannot hold, naming the argument; None when no argument is one."""
        bounds = np.iinfo(jaxcompat.canonical_dtype(np.int64))  # a Python int's type (leaf_spec)
        for leaf in leaves:
            if type(leaf) is int and not bounds.min <= leaf <= bounds.max:
                return OverflowError(
                    f"An overflow was encountered while parsing an argument to a jitted computation, whose "
                    f"argument path is {self._path_of(leaf, args, kwargs)}. Got {type(leaf)} with value {leaf}")
        return None

    def __call__(self, *args, **kwargs):
        options = config.call_options()
        if not kwargs and not self.static_argnums and not (self.check or options.check):
            # The steady-state path: positional NumPy arrays seen before (see specialize).
            key = [jaxcompat.x64_enabled(), self.backend or options.backend, self.index64 or options.index64,
                   self.scan or options.scan]
            for a in args:
                if type(a) is not np.ndarray:
                    break
                key += (a.shape, a.dtype)
            else:
                compiled = self.fast_cache.get(tuple(key))
                if compiled is not None:
                    return compiled.unflatten(compiled.run(args, options.debug))
        result = self.run(*args, **kwargs)
        if self.check or options.check:
            from .check import judge
            report = judge(self, args, kwargs, result)
            if not report.ok:
                from .errors import MismatchError
                raise MismatchError(report)
        return result

    def reference(self, *args, **kwargs):
        """jax.jit of the same function on the same arguments."""
        if self._reference is None:
            self._reference = jax.jit(self.fun, static_argnums=self.static_argnums,
                                      static_argnames=self.static_argnames)
        from .check import to_jax_args
        args, kwargs = to_jax_args(args, kwargs)
        return self._reference(*args, **kwargs)

    def lower(self, *args, **kwargs) -> Compiled:
        """The Compiled for these arguments; `.as_text()` shows graph, fusion plan and kernels.
        (It waits for a module compiling in the background.)"""
        compiled = self.specialize(args, kwargs)[0]
        return compiled.wait() if isinstance(compiled, Tiered) else compiled

    def __get__(self, obj, objtype=None):  # usable on methods, like jax.jit
        if obj is None:
            return self
        return functools.partial(self, obj)

    def __repr__(self):
        return f"<fusejit.jit {getattr(self.fun, '__qualname__', self.fun)}>"


def jit(fun=None, *, static_argnums=(), static_argnames=(), backend=None, check=False, index64=False, scan=None,
        donate_argnums=(), donate_argnames=()):
    """Compile a JAX function to fused CUDA kernels (run on the GPU through CuPy, or on the CPU).

    Usable bare (`@fusejit.jit`) or with keywords (`@fusejit.jit(static_argnums=(1,))`).
    `donate_argnums`/`donate_argnames` are accepted as jax.jit accepts them and change nothing:
    fusejit never writes into its arguments."""
    options = dict(static_argnums=static_argnums, static_argnames=static_argnames, backend=backend, check=check,
                   index64=index64, scan=scan, donate_argnums=donate_argnums, donate_argnames=donate_argnames)
    if fun is None:
        return functools.partial(jit, **options)
    return Jitted(fun, **options)
