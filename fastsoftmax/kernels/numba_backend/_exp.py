"""A vectorisable ``exp`` for Numba kernels, in plain arithmetic.

PyPI's Numba/llvmlite has no SVML, so ``np.exp`` inside a loop is a scalar
libm call and the loop does not vectorise.  This ``exp`` uses only
multiplies, adds, compares/selects and integer shifts, which LLVM turns into
AVX2 (or SSE2) vector code when the surrounding loop has unit stride.

Algorithm (Cody-Waite range reduction, then a polynomial):

* ``n = round(x / ln 2)`` with the "shifter" trick: adding ``1.5 * 2**p``
  (``p`` = mantissa bits) rounds to an integer that also sits in the low bits
  of the sum, so the integer is read back by a bit cast (no float->int
  conversion, which AVX2 lacks for 64-bit integers);
* ``r = x - n*ln2_hi - n*ln2_lo`` with ``|r| <= ln2/2`` (``ln2_hi`` has
  trailing zero bits, so ``n*ln2_hi`` is exact);
* ``exp(r)`` by a polynomial (degree 11 for float64, 6 for float32, fitted
  for the least maximum relative error: far below half an ulp) in Horner form;
* ``2**n`` built from bits as ``2**n1 * 2**n2`` with ``n1 = floor(n/2)``, so
  that the result overflows to ``inf`` and underflows through the subnormal
  range with a single final rounding, as ``np.exp`` does.

Special values: ``NaN -> NaN`` (the clamps below are written so that a NaN
passes through them), ``-inf -> 0``, ``+inf -> inf``.  Measured accuracy: see
``tests/test_numba_backend.py`` (about 1 ulp in both precisions).

Never compile these with ``fastmath``'s ``reassoc``: LLVM would fold
``(t + SHIFT) - SHIFT`` to ``t`` and break the rounding trick.  They are
plain ``njit`` functions (not inlined at the Numba level), so LLVM inlines
them into the calling loop with their own strict floating-point flags,
whatever flags the caller uses.
"""
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

__all__ = ["exp64", "exp32", "fexp", "fexp_fast", "fast_min", "fmax", "fmin", "vexp", "like"]


@intrinsic
def _pow2_from_shifted(typingctx, kd):
    """``2.0**n`` from ``kd = n + SHIFT`` (``SHIFT = 1.5 * 2**mant``).

    ``kd``'s bits are ``SHIFT``'s bits plus ``n`` in two's complement, and the
    low ``bits - mant`` bits of ``SHIFT`` are zero, so ``bits(kd) << mant``
    is ``n << mant``; adding the exponent bias gives the bits of ``2.0**n``
    (for a normal result, ``-bias < n <= bias``).  Done in LLVM IR at the
    float's own width: Numba would widen int32 arithmetic to int64.
    """
    if kd == types.float64:
        fty, ity, mant, bias = ir.DoubleType(), ir.IntType(64), 52, 1023
    elif kd == types.float32:
        fty, ity, mant, bias = ir.FloatType(), ir.IntType(32), 23, 127
    else:
        return None
    sig = kd(kd)

    def codegen(context, builder, signature, args):
        bits = builder.bitcast(args[0], ity)
        bits = builder.shl(bits, ir.Constant(ity, mant))
        bits = builder.add(bits, ir.Constant(ity, bias << mant))
        return builder.bitcast(bits, fty)

    return sig, codegen


@intrinsic
def _always_inline(typingctx):
    """Mark the calling function ``alwaysinline`` for LLVM.

    These functions are compiled on their own (their strict floating-point
    flags must not take the caller's), and LLVM's inliner then decides
    whether a call is inlined.  In a large kernel it may not: Numba 0.68 /
    LLVM 22 left four calls of ``fexp_np`` out of line in the serial
    C-contiguous rows kernel, whose loops then ran one scalar call per
    element (float32 (64, 1000) softmax: 220 us against 28 us).  A call
    that is not inlined also keeps its loop from vectorising, so every
    call here must be; ``alwaysinline`` makes that so."""
    def codegen(context, builder, signature, args):
        attrs = builder.function.attributes
        attrs.discard("noinline")
        attrs.add("alwaysinline")
        return context.get_dummy_value()

    return types.none(), codegen


@intrinsic
def fmax(typingctx, a, b):
    """``llvm.maxnum``: the larger of two floats, ignoring a NaN operand.

    Unlike a compare-and-select, LLVM vectorises a ``maxnum`` reduction
    without fast-math flags.  A NaN is ignored here; the kernels let it
    propagate through the sum instead (``exp(NaN - m)`` is NaN).
    """
    if a != b or a not in (types.float32, types.float64):
        return None

    def codegen(context, builder, signature, args):
        ty = args[0].type
        fn = builder.module.declare_intrinsic("llvm.maxnum", [ty], ir.FunctionType(ty, [ty, ty]))
        return builder.call(fn, args)

    return a(a, b), codegen


