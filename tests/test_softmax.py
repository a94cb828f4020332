"""Conformance suite for softmax / log_softmax, run on every available backend.

Each backend is compared with SciPy, with a float64 NumPy reference computed
on the original (un-laid-out) array, and with exact expectations (SciPy's own
test values, computed with mpmath).
"""
import math
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import fastsoftmax
from fastsoftmax import log_softmax, softmax
from fastsoftmax._validate import AxisError

from conftest import AVAILABLE_BACKENDS

sc = pytest.importorskip("scipy.special")

FUNCS = {"softmax": (softmax, sc.softmax), "log_softmax": (log_softmax, sc.log_softmax)}
RTOL = {np.float32: 1e-5, np.float64: 1e-13}
TINY = {np.float32: np.finfo(np.float32).tiny, np.float64: np.finfo(np.float64).tiny}


def reference(x, axis, log):
    """float64 SciPy formula on the original array (independent of our layout code)."""
    x = np.asarray(x, dtype=np.float64)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return (sc.log_softmax if log else sc.softmax)(x, axis=axis)


def check_close(got, x, axis, log, dtype, rtol=None):
    want = reference(x, axis, log)
    rtol = RTOL[dtype] if rtol is None else rtol
    if log:
        # (x - m) - log(sum) cancels near 0: an absolute error of a few ulps of
        # the operands is all any implementation (SciPy included) achieves there
        finite = np.abs(np.asarray(x, dtype=np.float64))
        finite = finite[np.isfinite(finite)]
        scale = max(1.0, float(finite.max()) if finite.size else 1.0)
        atol = 8 * np.finfo(dtype).eps * scale
    else:
        # softmax values below the smallest normal lose relative precision in
        # every implementation (SciPy's own float32 path included)
        atol = TINY[dtype]
    assert got.dtype == dtype
    assert got.shape == np.shape(x)
    assert_allclose(got, want, rtol=rtol, atol=atol, equal_nan=True)


@pytest.fixture(params=["softmax", "log_softmax"])
def func(request):
    return request.param


# ---------------------------------------------------------------- exact values

def test_scipy_fixtures(backend):
    assert_array_equal(softmax([1000, 0, 0, 0], backend=backend), [1, 0, 0, 0])
    assert_allclose(softmax([1, 1], backend=backend), [0.5, 0.5], rtol=1e-15)
    assert_allclose(softmax([[1000, 0], [1000, 0]], axis=0, backend=backend),
                    [[0.5, 0.5], [0.5, 0.5]], rtol=1e-15)
    assert_array_equal(softmax([[1000, 0], [1000, 0]], axis=1, backend=backend),
                       [[1, 0], [1, 0]])
    assert softmax([1, 0], backend=backend).ndim == 1
    assert softmax([[1, 0], [2, 3]], backend=backend).ndim == 2


LOG_ARANGE4 = np.array([-3.4401896985611953, -2.4401896985611953,
                        -1.4401896985611953, -0.44018969856119533])  # mpmath, 200 digits


def test_scipy_log_softmax_expectations(backend):
    kw = dict(rtol=1e-13)
    assert_allclose(log_softmax(np.array([1000, 1]), backend=backend), [0, -999], **kw)
    assert_allclose(log_softmax(np.arange(4), backend=backend), LOG_ARANGE4, **kw)
    assert_allclose(log_softmax(np.arange(4) + 100, backend=backend), LOG_ARANGE4, **kw)
    assert_allclose(log_softmax(np.arange(4).reshape(2, 2), backend=backend),
                    LOG_ARANGE4.reshape(2, 2), **kw)
    assert_allclose(log_softmax([[1000, 1], [1000, 1]], axis=0, backend=backend),
                    np.log(0.5) * np.ones((2, 2)), **kw)
    assert_allclose(log_softmax([[1000, 1], [1000, 1]], axis=1, backend=backend),
                    [[0, -999], [0, -999]], **kw)
    x2 = np.arange(8).reshape(2, 4)
    e2 = np.array([LOG_ARANGE4, LOG_ARANGE4])
    assert_allclose(log_softmax(x2, axis=1, backend=backend), e2, **kw)
    assert_allclose(log_softmax(x2.T, axis=0, backend=backend), e2.T, **kw)
    assert_allclose(log_softmax(x2.reshape(2, 2, 2), axis=(1, 2), backend=backend),
                    e2.reshape(2, 2, 2), **kw)
    assert_allclose(log_softmax(1.0, backend=backend), 0.0, **kw)


def test_softmax_exact_arange(backend):
    # softmax(arange(4)) = exp(LOG_ARANGE4)
    assert_allclose(softmax(np.arange(4.0), backend=backend), np.exp(LOG_ARANGE4), rtol=1e-13)


def test_cat_dog(backend):
    p = softmax([1.2, 0.3], backend=backend)
    assert_allclose(p, [0.710949502625004, 0.289050497374996], rtol=1e-13)
    assert_array_equal(p.round(2), [0.71, 0.29])


