"""Primitives computed by the Python function JAX's own lowering traces (`mlir.lower_fun`):
that function, applied to the equation's operands and params under jax.make_jaxpr, is a jaxpr
of primitives fusejit runs, lowered in the equation's place.  One row per primitive; like
jaxcompat.py, this reads JAX internals that may move between versions.

  igamma, igammac, igamma_grad_a, random_gamma_grad, regularized_incomplete_beta
      (jax.scipy.special.gammainc, gammaincc, betainc, ...): series and continued fractions
  bessel_i0e (i0e, i0)
  lu_pivots_to_permutation (jax.scipy.linalg.lu_solve, lu_factor's permutation)
  random_gamma (jax.random.gamma, beta, dirichlet, t, chisquare, ball): rejection sampling
"""
from __future__ import annotations

import functools

from .jaxcompat import traced_body


def _special(name: str):
    def fun(*args, **params):
        from jax._src.lax import special
        return special._up_and_broadcast(getattr(special, name))(*args)
    return fun


def _bessel_i0e(x):
    from jax._src.lax import special
    return special.bessel_i0e_impl(x)


def _lu_pivots_to_permutation(pivots, *, permutation_size):
    from jax._src.lax import linalg
    return linalg._generic_lu_pivots_to_permutation(pivots, permutation_size=permutation_size)


def _random_gamma(key, a, *, log_space):
    from jax._src.random import core
    return core._gamma_impl(key, a, log_space=log_space, use_vmap=True)


# primitive -> fun(*operands, **params) -> result(s), as the primitive's lowering computes them
EXPANSIONS = {
    "igamma": _special("igamma_impl"),
    "igammac": _special("igammac_impl"),
    "igamma_grad_a": _special("igamma_grad_a_impl"),
    "random_gamma_grad": _special("random_gamma_grad_impl"),
    "regularized_incomplete_beta": _special("regularized_incomplete_beta_impl"),
    "bessel_i0e": _bessel_i0e,
    "lu_pivots_to_permutation": _lu_pivots_to_permutation,
    "random_gamma": _random_gamma,
}


def expansion(eqn):
    """(jaxpr, consts, invars) computing the equation by its row of EXPANSIONS, or None."""
    fun = EXPANSIONS.get(eqn.primitive.name)
    if fun is None:
        return None
    return traced_body(functools.partial(fun, **eqn.params), eqn)