@intrinsic
def fmin(typingctx, a, b):
    """``llvm.minnum``: the smaller of two floats, ignoring a NaN operand."""
    if a != b or a not in (types.float32, types.float64):
        return None

    def codegen(context, builder, signature, args):
        ty = args[0].type
        fn = builder.module.declare_intrinsic("llvm.minnum", [ty], ir.FunctionType(ty, [ty, ty]))
        return builder.call(fn, args)

    return a(a, b), codegen


def like(value, ref):
    """``value`` converted to the float type of ``ref`` (Numba only)."""
    raise NotImplementedError("like is only callable from Numba-compiled code")


@overload(like, jit_options={"cache": True})
def _like_impl(value, ref):
    if ref == types.float32:
        return lambda value, ref: np.float32(value)
    if ref == types.float64:
        return lambda value, ref: np.float64(value)
    return None


# ---------------------------------------------------------------- float64
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01   # 0x3fe62e42fee00000: 21 trailing zero bits
_LN2_LO = 1.90821492927058770002e-10
_SHIFT64 = 6755399441055744.0           # 1.5 * 2**52
# clamps: below -746 the result is 0, above 710 it is inf (exp's true range
# is (-745.13, 709.78) for non-zero, finite results)
_LO64 = -746.0
_HI64 = 710.0

# exp(r) = 1 + r + r**2 * q(r) on |r| <= ln2/2, q of degree 9 fitted for the
# least maximum relative error of exp (a near-minimax fit, made in 50-digit
# arithmetic): 1.1e-17 (0.1 ulp) with these rounded coefficients, as good
# as the degree-13 Taylor polynomial and two multiply-adds shorter
_Q64 = (0.5000000000000011, 0.16666666666666413, 0.04166666666653026, 0.008333333333494336,
        0.0013888888943599687, 0.00019841269506777484, 2.4801493134196687e-05,
        2.755758626393594e-06, 2.7630234605581015e-07, 2.500007413439555e-08)
_C2, _C3, _C4, _C5, _C6, _C7, _C8, _C9, _C10, _C11 = _Q64


@njit(cache=True, fastmath={"contract"})
def _reduce64(t, shift):
    """Range reduction and polynomial: ``exp(t) = p * 2**n``, ``kd = n + shift``
    (``shift``: 1.5 * 2**52, plus a bias the caller wants in kd's low bits)."""
    _always_inline()
    kd = t * _LOG2E + shift
    nf = kd - shift
    r = t - nf * _LN2_HI
    r = r - nf * _LN2_LO
    q = _C11
    q = q * r + _C10
    q = q * r + _C9
    q = q * r + _C8
    q = q * r + _C7
    q = q * r + _C6
    q = q * r + _C5
    q = q * r + _C4
    q = q * r + _C3
    q = q * r + _C2
    p = 1.0 + (r + (r * r) * q)
    return p, nf, kd


@njit(cache=True, fastmath={"contract"})
def exp64(x):
    """``exp(x)`` in float64, about 1 ulp, vectorisable, for every input."""
    _always_inline()
    # NaN compares false, so it passes both clamps unchanged
    t = _LO64 if x < _LO64 else x
    t = _HI64 if t > _HI64 else t
    p, nf, kd = _reduce64(t, _SHIFT64)
    # 2**n = 2**n1 * 2**n2, n1 = floor(n / 2): each factor is a normal number
    n1 = np.floor(nf * 0.5)
    n2 = nf - n1
    s1 = _pow2_from_shifted(n1 + _SHIFT64)
    s2 = _pow2_from_shifted(n2 + _SHIFT64)
    return (p * s1) * s2


@njit(cache=True, fastmath={"contract"})
def exp64_fast(x):
    """``exp(x)`` for ``FAST_MIN64 <= x <= 709`` or NaN only (no clamps, one scaling)."""
    _always_inline()
    p, nf, kd = _reduce64(x, _SHIFT64)
    return p * _pow2_from_shifted(kd)


# ---------------------------------------------------------------- float32
_LOG2E_F = np.float32(1.44269504)
_LN2_HI_F = np.float32(0.693359375)     # 0x3f318000
_LN2_LO_F = np.float32(-2.12194440e-4)
_SHIFT32 = np.float32(12582912.0)       # 1.5 * 2**23
_LO32 = np.float32(-104.0)
_HI32 = np.float32(89.0)
_HALF_F = np.float32(0.5)
_ONE_F = np.float32(1.0)
# q of degree 4, fitted as for float64 (rounded to float32): 3.8e-9 (0.06 ulp)
_D2, _D3, _D4, _D5, _D6 = [np.float32(c) for c in (0.4999999403953552, 0.1666652113199234,
                                                   0.04166838899254799, 0.008368710055947304,
                                                   0.0013814610429108143)]


