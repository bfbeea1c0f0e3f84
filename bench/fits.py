"""`python -m bench.fits`: the polynomial coefficients of the host's float32 math, refitted.

kernels/cpu_prelude.h computes the logistic function, expm1, log, erf, erfc, atan2 and
erfinv of a float with polynomials fitted here, by least squares on Chebyshev points
(NumPy's lstsq): this prints each table as the header spells it, and `--check` exits 1 if
the header's tables differ from a refit (tests/test_elementwise.py runs that check).
LAPACK's arithmetic differs between builds and processors in the last bits, which the
ill-conditioned monomial coefficients of a degree-16 fit magnify (to 3e-8 of a coefficient
between two machines), so the check compares the polynomials' values on [-1, 1] (to
CHECK_RTOL) rather than the coefficients' bits.  The promise the tables keep (one ULP from
the exact result over every float) is checked by bench/ulp_sweep.py, not here.
"""
from __future__ import annotations

import argparse
import pathlib
import re
import sys

import numpy as np
import scipy.special

HEADER = pathlib.Path(__file__).resolve().parent.parent / "kernels" / "cpu_prelude.h"
POINTS = 40001


def _chebyshev_points() -> np.ndarray:
    return np.cos(np.linspace(0.0, np.pi, POINTS))


def _relative_fit(t: np.ndarray, f: np.ndarray, degree: int) -> np.ndarray:
    """Monomial coefficients in t, highest first, minimising the relative error to f."""
    vander = np.polynomial.chebyshev.chebvander(t, degree)
    c, *_ = np.linalg.lstsq(vander / f[:, None], np.ones_like(f), rcond=None)
    return np.polynomial.chebyshev.cheb2poly(c)[::-1]


def logistic() -> list[float]:
    """w(r) = (e^r - 1 - r) / r^2 on |r| <= ln(2)/2 in float32, degree 5, minimising the
    absolute error of r^2 w (fj_logistic_coefficients)."""
    r = _chebyshev_points() * (np.log(2.0) / 2 * 1.0005)
    r = r[np.abs(r) > 1e-6]
    w = (np.expm1(r) - r) / r**2
    vander = np.vander(r, 6, increasing=True) * (r**2)[:, None]
    c, *_ = np.linalg.lstsq(vander, w * r**2, rcond=None)
    return [float(v) for v in c[::-1].astype(np.float32)]


def expm1() -> list[float]:
    """w(r) = (e^r - 1 - r) / r^2 on |r| <= ln(2)/2 in float32, degree 5, minimising its
    relative error (fj_expm1_coefficients: r^2 w is e^r - 1's low part near 0)."""
    r = _chebyshev_points() * (np.log(2.0) / 2 * 1.0005)
    r = r[np.abs(r) > 1e-6]
    w = (np.expm1(r) - r) / r**2
    c, *_ = np.linalg.lstsq(np.vander(r, 6) / w[:, None], np.ones_like(w), rcond=None)
    return [float(v) for v in c.astype(np.float32)]


ERF_EDGE = 3.9  # erf(a) / a in u = a^2 (2 / 3.9^2) - 1


def erf() -> list[float]:
    """erf(a) / a for 0 <= a <= 3.9 in u = 2 a^2 / 3.9^2 - 1, degree 16 (fj_erf_coefficients)."""
    t = _chebyshev_points()
    a = np.sqrt((t + 1.0) * ERF_EDGE**2 / 2.0)
    safe = np.where(a > 0.0, a, 1.0)
    f = np.where(a > 0.0, scipy.special.erf(safe) / safe, 2.0 / np.sqrt(np.pi))
    return [float(v) for v in _relative_fit(t, f, 16)]


ERFCX_SCALE, ERFCX_EDGE = 0.4, 10.1  # s = 1 / (1 + 0.4 y) for 0 <= y <= 10.1


def erfcx_map() -> tuple[float, float]:
    """(A, B): u = A s + B maps s from 1 / (1 + 0.4 * 10.1) .. 1 onto -1 .. 1."""
    low = 1.0 / (1.0 + ERFCX_SCALE * ERFCX_EDGE)
    return 2.0 / (1.0 - low), -(1.0 + low) / (1.0 - low)


def erfcx() -> list[float]:
    """erfcx(y) = e^(y^2) erfc(y) for 0 <= y <= 10.1 in u = A / (1 + 0.4 y) + B, degree 10
    (fj_erfcx_coefficients)."""
    t = _chebyshev_points()
    scale, offset = erfcx_map()
    y = (1.0 / ((t - offset) / scale) - 1.0) / ERFCX_SCALE
    return [float(v) for v in _relative_fit(t, scipy.special.erfcx(y), 10)]


ATAN_EDGE = 3.0 - 2.0 * np.sqrt(2.0)  # tan(pi/8)^2: atan(t) / t in u = s (2 / edge) - 1, s = t^2