def test_subnormal_results(backend, func):
    x = np.array([0.0, -745.0, -744.0, -740.0, -708.5, -746.0, -1000.0])
    f, g = FUNCS[func]
    got = f(x, backend=backend)
    want = g(x)
    assert_allclose(got, want, rtol=1e-13, atol=0)
    if func == "softmax":
        assert got[1] == np.exp(-745.0) > 0  # 5e-324, the smallest subnormal
        assert got[-1] == 0.0


# -------------------------------------------------------------- special values

SPECIAL_SLICES = [
    [1.0, np.inf], [1.0, -np.inf], [-np.inf, -np.inf], [1.0, np.nan],
    [np.inf, np.inf], [-np.inf, np.inf], [np.nan, -np.inf], [np.inf], [-np.inf],
    [np.nan], [1e308, -1e308], [np.nan, np.inf], [0.0, -np.inf, 2.0, -np.inf],
    [3.0, 3.0, np.inf, 1.0], [-np.inf, 5.0],
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("row", SPECIAL_SLICES, ids=str)
def test_special_values_match_scipy(backend, func, row, dtype):
    x = np.array(row, dtype=np.float64)
    if dtype == np.float32:  # keep float32 finite values finite
        x = np.where(np.abs(x) > 1e38, np.sign(x) * np.where(np.isfinite(x), 1e38, np.inf), x)
    x = x.astype(dtype)
    f, g = FUNCS[func]
    with np.errstate(all="ignore"):
        want = g(x)
    got = f(x, backend=backend)
    assert got.dtype == dtype
    assert_array_equal(np.isnan(got), np.isnan(want))
    assert_allclose(got, want, rtol=RTOL[dtype], equal_nan=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("axis", [0, 1])
def test_special_values_in_batches(backend, func, dtype, axis):
    # the special slices padded into a matrix: one bad slice must not leak
    width = max(len(r) for r in SPECIAL_SLICES) + 3
    x = np.random.default_rng(0).normal(size=(len(SPECIAL_SLICES), width))
    for i, r in enumerate(SPECIAL_SLICES):
        r = np.clip(np.array(r), -1e30, 1e30)
        x[i, :len(r)] = r
    x = x.astype(dtype)
    if axis == 0:
        x = np.ascontiguousarray(x.T)
    f, g = FUNCS[func]
    with np.errstate(all="ignore"):
        want = g(x, axis=axis)
    got = f(x, axis=axis, backend=backend)
    assert_array_equal(np.isnan(got), np.isnan(want))
    assert_allclose(got, want, rtol=RTOL[dtype], atol=0 if func == "log_softmax" else TINY[dtype],
                    equal_nan=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [1, 3, 4, 5, 6, 7, 9])
def test_special_values_in_short_row_blocks(backend, func, dtype, k):
    # short rows go in blocks of rows (compiled backends), their
    # exponentials some columns at a time: every remainder of k by 4, and
    # blocks whose max is +inf or NaN in some rows (the general exp) among
    # finite rows, in full blocks and in the rows left over
    rng = np.random.default_rng(k)
    x = rng.normal(size=(40, k)) * 3
    for r, v in ((1, np.inf), (5, np.nan), (17, -np.inf), (18, np.inf), (38, np.inf)):
        x[r, rng.integers(0, k)] = v
    x[20] = -np.inf
    x = x.astype(dtype)
    f, _ = FUNCS[func]
    got = f(x, axis=1, backend=backend)
    assert_array_equal(np.isnan(got), np.isnan(reference(x, 1, func == "log_softmax")))
    check_close(got, x, 1, func == "log_softmax", dtype)


@pytest.mark.parametrize("k", [200, 700])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rows_in_cache_keep_their_own_sums(backend, func, k, dtype, restore_threads):
    # rows in cache, next to each other with far apart maxima and sums (the
    # compiled backends take a row's log while the next row computes: each
    # row must be written with its own shift and sum), the special slices
    # among them; on 1 and 3 threads, into a new array and in place
    rng = np.random.default_rng(21)
    x = rng.normal(size=(2 * len(SPECIAL_SLICES) + 7, k)) * 3
    x[::2] += np.arange(0, 100 * len(x[::2]), 100)[:, None]
    x[1::4] *= 40
    for i, r in enumerate(SPECIAL_SLICES):
        x[2 * i + 1, :len(r)] = np.clip(np.array(r), -1e30, 1e30)
    x = x.astype(dtype)
    f, g = FUNCS[func]
    with np.errstate(all="ignore"):
        want = g(x, axis=1)
    if func == "log_softmax":  # a few ulps of each row's own operands (see check_close)
        scale = np.where(np.isfinite(x), np.abs(x.astype(np.float64)), 0).max(axis=1)
        atol = 8 * np.finfo(dtype).eps * np.maximum(1.0, scale)
    else:
        atol = np.full(len(x), TINY[dtype])
    for n in (1, 3):
        fastsoftmax.set_num_threads(n)
        y = x.copy()
        assert f(y, axis=1, out=y, backend=backend) is y
        for got in (f(x, axis=1, backend=backend), y):
            assert_array_equal(np.isnan(got), np.isnan(want))
            for i in range(len(x)):
                assert_allclose(got[i], want[i], rtol=RTOL[dtype], atol=atol[i], equal_nan=True,
                                err_msg=f"row {i}, {n} threads")


@pytest.mark.parametrize("where", [0, 1, 500, 4095])
def test_special_value_in_long_row(backend, func, where):
    # long rows are split across threads: a special value in any chunk counts
    x = np.random.default_rng(1).normal(size=(1, 300_000))
    for value in (np.nan, np.inf, -np.inf):
        y = x.copy()
        y[0, where * 73] = value
        f, g = FUNCS[func]
        with np.errstate(all="ignore"):
            want = g(y, axis=1)
        got = f(y, axis=1, backend=backend)
        assert_array_equal(np.isnan(got), np.isnan(want))
        assert_allclose(got, want, rtol=1e-12, atol=0 if func == "log_softmax" else 1e-300,
                        equal_nan=True)


def test_long_row_chunk_all_minus_inf(backend, func):
    # a whole chunk of -inf next to finite values must give 0 / -inf, not NaN
    x = np.random.default_rng(2).normal(size=400_000)
    x[:250_000] = -np.inf
    f, g = FUNCS[func]
    got = f(x, backend=backend)
    with np.errstate(all="ignore"):
        want = g(x)
    assert not np.isnan(got).any()
    assert_allclose(got, want, rtol=1e-12, atol=0)


# ------------------------------------------------------- shapes, axes, layouts

SHAPES_AXES = [
    ((7,), None), ((7,), 0), ((7,), -1), ((3, 5), None), ((3, 5), 0), ((3, 5), 1),
    ((3, 5), -1), ((3, 5), (0, 1)), ((4, 3, 5), 0), ((4, 3, 5), 1), ((4, 3, 5), 2),
    ((4, 3, 5), (0, 2)), ((4, 3, 5), (1, 2)), ((4, 3, 5), (0, 1)), ((4, 3, 5), (2, 0)),
    ((4, 3, 5), None), ((4, 3, 5), ()), ((2, 3, 4, 5), (1, 3)), ((2, 3, 4, 5), -2),
    ((1, 1, 9), 1), ((9, 1), 1), ((9, 1), 0), ((1,), 0), ((257, 33), 1), ((33, 257), 0),
    ((5, 1000, 3), 1), ((2, 3, 2000), -1), ((3, 2, 2001), 1),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,axis", SHAPES_AXES, ids=str)
def test_matches_reference(backend, func, shape, axis, dtype):
    rng = np.random.default_rng(abs(hash((shape, str(axis)))) % 2**32)
    x = (rng.normal(size=shape) * 4).astype(dtype)
    f, _ = FUNCS[func]
    got = f(x, axis=axis, backend=backend)
    check_close(got, x, axis, func == "log_softmax", dtype)


def _layouts(base):
    yield "C", base
    yield "F", np.asfortranarray(base)
    yield "transposed", base.T
    yield "sliced", base[::2, 1::3]
    yield "reversed", base[::-1, ::-1]
    yield "reversed-rows", base[::-1]
    yield "big-step", base[:, ::7]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("axis", [0, 1, None, -1])
def test_non_contiguous_layouts(backend, func, dtype, axis):
    base = (np.random.default_rng(3).normal(size=(40, 90)) * 5).astype(dtype)
    f, _ = FUNCS[func]
    for name, x in _layouts(base):
        before = x.copy()
        got = f(x, axis=axis, backend=backend)
        check_close(got, x, axis, func == "log_softmax", dtype)
        assert_array_equal(x, before, err_msg=f"{name}: input modified")


def test_broadcast_zero_stride_input(backend, func):
    row = np.linspace(-3, 3, 11)
    x = np.broadcast_to(row, (6, 11))  # read-only, row stride 0
    f, _ = FUNCS[func]
    for axis in (0, 1, None):
        check_close(f(x, axis=axis, backend=backend), x, axis, func == "log_softmax", np.float64)


def test_read_only_input(backend, func):
    x = np.random.default_rng(4).normal(size=(8, 16)).astype(np.float32)
    x.flags.writeable = False
    f, _ = FUNCS[func]
    check_close(f(x, axis=1, backend=backend), x, 1, func == "log_softmax", np.float32)


def test_byteswapped_input(backend, func):
    x = np.random.default_rng(5).normal(size=(5, 7))
    xs = x.astype(">f8")
    f, _ = FUNCS[func]
    got = f(xs, axis=1, backend=backend)
    assert got.dtype == np.float64 and got.dtype.isnative
    check_close(got, x, 1, func == "log_softmax", np.float64)


def test_magnitudes_float64(backend, func):
    rng = np.random.default_rng(6)
    f, _ = FUNCS[func]
    for scale in (1e-30, 1e-5, 1.0, 50.0, 1e3, 1e30, 1e300):
        x = rng.normal(size=(16, 33)) * scale
        check_close(f(x, axis=1, backend=backend), x, 1, func == "log_softmax", np.float64)
    x = np.array([[1e308, 1e308, -1e308], [-1e308, -1e308, 0.0]])
    check_close(f(x, axis=1, backend=backend), x, 1, func == "log_softmax", np.float64)


def test_magnitudes_float32(backend, func):
    rng = np.random.default_rng(7)
    f, _ = FUNCS[func]
    for scale in (1e-30, 1e-3, 1.0, 20.0, 1e3, 1e30, 1e37):
        x = (rng.normal(size=(16, 33)) * scale).astype(np.float32)
        check_close(f(x, axis=1, backend=backend), x, 1, func == "log_softmax", np.float32)


@pytest.mark.parametrize("axis", [1, 0])
@pytest.mark.parametrize("k", [2, 10, 16, 40, 100, 3000, 70_000])
def test_log_softmax_float32_at_a_dominant_max_as_a_double_sum(backend, k, axis):
    """float32 log_softmax at a max that dominates its slice: -log(sum) as
    SciPy gets it from a float64 sum of the float32 input, whatever the
    backend's kernel: exactly 0 where that sum is exactly 1 (gaps of 37.5
    and more), -log1p(s) to float precision where it is not; in short rows
    (the Cython backend's blocks of rows, Numba's transposed blocks), rows
    in cache, rows through a scratch row, long rows (chunks) and columns
    (axis 0: groups of 8 rows and the ragged last group); 37 slices, so
    that some fall in full blocks and some are left over."""
    if axis == 0 and k > 3000:
        pytest.skip("a long column: the same code as k = 3000")
    gaps = np.array([8.0, 15.0, 20.0, 30.0, 35.0, 36.0, 37.5, 40.0, 60.0, 100.0])
    rows = []
    for i in range(37):
        r = np.linspace(-80.0, -60.0, k)
        r[i % k] = 3.0  # the max anywhere in the slice (any lane, group or chunk)
        if k > 1:
            r[(i + 1) % k] = 3.0 - gaps[i % len(gaps)]
        rows.append(r)
    x = np.array(rows, dtype=np.float32)
    arg = x if axis == 1 else np.ascontiguousarray(x.T)
    got = log_softmax(arg, axis=axis, backend=backend)
    got = (got if axis == 1 else got.T)[np.arange(37), np.arange(37) % k].astype(np.float64)
    x64 = x.astype(np.float64)
    want = sc.log_softmax(x64, axis=1)[np.arange(37), np.arange(37) % k]
    s = np.exp(x64 - 3.0).sum(axis=1) - 1.0
    gone = s < 2.0 ** -54
    assert gone.any() and (~gone).any()
    assert_array_equal(got[gone], 0.0)
    eps = np.finfo(np.float32).eps
    assert (np.abs(got - want) <= 3 * eps * np.abs(want) + 2.0 ** -52).all()


@pytest.mark.parametrize("k", [9, 100, 3001])
def test_log_softmax_float32_column_max_late_or_in_the_last_group(backend, k):
    """float32 log_softmax along axis 0 where each column's dominant max
    comes late: mid-column after a smaller earlier max (the running max
    grows, groups of rows without it summed first) or in the last rows
    (the ragged last group of 8 for k = 100 and 3001).  At the max the
    result, -log(1 + rest) with rest from 1e-13 to 1e-2, is held to
    float precision against a float64 sum with rest summed apart (a
    float32 sum of the max's 1 and the rest loses rest below half an ulp
    of 1); 70
    columns: whole vectors and a tail.  Elsewhere within 2 eps of
    ``max(|y|, 1)`` of SciPy's float64 result."""
    rng = np.random.default_rng(k)
    w = 70
    cols = np.arange(w)
    # x - 3 exact in float32 (one binade, [16, 32)): rest is then exact to
    # the exponentials' own rounding
    x = rng.uniform(-29.0, -24.0, (k, w))
    late = np.where(cols % 2 == 0, k - 1 - cols % min(k, 12), k // 2 + cols % (k - k // 2))
    x[late, cols] = 3.0
    early = cols % 3 == 0  # a smaller max first, 4 to 24 below the true one
    x[(late // 3)[early], cols[early]] = 3.0 - (4.0 + (cols[early] % 7) * 3.0)
    x = x.astype(np.float32)
    got = log_softmax(x, axis=0, backend=backend).astype(np.float64)
    x64 = x.astype(np.float64)
    assert (x64.argmax(axis=0) == late).all()
    rest = np.where(np.arange(k)[:, None] == late, 0.0, np.exp(x64 - 3.0)).sum(axis=0)
    exact = -np.log1p(rest)
    assert rest.min() < 2.0 ** -25 and rest.max() > 1e-3
    eps = np.finfo(np.float32).eps
    # the kernels add each group of rows to a float64 sum near 1: up to
    # an ulp of 1 per group (SciPy's float64 sum, adding every term to 1,
    # is up to 1e-4 off here)
    bound = 4 * eps * np.abs(exact) + (1 - (-k // 8)) * 2.0 ** -52
    assert (np.abs(got[late, cols] - exact) <= bound).all()
    want = sc.log_softmax(x64, axis=0)
    assert (np.abs(got - want) <= 2 * eps * np.maximum(np.abs(want), 1.0)).all()


@pytest.mark.parametrize("k", [3, 16, 17, 33, 64, 100, 1000, 1003])
def test_log_softmax_float32_ties_at_a_dominant_max(backend, k):
    """float32 log_softmax where the max is reached 1, 2 or 3 times
    (anywhere: the same or different vector lanes, groups, the row's
    tail) and dominates the rest: at the max, -log(count + rest) to float
    precision against SciPy's float64, whatever the kernel's sums do with
    the exponentials equal to 1 (integer logits, whose differences float32
    holds exactly: a rounded ``x - max`` would carry its own error into
    ``rest``)."""
    rng = np.random.default_rng(k)
    rows = []
    for i in range(48):
        # integers: x - max exact in float32, as in SciPy's float64
        r = -20.0 - (i % 5) * 4.0 - rng.integers(0, 40, k)
        at = rng.choice(k, size=1 + i % 3, replace=False)
        if i % 4 == 0:
            at[-1] = k - 1 - (i // 4) % 3          # one of them near the row's end
        r[at] = 3.0
        rows.append(r)
    x = np.array(rows, dtype=np.float32)
    got = log_softmax(x, axis=1, backend=backend).astype(np.float64)
    want = sc.log_softmax(x.astype(np.float64), axis=1)
    eps = np.finfo(np.float32).eps
    at_max = x == x.max(axis=1, keepdims=True)
    assert (np.abs(got - want)[at_max] <= 3 * eps * np.abs(want[at_max]) + 2.0 ** -52).all()
    assert (np.abs(got - want) <= 2 * eps * np.maximum(np.abs(want), 1.0)).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [2, 5, 16, 40])
def test_log_softmax_signed_zero_max_and_negative_nan(backend, dtype, k):
    """Slices whose max is 0 reached as +0 and -0 (x - max is then +0 or
    -0, exp 1 either way: a tie), a max reached once beside a value one ulp
    below it, and NaNs of either sign: the float32 short-row kernels tell
    the max's own element by the sign of x - max (Cython's blocks)."""
    rng = np.random.default_rng(k)
    x = rng.normal(size=(48, k)) * 3 - 5
    x[0::6, 0] = -0.0
    x[0::6, -1] = 0.0
    x[1::6, 0] = 0.0
    x[1::6, -1] = -0.0
    x[2::6, 0] = -0.0
    x[3::6, 0] = 2.0
    x[3::6, -1] = np.nextafter(dtype(2.0), dtype(0.0))
    x[4::6, k // 2] = np.nan
    x[5::6, k // 2] = -np.nan
    x = x.astype(dtype)
    assert np.signbit(x[5, k // 2]) and not np.signbit(x[4, k // 2])
    got = log_softmax(x, axis=1, backend=backend)
    assert_array_equal(np.isnan(got), np.isnan(reference(x, 1, True)))
    check_close(got, x, 1, True, dtype)


@pytest.mark.parametrize("axis", [1, 0])
@pytest.mark.parametrize("k", [2, 10, 40, 100, 1000, 3000, 200_000])
def test_log_softmax_float32_within_two_eps_of_float64(backend, k, axis):
    """float32 log_softmax against SciPy's float64 log_softmax of the same
    float32 input: within 2 eps of max(|y|, 1), whatever the backend's sums
    (float32 sums of random rows: the Numba backend redoes a small sum in
    float64, see ``_redo64``; measured at most 1.45 eps), over scales from
    flat rows to peaked ones; 200_000: long rows, whose chunks' sums are
    small where the row's total is not (the Numba backend then keeps its
    float32 chunk sums)."""
    if axis == 0 and k > 3000:
        pytest.skip("a long column: the same code as k = 3000")
    rng = np.random.default_rng(k)
    eps = np.finfo(np.float32).eps
    for scale in (0.1, 1.0, 3.0, 10.0, 30.0):
        x = (rng.standard_normal((max(8, 40_000 // k), k)) * scale).astype(np.float32)
        arg = x if axis == 1 else np.ascontiguousarray(x.T)
        got = log_softmax(arg, axis=axis, backend=backend)
        got = (got if axis == 1 else got.T).astype(np.float64)
        want = sc.log_softmax(x.astype(np.float64), axis=1)
        err = np.abs(got - want) / (eps * np.maximum(np.abs(want), 1.0))
        assert err.max() <= 2.0, (scale, err.max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,axis", [((1, 200_000), 1), ((3, 70_000), -1), ((70_000, 3), 0),
                                        ((600, 4, 300), 0), ((20, 5000), 1)])
def test_large_slices(backend, func, shape, axis, dtype):
    x = (np.random.default_rng(8).normal(size=shape) * 3).astype(dtype)
    f, _ = FUNCS[func]
    got = f(x, axis=axis, backend=backend)
    check_close(got, x, axis, func == "log_softmax", dtype,
                rtol=1e-12 if dtype == np.float64 else 2e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [1, 2, 3, 10, 31, 100, 1000, 4097, 32000])
def test_slices_sum_to_one(backend, dtype, k):
    x = (np.random.default_rng(k).normal(size=(6, k)) * 3).astype(dtype)
    p = softmax(x, axis=1, backend=backend)
    eps = np.finfo(dtype).eps
    # the sum of k correctly rounded terms: a few ulps, growing like sqrt(k)
    err = np.abs(p.astype(np.float64).sum(axis=1) - 1)
    assert err.max() <= 4 * eps * max(1.0, math.sqrt(k)), err.max() / eps


# ---------------------------------------------------------- dtypes and inputs

def test_dtype_rules(backend, func):
    f, _ = FUNCS[func]
    assert f(np.zeros(3, np.float32), backend=backend).dtype == np.float32
    assert f(np.zeros(3, np.float64), backend=backend).dtype == np.float64
    assert f(np.zeros(3, np.float16), backend=backend).dtype == np.float16
    assert f(np.arange(3), backend=backend).dtype == np.float64
    assert f(np.array([True, False]), backend=backend).dtype == np.float64
    assert f([1, 2, 3], backend=backend).dtype == np.float64
    assert f(np.zeros(3, np.float32), dtype=np.float64, backend=backend).dtype == np.float64
    assert f(np.zeros(3), dtype="float32", backend=backend).dtype == np.float32
    assert f(np.arange(3), dtype=np.float16, backend=backend).dtype == np.float16


def test_float16_computed_in_float32(backend, func):
    x = np.random.default_rng(9).normal(size=(4, 50)).astype(np.float16)
    f, _ = FUNCS[func]
    got = f(x, axis=1, backend=backend)
    want = f(x.astype(np.float32), axis=1, backend="numpy").astype(np.float16)
    assert got.dtype == np.float16
    assert_allclose(got.astype(np.float32), want.astype(np.float32), rtol=1e-3, atol=1e-4)


def test_dtype_argument_computes_in_that_dtype(backend, func):
    x = np.random.default_rng(10).normal(size=(3, 40)).astype(np.float32)
    f, _ = FUNCS[func]
    got = f(x, axis=1, dtype=np.float64, backend=backend)
    check_close(got, x.astype(np.float64), 1, func == "log_softmax", np.float64)


def test_longdouble(backend, func):
    x = np.linspace(-5, 5, 12).astype(np.longdouble)
    f, _ = FUNCS[func]
    got = f(x, backend=backend)
    assert got.dtype == np.longdouble
    assert_allclose(got.astype(np.float64), reference(x, None, func == "log_softmax"), rtol=1e-13)


def test_zero_d(backend, func):
    f, g = FUNCS[func]
    got = f(3.0, backend=backend)
    assert np.ndim(got) == 0 and got == g(3.0)
    assert isinstance(got, np.float64)
    got32 = f(np.float32(2.0), backend=backend)
    assert got32.dtype == np.float32 and got32 == g(np.float32(2.0))
    assert np.isnan(f(np.nan, backend=backend))
    out = np.empty((), np.float64)
    assert f(np.array(5.0), out=out, backend=backend) is out and out == g(5.0)
    with pytest.raises(AxisError):
        f(3.0, axis=0, backend=backend)


@pytest.mark.parametrize("shape,axis", [((0,), None), ((0,), 0), ((0, 3), 1), ((3, 0), 1),
                                        ((3, 0), 0), ((2, 0, 4), (0, 2)), ((0, 5), None)])
def test_empty(backend, func, shape, axis):
    f, _ = FUNCS[func]
    for dtype, res in ((np.float32, np.float32), (np.int64, np.float64), (np.float16, np.float16)):
        got = f(np.zeros(shape, dtype), axis=axis, backend=backend)
        assert got.shape == shape and got.dtype == res
    out = np.empty(shape)
    assert f(np.zeros(shape), axis=axis, out=out, backend=backend) is out


def test_lists_and_scalars(backend):
    assert_allclose(softmax([[1, 2], [3, 4]], axis=1, backend=backend),
                    sc.softmax([[1, 2], [3, 4]], axis=1), rtol=1e-13)
    assert_allclose(log_softmax((1, 2, 3), backend=backend), sc.log_softmax((1, 2, 3)),
                    rtol=1e-13)


# ---------------------------------------------------------------------- out=

@pytest.mark.parametrize("axis", [0, 1, None, (0, 1)])
def test_out_argument(backend, func, axis):
    x = np.random.default_rng(11).normal(size=(9, 13))
    f, _ = FUNCS[func]
    out = np.full_like(x, 7.0)
    res = f(x, axis=axis, out=out, backend=backend)
    assert res is out
    check_close(out, x, axis, func == "log_softmax", np.float64)


@pytest.mark.parametrize("axis", [0, 1, None])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_in_place(backend, func, axis, dtype):
    x = (np.random.default_rng(12).normal(size=(9, 300)) * 3).astype(dtype)
    expected = FUNCS[func][0](x, axis=axis, backend="numpy")
    y = x.copy()
    f, _ = FUNCS[func]
    assert f(y, axis=axis, out=y, backend=backend) is y
    assert_allclose(y, expected, rtol=RTOL[dtype], atol=0 if func == "log_softmax" else TINY[dtype])
    # in place on a transposed, strided view
    base = (np.random.default_rng(13).normal(size=(20, 30)) * 3).astype(dtype)
    view = base[::2, ::3].T
    want = FUNCS[func][0](view.copy(), axis=axis, backend="numpy")
    f(view, axis=axis, out=view, backend=backend)
    assert_allclose(view, want, rtol=RTOL[dtype], atol=0 if func == "log_softmax" else TINY[dtype])


def test_out_partial_overlap_is_handled(backend, func):
    buf = np.random.default_rng(14).normal(size=(11, 8))
    x = buf[:-1]
    out = buf[1:]
    want = FUNCS[func][0](x.copy(), axis=1, backend="numpy")
    f, _ = FUNCS[func]
    f(x, axis=1, out=out, backend=backend)
    assert_allclose(out, want, rtol=1e-13)


def test_out_strided_writes_nothing_outside(backend, func):
    x = np.random.default_rng(15).normal(size=(6, 10)).astype(np.float32)
    big = np.full((8, 25), -7.0, np.float32)
    out = big[1:7, 2:22:2]
    f, _ = FUNCS[func]
    f(x, axis=1, out=out, backend=backend)
    check_close(out, x, 1, func == "log_softmax", np.float32)
    mask = np.ones(big.shape, bool)
    mask[1:7, 2:22:2] = False
    assert (big[mask] == -7.0).all()


def test_out_guard_regions(backend, func):
    # out is the middle of a buffer: the kernels must not touch the guards
    for shape, axis in (((5, 37), 1), ((37, 5), 0), ((1, 100_003), 1), ((3, 4, 5), (0, 2))):
        n = int(np.prod(shape))
        x = np.random.default_rng(16).normal(size=shape)
        buf = np.full(n + 64, 12345.0)
        out = buf[32:32 + n].reshape(shape)
        FUNCS[func][0](x, axis=axis, out=out, backend=backend)
        assert (buf[:32] == 12345.0).all() and (buf[32 + n:] == 12345.0).all()
        check_close(out, x, axis, func == "log_softmax", np.float64)


def test_out_dtype_cast_for_float16(backend):
    x = np.linspace(-2, 2, 9).astype(np.float16)
    out = np.empty(9, np.float16)
    assert softmax(x, out=out, backend=backend) is out
    assert_allclose(out.astype(np.float32), sc.softmax(x.astype(np.float32)), rtol=2e-3)


# -------------------------------------------------------------------- errors

def test_errors(backend, func):
    f, _ = FUNCS[func]
    x = np.zeros((3, 4))
    with pytest.raises(AxisError):
        f(x, axis=2, backend=backend)
    with pytest.raises(AxisError):
        f(x, axis=-3, backend=backend)
    with pytest.raises(AxisError):
        f(x, axis=(0, 5), backend=backend)
    with pytest.raises(ValueError, match="repeated axis"):
        f(x, axis=(1, -1), backend=backend)
    with pytest.raises(TypeError, match="axis"):
        f(x, axis=1.5, backend=backend)
    with pytest.raises(TypeError, match="complex"):
        f(np.array([1 + 2j, 3]), backend=backend)
    with pytest.raises(TypeError, match="real numbers"):
        f(np.array(["a", "b"]), backend=backend)
    with pytest.raises(TypeError, match="dtype"):
        f(x, dtype=np.int32, backend=backend)
    with pytest.raises(ValueError, match="out has shape"):
        f(x, out=np.empty((4, 3)), backend=backend)
    with pytest.raises(ValueError, match="out has dtype"):
        f(x, out=np.empty((3, 4), np.float32), backend=backend)
    ro = np.empty((3, 4))
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        f(x, out=ro, backend=backend)
    with pytest.raises(TypeError, match="out must be a numpy.ndarray"):
        f(x, out=[[0.0] * 4] * 3, backend=backend)


def test_unknown_backend():
    with pytest.raises(ValueError, match="unknown backend"):
        softmax([1.0, 2.0], backend="torch")


# ------------------------------------------------------------------- threads

@pytest.mark.parametrize("shape,axis", [((64, 3000), 1), ((1, 500_000), 1), ((3000, 64), 0),
                                        ((2, 2000, 3), 1), ((5000, 16), 1), ((777, 200), 1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_results_do_not_depend_on_thread_count(compiled_backend, func, shape, axis, dtype,
                                               restore_threads):
    x = (np.random.default_rng(17).normal(size=shape) * 4).astype(dtype)
    f, _ = FUNCS[func]
    results = []
    for n in (1, 2, 3):
        fastsoftmax.set_num_threads(n)
        results.append(f(x, axis=axis, backend=compiled_backend))
    assert_array_equal(results[0], results[1])
    assert_array_equal(results[0], results[2])


def test_calls_from_a_thread_pool(backend):
    from concurrent.futures import ThreadPoolExecutor
    rng = np.random.default_rng(18)
    xs = [rng.normal(size=(50, 700)).astype(np.float32) for _ in range(16)]
    want = [softmax(x, axis=1, backend="numpy") for x in xs]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda x: softmax(x, axis=1, backend=backend), xs))
    for g, w in zip(got, want):
        assert_allclose(g, w, rtol=1e-5, atol=TINY[np.float32])


# ------------------------------------------------------- property-based tests

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402


@st.composite
def strided_arrays(draw):
    """Arrays of any float dtype, shape, magnitude and layout (views of a bigger base)."""
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=9))
    exp = draw(st.integers(-30, 37 if dtype == np.float32 else 300))
    elements = st.floats(-1.0, 1.0, width=64)
    base_shape = tuple(s * 2 for s in shape)
    base = draw(hnp.arrays(np.float64, base_shape, elements=elements)) * 10.0 ** exp
    base = base.astype(dtype)
    # a strided, possibly reversed view of the base, then maybe transposed
    index = []
    for s in shape:
        step = draw(st.sampled_from([1, 2, -1, -2]))
        index.append(slice(None, None, step) if abs(step) == 2 else
                     (slice(0, s) if step == 1 else slice(s - 1, None, -1)))
    x = base[tuple(index)]
    if draw(st.booleans()):
        x = x.transpose(draw(st.permutations(range(x.ndim))))
    axis = draw(st.one_of(
        st.none(), st.integers(-x.ndim, x.ndim - 1),
        st.lists(st.integers(0, x.ndim - 1), min_size=1, max_size=x.ndim, unique=True).map(tuple)))
    return x, axis


@pytest.mark.parametrize("backend_name", AVAILABLE_BACKENDS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=strided_arrays(), log=st.booleans())
def test_property_matches_reference(backend_name, data, log):
    x, axis = data
    before = x.copy()
    f = log_softmax if log else softmax
    got = f(x, axis=axis, backend=backend_name)
    check_close(got, x, axis, log, x.dtype.type)
    assert_array_equal(x, before)
    if not log:
        sums = np.sum(got.astype(np.float64), axis=axis)
        assert_allclose(sums, 1.0, rtol=0, atol=64 * np.finfo(x.dtype).eps)


# ---------------------------------------------------- compiled fast paths

@pytest.fixture(params=[b for b in AVAILABLE_BACKENDS
                        if "softmax_fast" in vars(fastsoftmax._backends._load(b))])
def fast_backend(request):
    return request.param


class _Sub(np.ndarray):
    pass


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("log", [False, True])
def test_softmax_fast_takes_only_the_simple_case(fast_backend, dtype, log):
    """softmax_fast (the optional fast path of a backend's kernel contract)
    computes exactly the simple case (C-ordered native float input over the
    last axis, out None / x / a disjoint C-ordered array) and declines
    everything else with None, writing nothing."""
    K = fastsoftmax._backends._load(fast_backend)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 7)).astype(dtype)
    for axis in (None, -1, 1):
        got = K.softmax_fast(x, axis, None, log, 2)
        assert got.dtype == dtype and got.shape == x.shape
        check_close(got, x, axis, log, dtype)
    out = np.empty_like(x)
    assert K.softmax_fast(x, -1, out, log, 1) is out
    check_close(out, x, -1, log, dtype)
    y = x.copy()
    assert K.softmax_fast(y, 1, y, log, 1) is y          # in place
    check_close(y, x, -1, log, dtype)

    buf = np.zeros(80, dtype)
    buf[:35] = x.ravel()
    sentinel = np.full((5, 7), 7.0, dtype)
    declined = [
        (x.T, -1, None), (x[:, ::2], -1, None), (x, 0, None), (x, -2, None),
        (x, np.int64(1), None), (x, (1,), None), (x.astype(">" + x.dtype.str[1:]), -1, None),
        (x.astype(np.float16), -1, None), (x.tolist(), -1, None), (x.view(_Sub), -1, None), (x, True, None),
        (np.empty((0, 7), dtype), -1, None), (np.array(1.0, dtype), None, None),
        (x, -1, sentinel.T), (x, -1, sentinel.astype(np.float64 if dtype == np.float32 else np.float32)),
        (x, -1, np.empty((7, 5), dtype)), (x, -1, sentinel[:4]),
        (buf[:35].reshape(5, 7), -1, buf[5:40].reshape(5, 7)),      # partial overlap
        (x, -1, [[0.0] * 7] * 5), (x, 1.0, None),
    ]
    ro = sentinel.copy()
    ro.flags.writeable = False
    declined.append((x, -1, ro))
    for xa, axis, o in declined:
        before = None if not isinstance(o, np.ndarray) else o.copy()
        assert K.softmax_fast(xa, axis, o, log, 2) is None, (axis, type(xa))
        if before is not None:
            np.testing.assert_array_equal(o, before)
    assert K.softmax_fast(x, -1, None, log, 0) is None


def test_softmax_fast_unaligned_declined(fast_backend):
    K = fastsoftmax._backends._load(fast_backend)
    raw = np.zeros(8 * 35 + 1, np.uint8)
    x = raw[1:].view(np.float64).reshape(5, 7)
    assert not x.flags.aligned
    assert K.softmax_fast(x, -1, None, False, 1) is None
    check_close(softmax(x, axis=-1, backend=fast_backend), x, -1, False, np.float64)