@njit(cache=True, fastmath={"contract"})
def _reduce32(t, shift):
    """As :func:`_reduce64`, in float32 (``shift``: 1.5 * 2**23 plus a bias)."""
    _always_inline()
    kd = t * _LOG2E_F + shift
    nf = kd - shift
    r = t - nf * _LN2_HI_F
    r = r - nf * _LN2_LO_F
    q = _D6
    q = q * r + _D5
    q = q * r + _D4
    q = q * r + _D3
    q = q * r + _D2
    p = _ONE_F + (r + (r * r) * q)
    return p, nf, kd


@njit(cache=True, fastmath={"contract"})
def exp32(x):
    """``exp(x)`` in float32, about 1 ulp, vectorisable, for every input."""
    _always_inline()
    t = _LO32 if x < _LO32 else x
    t = _HI32 if t > _HI32 else t
    p, nf, kd = _reduce32(t, _SHIFT32)
    n1 = np.floor(nf * _HALF_F)
    n2 = nf - n1
    s1 = _pow2_from_shifted(n1 + _SHIFT32)
    s2 = _pow2_from_shifted(n2 + _SHIFT32)
    return (p * s1) * s2


@njit(cache=True, fastmath={"contract"})
def exp32_fast(x):
    """``exp(x)`` for ``FAST_MIN32 <= x <= 88`` or NaN only (no clamps, one scaling)."""
    _always_inline()
    p, nf, kd = _reduce32(x, _SHIFT32)
    return p * _pow2_from_shifted(kd)


def _inlined(fn):
    """An overload's implementation: ``fn`` itself, always inlined."""
    def impl(x):
        _always_inline()
        return fn(x)
    return impl


#: lower bound of the inputs ``fexp_fast`` accepts (2**n stays a normal number)
FAST_MIN32 = np.float32(-87.0)
FAST_MIN64 = -708.0


def fast_min(x):
    """The smallest argument ``fexp_fast`` accepts, in ``x``'s type (Numba only)."""
    raise NotImplementedError("fast_min is only callable from Numba-compiled code")


@overload(fast_min, jit_options={"cache": True})
def _fast_min_impl(x):
    if x == types.float32:
        return lambda x: FAST_MIN32
    if x == types.float64:
        return lambda x: FAST_MIN64
    return None


def fexp_fast(x):
    """``exp(x)`` for ``fast_min(x) <= x <= 88`` or NaN (Numba only): about
    half the work of :func:`fexp`; callers check the range once per row."""
    raise NotImplementedError("fexp_fast is only callable from Numba-compiled code")


@overload(fexp_fast, jit_options={"cache": True})
def _fexp_fast_impl(x):
    if x == types.float32:
        return _inlined(exp32_fast)
    if x == types.float64:
        return _inlined(exp64_fast)
    return None


def fexp(x):
    """``exp`` of a float32 or float64 scalar in its own precision (Numba only)."""
    raise NotImplementedError("fexp is only callable from Numba-compiled code")


@overload(fexp, jit_options={"cache": True})
def _fexp_impl(x):
    if x == types.float32:
        return _inlined(exp32)
    if x == types.float64:
        return _inlined(exp64)
    return None


@njit(cache=True)
def vexp(x, out):
    """``out[:] = exp(x)`` for 1-D arrays (testing helper)."""
    for i in range(x.shape[0]):
        out[i] = fexp(x[i])


@njit(cache=True)
def vexp_fast(x, out):
    """``out[:] = exp(x)`` by ``fexp_fast`` (testing helper; see its range)."""
    for i in range(x.shape[0]):
        out[i] = fexp_fast(x[i])


# ------------------------------------------- non-positive arguments
# ``exp(x)`` for ``x <= 0`` (any such x, -inf included) or NaN, without the
# clamp above and the two-factor scaling of ``exp32``/``exp64``: the argument
# is only clamped from below (to where the result is 0), and ``2**n`` is
# built as ``2**(n + 64)`` (a normal number for every n reached) times
# ``2**-64``, so that a subnormal result still gets a single rounding.  Same
# reduction and polynomial, hence the same results as ``fexp`` on its range.
_NP_OFF = 64.0
_SHIFT64_NP = _SHIFT64 + _NP_OFF
_SHIFT32_NP = np.float32(float(_SHIFT32) + _NP_OFF)
_NP_LO64 = -750.0
_NP_LO32 = np.float32(-110.0)
_NP_SCALE64 = 2.0 ** -64
_NP_SCALE32 = np.float32(2.0 ** -64)