def atan() -> list[float]:
    """atan(t) / t for t^2 = s <= tan(pi/8)^2 in u = s (6 + 4 sqrt 2) - 1, degree 5
    (fj_atan_coefficients)."""
    t = _chebyshev_points()
    root = np.sqrt((t + 1.0) / 2.0 * ATAN_EDGE)
    safe = np.where(root > 0.0, root, 1.0)
    f = np.where(root > 0.0, np.arctan(safe) / safe, 1.0)
    return [float(v) for v in _relative_fit(t, f, 5)]


LOG_LOW, LOG_HIGH = np.sqrt(0.5) - 1.0, np.sqrt(2.0) - 1.0  # f = m - 1, m in [sqrt(1/2), sqrt(2))


def log() -> list[float]:
    """Q(f) = (log(1 + f) - f) / f^2 for f in [sqrt(1/2) - 1, sqrt(2) - 1], degree 9 in f, in
    float32, minimising its relative error (fj_log_coefficients)."""
    t = _chebyshev_points()
    f = (t + 1.0) / 2.0 * (LOG_HIGH - LOG_LOW) * 1.0005 + LOG_LOW * 1.0005
    f = f[np.abs(f) > 1e-4]
    q = (np.log1p(f) - f) / f**2
    c, *_ = np.linalg.lstsq(np.vander(f, 10) / q[:, None], np.ones_like(q), rcond=None)
    return [float(v) for v in c.astype(np.float32)]


ERFINV_EDGE = 4.0  # s = sqrt(-log(1 - y^2)) <= sqrt(23 ln 2) < 4 for a float y below 1


def erfinv() -> list[float]:
    """erfinv(y) / y in u = s / 2 - 1, s = sqrt(-log(1 - y^2)) from 0 to 4, degree 20
    (fj_erfinv_coefficients): a function of s smooth up to the largest float below 1."""
    t = _chebyshev_points()
    s = (t + 1.0) / 2.0 * ERFINV_EDGE
    y = np.sqrt(-np.expm1(-s * s))
    safe = np.where(y > 0.0, y, 1.0)
    f = np.where(y > 0.0, scipy.special.erfinv(safe) / safe, np.sqrt(np.pi) / 2.0)
    return [float(v) for v in _relative_fit(t, f, 20)]


TABLES = {"fj_logistic_coefficients": logistic, "fj_expm1_coefficients": expm1, "fj_log_coefficients": log, "fj_erf_coefficients": erf, "fj_erfcx_coefficients": erfcx,
          "fj_atan_coefficients": atan, "fj_erfinv_coefficients": erfinv}


def header_table(name: str, text: str | None = None) -> list[float]:
    """The numbers of `static constexpr ... name[] = {...};` in kernels/cpu_prelude.h."""
    text = HEADER.read_text() if text is None else text
    match = re.search(re.escape(name) + r"\[\]\s*=\s*\{([^}]*)\}", text)
    if match is None:
        raise KeyError(f"{name} is not a table of {HEADER}")
    numbers = re.sub(r"//[^\n]*", "", match.group(1))
    return [float.fromhex(v.strip().rstrip("f")) if "0x" in v else float(v)
            for v in numbers.split(",") if v.strip()]


def spell(name: str, values: list[float]) -> str:
    if name in ("fj_logistic_coefficients", "fj_expm1_coefficients", "fj_log_coefficients"):
        return ", ".join(np.float32(v).item().hex().replace("0000000p", "p") + "f" for v in values)
    return ", ".join(repr(v) for v in values)


CHECK_RTOL = 1e-12  # the same polynomial, up to rounding (measured: 6e-15 between two machines)


def same_polynomial(a: list[float], b: list[float]) -> bool:
    """Whether two coefficient tables (highest first) have the same values on [-1, 1]."""
    if len(a) != len(b):
        return False
    t = _chebyshev_points()
    pa, pb = np.polyval(np.asarray(a), t), np.polyval(np.asarray(b), t)
    return bool(np.all(np.abs(pa - pb) <= CHECK_RTOL * np.abs(pb)))


def mismatches() -> list[str]:
    """The tables whose header polynomial differs from a refit's."""
    text = HEADER.read_text()
    return [name for name, fit in TABLES.items() if not same_polynomial(header_table(name, text), fit())]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the header's tables differ from a refit")
    args = parser.parse_args(argv)
    if args.check:
        bad = mismatches()
        for name in bad:
            print(f"{name}: kernels/cpu_prelude.h differs from the refit", file=sys.stderr)
        return 1 if bad else 0
    scale, offset = erfcx_map()
    print(f"erfcx map: u = {scale!r} s + {offset!r}")
    for name, fit in TABLES.items():
        print(f"{name}[] = {{{spell(name, fit())}}};")
    return 0


if __name__ == "__main__":
    sys.exit(main())