@njit(cache=True, fastmath={"contract"})
def exp64_np(x):
    """``exp(x)`` in float64 for ``x <= 0`` or NaN (also exact up to ``x = 600``)."""
    _always_inline()
    t = _NP_LO64 if x < _NP_LO64 else x      # NaN passes unchanged
    p, nf, kd = _reduce64(t, _SHIFT64_NP)
    return (p * _pow2_from_shifted(kd)) * _NP_SCALE64


@njit(cache=True, fastmath={"contract"})
def exp32_np(x):
    """``exp(x)`` in float32 for ``x <= 0`` or NaN (also exact up to ``x = 40``)."""
    _always_inline()
    t = _NP_LO32 if x < _NP_LO32 else x
    p, nf, kd = _reduce32(t, _SHIFT32_NP)
    return (p * _pow2_from_shifted(kd)) * _NP_SCALE32


def fexp_np(x):
    """``exp(x)`` for ``x <= 0`` (``-inf`` included) or NaN (Numba only):
    as :func:`fexp` there, with less work (no upper clamp, one scaling)."""
    raise NotImplementedError("fexp_np is only callable from Numba-compiled code")


@overload(fexp_np, jit_options={"cache": True})
def _fexp_np_impl(x):
    if x == types.float32:
        return _inlined(exp32_np)
    if x == types.float64:
        return _inlined(exp64_np)
    return None


@njit(cache=True)
def vexp_np(x, out):
    """``out[:] = exp(x)`` by ``fexp_np`` (testing helper; see its range)."""
    for i in range(x.shape[0]):
        out[i] = fexp_np(x[i])


# ------------------------------------------------------------------- log
@intrinsic
def _reinterpret64(typingctx, v):
    """The int64 with the bits of a float64, or the float64 with those of an int64."""
    if v == types.float64:
        res, lty = types.int64, ir.IntType(64)
    elif v == types.int64:
        res, lty = types.float64, ir.DoubleType()
    else:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], lty)

    return res(v), codegen


_SQRT_HALF_BITS = 0x3fe6a09e667f3bcd      # bits of sqrt(2)/2
_MAGIC = 6755399441055744.0               # 1.5 * 2**52: small ints in its low bits
_MAGIC_BITS = int(np.float64(_MAGIC).view(np.int64))
_LN2_HI = 6.93147180369123816490e-01      # ln 2 in two parts (fdlibm's)
_LN2_LO = 1.90821492927058770002e-10
_LG1, _LG2, _LG3, _LG4 = (6.666666666666735130e-01, 3.999999999940941908e-01,
                          2.857142874366239149e-01, 2.222219843214978396e-01)
_LG5, _LG6, _LG7 = (1.818357216161805012e-01, 1.531383769920937332e-01,
                    1.479819860511658591e-01)


@njit(cache=True, error_model="numpy")   # (a checked division stops vectorisation)
def log64_ge1(x):
    """``log(x)`` in float64 for a finite ``x >= 1`` (else meaningless: the
    caller uses ``np.log`` for those), in plain arithmetic so that a loop of
    them vectorises.

    fdlibm's algorithm (as the Cython backend's ``log_vd_ge1``): ``x = 2**e
    * m`` with ``sqrt(2)/2 <= m < sqrt(2)``, ``f = m - 1``, ``s = f / (2 +
    f)``, ``log(m) = f - s * (f - R(s*s))`` with fdlibm's polynomial, and
    ``e * ln 2`` in two parts; error below 1 ulp.  ``e`` goes to float64
    through the low bits of ``1.5 * 2**52`` (no 64-bit integer conversion,
    which AVX2 lacks).
    """
    _always_inline()
    b = _reinterpret64(x)
    e = (b - _SQRT_HALF_BITS) >> 52
    f = _reinterpret64(b - (e << 52)) - 1.0
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    t1 = w * (_LG2 + w * (_LG4 + w * _LG6))
    t2 = z * (_LG1 + w * (_LG3 + w * (_LG5 + w * _LG7)))
    r = t2 + t1
    hfsq = 0.5 * f * f
    de = _reinterpret64(_MAGIC_BITS + e) - _MAGIC
    return de * _LN2_HI - ((hfsq - (s * (hfsq + r) + de * _LN2_LO)) - f)


@njit(cache=True, error_model="numpy")
def vlog_ge1(x, out):
    """``out[:] = log64_ge1(x)`` (testing helper; see its range)."""
    for i in range(x.shape[0]):
        out[i] = log64_ge1(x[i])
