"""More tests of the Numba softmax kernels: the column kernel's special
values at every position of its groups of rows, and the exp's polynomial;
rows computed bit for bit alike by every kernel at every thread count."""
import warnings

import numpy as np
import pytest

pytest.importorskip("numba")
sc = pytest.importorskip("scipy.special")

import fastsoftmax  # noqa: E402

if fastsoftmax.available_backends()["numba"] is not True:  # pragma: no cover
    pytest.skip("the numba backend does not load here", allow_module_level=True)

from fastsoftmax.kernels.numba_backend import softmax as nb_softmax  # noqa: E402


def _scipy(x, axis, log):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return (sc.log_softmax if log else sc.softmax)(x.astype(np.float64), axis=axis)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("log", [False, True])
def test_columns_special_values_at_every_group_position(dtype, log):
    """The column kernel's first pass takes the maximum of a group of rows
    with compare-and-select (a NaN may hide the other values of its group):
    a column holding a NaN, +inf or -inf, at any position in a group, next
    to values far above the rest, still gives SciPy's result, and the other
    columns are untouched by it."""
    group = nb_softmax.COL_GROUP
    k = 3 * group + 3  # full groups and a partial one
    inner = 4 * group * 3 + 5
    rng = np.random.default_rng(0)
    x = rng.normal(size=(k, inner)).astype(dtype)
    col = 0
    for special in (np.nan, np.inf, -np.inf):
        for row in range(k):
            x[:, col] = rng.normal(size=k)
            # values far above the others: a hidden maximum makes x - max large
            x[(row + 1) % k, col] = 80 if dtype == np.float32 else 700
            x[(row + 2) % k, col] = 60 if dtype == np.float32 else 650
            x[row, col] = special
            col += 1
    assert col <= inner
    x[:, -1] = -np.inf  # an all -inf column
    f = fastsoftmax.log_softmax if log else fastsoftmax.softmax
    got = f(x, axis=0, backend="numba").astype(np.float64)
    want = _scipy(x, 0, log)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    ok = ~np.isnan(want)
    np.testing.assert_allclose(got[ok], want[ok], rtol=1e-5 if dtype == np.float32 else 1e-13,
                               atol=1e-6 if dtype == np.float32 else 1e-13)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_columns_match_rows_of_the_transpose(dtype):
    """Column softmax over many rows (the online max/sum rescaling) against
    SciPy, with a growing trend so that the running maximum keeps growing."""
    rng = np.random.default_rng(1)
    k, inner = 1000, 300
    x = (rng.normal(size=(k, inner)) * 4 + np.linspace(0, 30, k)[:, None]).astype(dtype)
    for log in (False, True):
        f = fastsoftmax.log_softmax if log else fastsoftmax.softmax
        got = f(x, axis=0, backend="numba").astype(np.float64)
        want = _scipy(x, 0, log)
        rtol = 1e-13 if dtype == np.float64 else 1e-5
        scale = np.maximum(np.abs(want), 1.0) if log else np.abs(want)
        assert np.all(np.abs(got - want) <= rtol * scale + (0 if dtype == np.float64 else 1e-30))


def _moving_maxima(dtype):
    """(53, 280) columns whose maxima outgrow the Numba column kernel's
    references in every way (see ``test_columns_reference_moves``)."""
    group = nb_softmax.COL_GROUP
    k = 6 * group + 5
    rng = np.random.default_rng(7)
    x = rng.normal(size=(k, 280)) * 0.1  # a spread below the headroom: no column moves
    jump = 50.0
    for j in range(10):                          # one or two columns move in a group
        x[group * (1 + j % 5) + j % group:, j] += jump * (1 + j % 3)
    x[3 * group + 2:, 200:240] += jump           # 40 columns move in one group
    x[6 * group + 1:, 240:250] += jump           # in the ragged group
    x[:2 * group, 250:260] = -np.inf             # -inf first, then finite
    x[:, 260:270] += 2.0 * np.arange(k)[:, None]  # a ramp: moves in every group
    x[:, 270] = -np.inf
    x[k - 2, 270] = 3.0                          # one finite value, in the ragged group
    x[:, 271] -= 10.0
    x[40, 271] = 30.0                            # a dominant max
    x[:, 272] -= 1e30                            # huge negative, then a jump
    x[k // 2:, 272] += 1e30
    x[:, 273:] = rng.normal(size=(k, 7)) * 5     # spread: moves now and then
    return x.astype(dtype)


def _cols_1_and_2_threads(x, log):
    """The column kernel's result for 2-D ``x`` along axis 0, checked to be
    the same bits at 1 and 2 threads."""
    outs = []
    for n_threads in (1, 2):
        out = np.empty_like(x)
        nb_softmax.softmax_cols(x[None], out[None], log, n_threads)
        outs.append(out)
    np.testing.assert_array_equal(outs[0], outs[1])
    return outs[0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("log", [False, True])
def test_columns_reference_moves(dtype, log):
    """Softmax's first pass over columns takes exponentials against a
    per-column reference that trails the running max by at most
    ``COL_HEADROOM`` (float32 log_softmax's: by nothing, the exponentials
    equal to 1 counted apart) and moves when the max outgrows it: one
    column at a time (few move in a group), by vector passes (many move in
    a group), or in the last, ragged group.  Every such column, and those
    after -inf rows, gives SciPy's result; softmax at a column's max (where
    the old and new references differ most) to a few ulps, as before they
    moved, log_softmax within 2 eps of ``max(|y|, 1)`` (its result at the
    max is near 0); and identically at 1 and 2 threads."""
    group = nb_softmax.COL_GROUP
    k = 6 * group + 5
    x = _moving_maxima(dtype)
    # the first 200 columns alone: few move in any group (one at a time)
    assert 2 * nb_softmax.COL_SCAN < 200 <= nb_softmax.COL_BLOCK
    eps = np.finfo(dtype).eps
    for cols in (slice(0, 200), slice(None)):
        xc = np.ascontiguousarray(x[:, cols])
        want = _scipy(xc, 0, log)
        got = _cols_1_and_2_threads(xc, log).astype(np.float64)
        assert np.array_equal(np.isneginf(got), np.isneginf(want))
        if log:
            fin = np.isfinite(want)
            tol = (2 * eps if dtype == np.float32 else 1e-13) * np.maximum(np.abs(want[fin]), 1)
            assert np.all(np.abs(got[fin] - want[fin]) <= tol)
            continue
        rtol = 1e-5 if dtype == np.float32 else 1e-13
        np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-30)
        at_max = want.argmax(axis=0), np.arange(xc.shape[1])
        # float64: the sum's own rounding (the code before references: up to 6 eps)
        ulps = (3 if dtype == np.float32 else 8) * eps
        assert np.all(np.abs(got[at_max] - want[at_max]) <= ulps * want[at_max])
    one = np.arange(k) == k - 2
    np.testing.assert_array_equal(got[:, 270], np.where(one, 0.0, -np.inf) if log else one * 1.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_columns_with_moving_maxima_every_backend(backend, dtype):
    """The same columns through the public API on every backend: axis 0 of
    the array, the last axis of its transpose (not contiguous), and a
    read-only input, against SciPy."""
    x = _moving_maxima(dtype)
    ro = x.copy()
    ro.setflags(write=False)
    for f in (fastsoftmax.softmax, fastsoftmax.log_softmax):
        log = f is fastsoftmax.log_softmax
        want = _scipy(x, 0, log)
        fin = np.isfinite(want)
        tol = (1e-5 if dtype == np.float32 else 1e-13) * np.abs(want[fin]) + 1e-30
        if log:
            tol = (2 * np.finfo(dtype).eps if dtype == np.float32 else 1e-13) \
                * np.maximum(np.abs(want[fin]), 1)
        with np.errstate(divide="ignore"):
            for got in (f(x, axis=0, backend=backend), f(x.T, axis=-1, backend=backend).T,
                        f(ro, axis=0, backend=backend)):
                assert got.dtype == dtype
                assert np.array_equal(np.isfinite(got), fin)
                assert np.all(np.abs(got[fin].astype(np.float64) - want[fin]) <= tol)


def _long_moving_maxima(dtype):
    """Columns long and wide enough for float32 log_softmax's references
    (``COL_REF_LOG_K`` rows, a block of ``COL_REF_LOG_W`` columns or more):
    ``_moving_maxima``'s as the last rows, after rows like its first (-inf
    stays -inf first, a huge negative column stays so), then columns of
    spread values, whose maxima move often in the first rows and now and
    then later, and special values."""
    short = _moving_maxima(np.float64)
    k = nb_softmax.COL_REF_LOG_K + short.shape[0]   # a ragged last group
    w = nb_softmax.COL_REF_LOG_W + 88
    rng = np.random.default_rng(11)
    x = rng.normal(size=(k, w)) * 3
    x[:-short.shape[0], :280] = short[0] + rng.normal(size=(k - short.shape[0], 280)) * 0.01
    x[-short.shape[0]:, :280] = short
    x[:, 590] -= 40.0
    x[9000, 590] = 10.0                              # a dominant max, mid-column
    x[100, 591] = np.nan
    x[200, 592] = np.inf
    x[[3, k - 1], 593] = np.inf                      # two +inf
    x[:, 594] = -np.inf
    x[7, 595] = np.nan
    x[8, 595] = np.inf
    return x.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_long_columns_reference_moves(dtype):
    """Long, wide column blocks (float32 log_softmax: softmax's references
    with no headroom, moved one column at a time, by vector passes, and in
    the ragged last group) against SciPy: log_softmax within 2 eps of
    ``max(|y|, 1)``, softmax to 1e-5 (float32) relative, NaN where SciPy's
    is; the same bits at 1 and 2 threads and through the public API for
    axis 0 and a read-only input; the transposed last axis (a copy's rows)
    within the same bounds."""
    x = _long_moving_maxima(dtype)
    k, w = x.shape
    assert k >= nb_softmax.COL_REF_LOG_K and nb_softmax.COL_BLOCK >= w >= nb_softmax.COL_REF_LOG_W
    assert k % nb_softmax.COL_GROUP
    eps = np.finfo(dtype).eps
    ro = x.copy()
    ro.setflags(write=False)
    for log in (False, True):
        f = fastsoftmax.log_softmax if log else fastsoftmax.softmax
        with np.errstate(all="ignore"):
            want = _scipy(x, 0, log)
            kern = _cols_1_and_2_threads(x, log)
            api = [f(x, axis=0, backend="numba"), f(x.T, axis=-1, backend="numba").T,
                   f(ro, axis=0, backend="numba")]
        np.testing.assert_array_equal(api[0], kern)
        np.testing.assert_array_equal(api[2], kern)
        fin = np.isfinite(want)
        if log:
            tol = (2 * eps if dtype == np.float32 else 1e-13) * np.maximum(np.abs(want[fin]), 1)
        else:
            tol = (1e-5 if dtype == np.float32 else 1e-13) * np.abs(want[fin]) + 1e-30
        for got in (kern, api[1]):  # api[1]: the rows of a copy
            got = got.astype(np.float64)
            assert np.array_equal(np.isnan(got), np.isnan(want))
            assert np.array_equal(np.isinf(got), np.isinf(want))
            assert np.isnan(got[:, [591, 595]]).all()
            assert np.all(np.abs(got[fin] - want[fin]) <= tol)


_WIDTHS = (2048, 1024, 512, 256, 128, 64)


def _cols_every_width(x, log):
    """The column kernel's result for 3-D ``x`` (axis 1), checked to be the
    same bits at every block width and 1 and 2 threads, in place too, with
    nothing written beside an unaligned output."""
    one = np.empty_like(x)
    nb_softmax.softmax_cols(x, one, log, 1, nb_softmax.COL_BLOCK)
    for cb in _WIDTHS:
        for n_threads in (1, 2):
            pad = np.full(x.shape[:2] + (x.shape[2] + 2,), 7.0, x.dtype)
            nb_softmax.softmax_cols(x, pad[:, :, 1:-1], log, n_threads, cb)
            np.testing.assert_array_equal(pad[:, :, 1:-1], one, err_msg=f"{cb} {n_threads}")
            assert np.all(pad[:, :, [0, -1]] == 7.0)
        y = x.copy()
        nb_softmax.softmax_cols(y, y, log, 2, cb)
        np.testing.assert_array_equal(y, one)
    return one


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("shape", [(1, 3000, 600), (1, 200, 4096 + 300), (3, 500, 1000)])
def test_column_blocks_of_every_width_same_bits(dtype, log, shape):
    """The column kernel's blocks (``col_width``: narrowed for many threads)
    change nothing but speed: blocks of 2048 down to 64 columns, 1 and 2
    threads, give the same bits, with maxima that grow all along, a ramp
    (spans where many columns move: vector passes), a few columns that move
    together in one span (one at a time), a jump, special values; SciPy's
    values.  (The choice between the two was once the block's: 1 ulp apart
    between block widths.)"""
    rng = np.random.default_rng(9)
    k = shape[1]
    x = rng.normal(size=shape) * 4 + np.linspace(0, 20, k)[:, None]  # maxima that keep growing
    x[:, :, 100:140] += 2.0 * np.arange(k)[:, None]                   # a ramp: every group moves
    x[:, k // 2:, 150:170] += 60.0                                    # a jump, 20 columns
    x[:, k // 3:, 300:304] += 40.0                                    # a jump, 4 columns of a span
    x[:, k // 4:, 513] += 40.0                                        # one column (a span of its own)
    x = x.astype(dtype)
    x[0, 7, 3] = np.nan
    x[0, :, 5] = -np.inf
    x[-1, 11, 9] = np.inf
    one = _cols_every_width(x, log)
    want = _scipy(x, 1, log)
    np.testing.assert_array_equal(np.isnan(one), np.isnan(want))
    ok = np.isfinite(want)
    rtol = 1e-13 if dtype == np.float64 else 2e-5  # float32: x - max to half an ulp of itself
    scale = np.maximum(np.abs(want[ok]), 1.0) if log else np.abs(want[ok])
    assert np.all(np.abs(one[ok] - want[ok]) <= rtol * scale + (0 if dtype == np.float64 else 1e-37))


def test_long_column_blocks_of_every_width_same_bits():
    """Float32 log_softmax of long columns takes softmax's references where
    the ``COL_BLOCK``-wide block holding the columns is at least
    ``COL_REF_LOG_W`` wide, whatever the narrower block the kernel runs: the
    same bits at every width (``_long_moving_maxima``'s columns, 600 wide)."""
    x = _long_moving_maxima(np.float32)
    assert x.shape[1] >= nb_softmax.COL_REF_LOG_W > min(_WIDTHS)
    with np.errstate(all="ignore"):
        _cols_every_width(x[None], True)


@pytest.mark.parametrize("outer, inner, n_threads, width", [
    (1, 4096, 1, 2048), (1, 4096, 2, 2048), (1, 4096, 4, 1024), (1, 4096, 8, 512),
    (1, 4096, 12, 512), (1, 4096, 16, 256), (1, 1024, 2, 512), (1, 5000, 2, 512),
    (1, 16, 2, 64), (1, 700, 1, 1024), (3, 600, 16, 128), (64, 4096, 16, 2048)])
def test_column_block_width_rule(outer, inner, n_threads, width):
    """``col_width``: halved from ``COL_BLOCK`` while at least twice
    ``inner``, then while that lowers the columns the busiest thread takes
    (the Cython kernel's rule)."""
    assert nb_softmax.col_width(outer, inner, n_threads) == width


def test_column_block_width_checked():
    x = np.zeros((1, 3, 100))
    for cb in (32, 96, 4096):
        with pytest.raises(ValueError, match="column block"):
            nb_softmax.softmax_cols(x, np.empty_like(x), False, 1, cb)


@pytest.mark.parametrize("case", ["scales", "dominant", "ties"])
def test_long_columns_float32_log_softmax_precision(case):
    """Float32 log_softmax of long, wide blocks (softmax's references, no
    headroom) held to test_softmax's float32 bounds for the other paths:
    within 2 eps of ``max(|y|, 1)`` of SciPy's float64 result over scales
    from flat to peaked columns; at a max that dominates its column by a
    gap, -log(sum) as SciPy's float64 sum gives it (exactly 0 where that
    sum is exactly 1); at a max reached 1 to 3 times (integer logits),
    -log(count + rest) to float precision, up to an ulp of 1 per group of
    rows (the float64 sum's, near the count: on these long columns
    SciPy's own result at the max is further off)."""
    k, w = nb_softmax.COL_REF_LOG_K + 3, nb_softmax.COL_REF_LOG_W
    rng = np.random.default_rng(3)
    eps = np.finfo(np.float32).eps
    cols = np.arange(w)
    if case == "scales":
        xs = [(rng.standard_normal((k, w)) * scale).astype(np.float32) for scale in (0.1, 1.0, 10.0, 30.0)]
    elif case == "dominant":
        gaps = np.array([8.0, 15.0, 20.0, 30.0, 35.0, 36.0, 37.5, 40.0, 60.0, 100.0])
        x = np.repeat(np.linspace(-80.0, -60.0, k)[:, None], w, axis=1)
        at = (cols * 7919) % (k - 1)
        x[at, cols] = 3.0
        x[at + 1, cols] = 3.0 - gaps[cols % len(gaps)]
        xs = [x.astype(np.float32)]
    else:
        x = -20.0 - (cols % 5) * 4.0 - rng.integers(0, 40, (k, w))
        for j in cols:
            x[rng.choice(k, size=1 + j % 3, replace=False), j] = 3.0
        xs = [x.astype(np.float32)]
    for x in xs:
        got = fastsoftmax.log_softmax(x, axis=0, backend="numba").astype(np.float64)
        want = _scipy(x, 0, True)
        assert np.all(np.abs(got - want) <= 2 * eps * np.maximum(np.abs(want), 1))
        if case == "scales":
            continue
        # at the max, against -log(n + rest) with rest summed apart (SciPy's
        # float64 sum adds rest's tiny terms to the max's 1, one rounding
        # each: 11% off here); the kernel adds each group's rest to a
        # float64 sum near n, an ulp of 1 per group at most
        at_max = x == x.max(axis=0)
        x64 = x.astype(np.float64)
        n = at_max.sum(axis=0)
        rest = np.where(at_max, 0.0, np.exp(x64 - x64.max(axis=0))).sum(axis=0)
        exact = -(np.log(n) + np.log1p(rest / n))
        bound = 3 * eps * np.abs(exact) + -(-k // nb_softmax.COL_GROUP) * 2.0 ** -53
        assert np.all(np.abs(got[x.argmax(axis=0), cols] - exact) <= bound)
        if case == "dominant":
            gone = np.exp(x.astype(np.float64) - 3.0).sum(axis=0) - 1.0 < 2.0 ** -54
            assert gone.any() and (~gone).any()
            np.testing.assert_array_equal(got[x.argmax(axis=0), cols][gone], 0.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("k", [37, 39])
def test_columns_streaming_stores_change_nothing(monkeypatch, dtype, log, k):
    """The column kernel's writing pass with streaming stores (through
    scratch rows, softmax four at a time; row counts leaving 1 and 3 rows
    over, unaligned outputs, in place) gives the same bits as with plain
    stores."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(k, 2 * nb_softmax.COL_BLOCK + 75)).astype(dtype)
    f = fastsoftmax.log_softmax if log else fastsoftmax.softmax
    plain = f(x, axis=0, backend="numba")
    monkeypatch.setattr(nb_softmax, "NT_MIN_BYTES", 0)
    # (the columns stream only where a store fills a line: AVX-512; forced here on every host)
    monkeypatch.setattr(nb_softmax, "_LINE_STORES", True)
    np.testing.assert_array_equal(f(x, axis=0, backend="numba"), plain)
    wide = np.zeros((x.shape[0], x.shape[1] + 1), dtype=dtype)
    f(x, axis=0, out=wide[:, 1:], backend="numba")  # rows not 64-byte aligned
    np.testing.assert_array_equal(wide[:, 1:], plain)
    y = x.copy()
    f(y, axis=0, out=y, backend="numba")
    np.testing.assert_array_equal(y, plain)


@pytest.mark.parametrize("nt", [False, True])
@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("data", ["ramp", "flat"])
@pytest.mark.parametrize("dtype,k,inner", [(np.float32, 203, 31), (np.float64, 203, 31),
                                           (np.float32, nb_softmax.COL_REF_LOG_K + 6, 527)])
def test_column_vectors_and_tail_same_bits(monkeypatch, dtype, k, inner, data, log, nt):
    """The column kernel's first pass takes the whole 64-byte vectors of a
    block's columns in explicit vector code (``_vstep8``, with prefetches on
    large arrays) and the last columns, a partial vector, in scalar code: a
    column gives the same bits in either.  The tail columns (special values,
    a wide spread) are put again into the first vector of columns.  A
    column's bits may depend on its span of ``COL_SCAN`` columns (how many of
    them outgrew their references in a group, ``_col_again``), so the data
    make that the same for both: a ramp along the rows (every column's max
    grows in every group) or values in [0, 1) (no max outgrows softmax's
    headroom; log_softmax's reference path, which has none, is only taken on
    the ramp).  The float32 case of 527 columns of 16390 rows takes that
    path (``COL_REF_LOG_K``, ``COL_REF_LOG_W``)."""
    if data == "flat" and log and k >= nb_softmax.COL_REF_LOG_K:
        pytest.skip("no headroom on log_softmax's reference path: see the docstring")
    rng = np.random.default_rng(5)
    x = rng.random((k, inner))
    if data == "ramp":
        x += np.arange(k)[:, None]
    x = x.astype(dtype)
    x[:, -2] *= 30
    x[7, -3] = np.nan
    x[11, -4] = np.inf
    x[:, -5] = -np.inf
    x[5, -6] = -np.inf
    lanes = 64 // x.itemsize
    first = inner - inner % lanes  # the first column of the scalar tail
    assert inner - first >= 6
    y = x.copy()
    y[:, :inner - first] = x[:, first:]
    if nt:
        monkeypatch.setattr(nb_softmax, "NT_MIN_BYTES", 0)
        monkeypatch.setattr(nb_softmax, "_LINE_STORES", True)
    f = fastsoftmax.log_softmax if log else fastsoftmax.softmax
    with np.errstate(all="ignore"):
        gx = f(x, axis=0, backend="numba")
        gy = f(y, axis=0, backend="numba")
    np.testing.assert_array_equal(gy[:, :inner - first], gx[:, first:])
    np.testing.assert_array_equal(gy[:, inner - first:], gx[:, inner - first:])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [100, 1000, 4099])
def test_cross_entropy_streaming_stores_change_nothing(monkeypatch, dtype, k):
    """The fused cross-entropy's gradient pass from the stored exponentials
    with streaming stores (with and without class weights) gives the same
    bits as with plain stores: serial and parallel, unaligned rows, in
    place, with an ignored target, special rows, and a row without a finite
    max (not stored: its own pass)."""
    rng = np.random.default_rng(k)
    z = _special_rows((rng.normal(size=(37, k)) * 4).astype(dtype), rng)
    z[5] = -np.inf  # no finite max
    y = rng.integers(0, k, 37)
    y[3] = -100
    ce = fastsoftmax.cross_entropy_grad
    n = fastsoftmax.get_num_threads()
    try:
        for threads, kw in ((1, {}), (2, {}), (2, dict(weight=rng.random(k), label_smoothing=0.1))):
            fastsoftmax.set_num_threads(threads)
            monkeypatch.setattr(nb_softmax, "NT_MIN_BYTES", 16 << 20)
            loss, plain = ce(z, y, backend="numba", **kw)
            monkeypatch.setattr(nb_softmax, "NT_MIN_BYTES", 0)
            loss2, g = ce(z, y, backend="numba", **kw)
            assert loss2 == loss or (np.isnan(loss) and np.isnan(loss2))
            np.testing.assert_array_equal(g, plain)
            wide = np.zeros((z.shape[0], k + 1), dtype=dtype)
            ce(z, y, grad_out=wide[:, 1:], backend="numba", **kw)  # rows not 64-byte aligned
            np.testing.assert_array_equal(wide[:, 1:], plain)
            zz = z.copy()
            ce(zz, y, grad_out=zz, backend="numba", **kw)
            np.testing.assert_array_equal(zz, plain)
    finally:
        fastsoftmax.set_num_threads(n)


def _special_rows(x, rng):
    """Special values in a few rows: NaN, +inf, -inf, an all -inf row, a
    row far above the others."""
    n, k = x.shape
    hot = rng.integers(0, k, size=3)
    if n > 1:
        x[1, hot[0]] = np.nan
    if n > 2:
        x[2, hot[1]] = np.inf
        x[2, hot[2]] = -np.inf
    if n > 3:
        x[3] = -np.inf
    if n > 4:
        x[4, hot] = 80 if x.dtype == np.float32 else 700
    return x


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [100, 2047, 2048, 2049, 3000, 5003, 32000, 70000])
def test_rows_same_bits_for_every_kernel_and_thread_count(dtype, k, restore_threads):
    """Softmax and log_softmax of rows give the same bits whichever compiled
    kernel computes them: serial (C-contiguous, strided, in place) or
    parallel, at 1, 2 and 3 threads; the kernels are separate compilations,
    so any summation order left to LLVM could differ between them.  Each
    row alone gives its bits too (softmax and log_softmax of several rows
    of 2048+ elements go through pipelines over rows,
    ``_rows_scratch_piped`` and ``_rows_log_scratch_piped``, whose rows
    with a +inf or NaN max leave it for a row; a row alone does not)."""
    rng = np.random.default_rng(k)
    for n in (1, 2, 3, 5, 37):
        if n * k > 1_000_000 and n > 5:
            continue
        x = _special_rows((rng.normal(size=(n, k)) * 4).astype(dtype), rng)
        wide = np.empty((n, k + 3), dtype=dtype)
        wide[:, 1:k + 1] = x
        strided = wide[:, 1:k + 1]  # rows not contiguous: the strided kernels
        for f in (fastsoftmax.softmax, fastsoftmax.log_softmax):
            fastsoftmax.set_num_threads(1)
            want = f(x, axis=-1, backend="numba")
            for r in range(n):
                np.testing.assert_array_equal(f(x[r:r + 1], axis=-1, backend="numba"), want[r:r + 1])
            for threads in (1, 2, 3):
                fastsoftmax.set_num_threads(threads)
                np.testing.assert_array_equal(f(x, axis=-1, backend="numba"), want)
                np.testing.assert_array_equal(f(strided, axis=-1, backend="numba"), want)
                out = np.full((n, k + 3), np.nan, dtype=dtype)
                f(x, axis=-1, out=out[:, 2:k + 2], backend="numba")
                np.testing.assert_array_equal(out[:, 2:k + 2], want)
                y = x.copy()
                f(y, axis=-1, out=y, backend="numba")
                np.testing.assert_array_equal(y, want)
                w = wide.copy()
                f(w[:, 1:k + 1], axis=-1, out=w[:, 1:k + 1], backend="numba")
                np.testing.assert_array_equal(w[:, 1:k + 1], want)


def _small_k(dtype):
    return nb_softmax.SMALL_K_F32 if np.dtype(dtype) == np.float32 else nb_softmax.SMALL_K_F64


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scratch_rows_match_scipy(dtype):
    """Rows of SMALL_K+ elements, one at a time (whole-vector max, then
    the exponentials and their sum: in out below 2048 elements, through a
    scratch row with the next row prefetched above), with lengths that
    leave every kind of remainder, against SciPy."""
    rng = np.random.default_rng(3)
    small = _small_k(dtype)
    for k in (small, small + 1, 100, 127, 128, 129, 511, 512, 513, 2048, 2111, 4096 + 63, 9999):
        x = _special_rows((rng.normal(size=(6, k)) * 5).astype(dtype), rng)
        for log in (False, True):
            f = fastsoftmax.log_softmax if log else fastsoftmax.softmax
            got = f(x, axis=-1, backend="numba").astype(np.float64)
            want = _scipy(x, -1, log)
            np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
            ok = ~np.isnan(want)
            rtol = 1e-5 if dtype == np.float32 else 1e-14
            # log_softmax near 0 (a dominant max: x - max = 0, log(sum) with
            # sum near 1) has an absolute error of an ulp or two of the sum,
            # whatever the order of summation: relative to the small result
            # that is unbounded (float64, AVX2's order of the sum against
            # NumPy's: 8e-14 at -0.0028)
            atol = 4 * np.finfo(dtype).eps if log else 1e-30
            np.testing.assert_allclose(got[ok], want[ok], rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 7, 8, 9, 10, 15, 16, 17, 24, 31, 32, 33, 47, 63])
def test_short_rows_every_lane_of_the_row_blocks(dtype, k):
    """Short rows (``k < SMALL_K_F32 / SMALL_K_F64``, float32 to 63, float64 to 31:
    ``SMALL_LANES_F32`` / ``SMALL_LANES_F64`` rows per block, one lane each of
    a 64-byte vector) for row counts
    around the block size, with NaN, +inf, -inf, an all -inf row and a
    far-off value in every lane in turn: SciPy's result, and the same bits
    from strided rows, a strided output and in place."""
    if k >= _small_k(dtype):
        pytest.skip("one row at a time in this dtype (test_scratch_rows_match_scipy)")
    lanes = nb_softmax.SMALL_LANES_F32 if dtype == np.float32 else nb_softmax.SMALL_LANES_F64
    rng = np.random.default_rng(k)
    specials = (np.nan, np.inf, -np.inf, None, 80.0 if dtype == np.float32 else 700.0)
    for n in (1, lanes - 1, lanes, lanes + 1, 2 * lanes + 3):
        x = (rng.normal(size=(n, k)) * 4).astype(dtype)
        for r in range(n):
            special = specials[r % len(specials)]
            if special is None:
                x[r] = -np.inf
            else:
                x[r, rng.integers(0, k)] = special
        wide = np.zeros((n, k + 3), dtype=dtype)
        wide[:, 1:k + 1] = x
        for log in (False, True):
            f = fastsoftmax.log_softmax if log else fastsoftmax.softmax
            got = f(x, axis=-1, backend="numba")
            want = _scipy(x, -1, log)
            np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
            ok = ~np.isnan(want)
            rtol = 1e-5 if dtype == np.float32 else 1e-13
            np.testing.assert_allclose(got[ok].astype(np.float64), want[ok], rtol=rtol, atol=1e-30)
            np.testing.assert_array_equal(f(wide[:, 1:k + 1], axis=-1, backend="numba"), got)
            out = np.full((n, k + 3), 7, dtype=dtype)
            f(x, axis=-1, out=out[:, 2:k + 2], backend="numba")
            np.testing.assert_array_equal(out[:, 2:k + 2], got)
            assert np.all(out[:, :2] == 7) and np.all(out[:, k + 2:] == 7)
            y = x.copy()
            f(y, axis=-1, out=y, backend="numba")
            np.testing.assert_array_equal(y, got)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [2, 3, 5, 16, 17, 40, 63])
def test_short_rows_same_bits_whatever_the_block_holds(dtype, k):
    """A short row's result does not depend on the other rows of its
    block: float32 log_softmax sums a block in a fast way unless some row
    has a tie to its max, a non-finite max or a NaN, and then sums it
    again with counts, which must give the other rows the same bits.  The
    rows (a near tie among them: an element whose exponential rounds to 1
    but is not the max) alone, in clean blocks, and in blocks with every
    kind of row that takes the slow way; and SciPy's exact 0 at a dominant
    max (log_softmax of [30, -9, -200...]: 1 + e^-39 is 1 in float64)."""
    if k >= _small_k(dtype):
        pytest.skip("one row at a time in this dtype")
    lanes = nb_softmax.SMALL_LANES_F32 if dtype == np.float32 else nb_softmax.SMALL_LANES_F64
    rng = np.random.default_rng(k + 100)
    clean = (rng.normal(size=(lanes, k)) * 4).astype(dtype)
    j = rng.integers(0, k)
    clean[1] = clean[1] * np.asarray(1e-9, dtype)   # every exponential rounds to 1
    clean[2, :] = -30.0
    clean[2, j] = 30.0                                                     # a dominant max
    for r in range(3, lanes):   # one near tie: its exponential rounds to 1 (x - max = -1.5e-8
        if k > 1:               # in float32, -2.8e-17 in float64)
            clean[r] = np.minimum(clean[r], 0.1)
            clean[r, j], clean[r, (j + r) % k] = 0.2, np.nextafter(dtype(0.2), dtype(0.0))
    odd_rows = []
    for kind in ("tie", "inf", "nan", "-nan", "-inf row", "-0 max"):
        r = (rng.normal(size=k) * 4).astype(dtype)
        if kind == "tie" and k > 1:
            r[j] = r[(j + 1) % k] = r.max() + 1
        elif kind == "inf":
            r[j] = np.inf
        elif kind in ("nan", "-nan"):
            r[j] = np.nan if kind == "nan" else -np.nan
        elif kind == "-inf row":
            r[:] = -np.inf
        elif kind == "-0 max":
            r[:] = -1.0
            r[j] = -0.0
        odd_rows.append(r)
    for log in (False, True):
        f = fastsoftmax.log_softmax if log else fastsoftmax.softmax
        together = f(clean, axis=-1, backend="numba")
        for i in range(lanes):
            np.testing.assert_array_equal(f(clean[i:i + 1], axis=-1, backend="numba")[0], together[i])
        for odd in odd_rows:
            for at in (0, lanes // 2, lanes - 1):
                x = clean.copy()
                x[at] = odd
                got = f(x, axis=-1, backend="numba")
                keep = np.arange(lanes) != at
                np.testing.assert_array_equal(got[keep], together[keep])
                np.testing.assert_array_equal(np.isnan(got[at]), np.isnan(_scipy(x[at:at + 1], -1, log)[0]))
        if log:
            row = np.array([[30.0, -9.0] + [-200.0] * (k - 2)])
            got = f(row.astype(dtype), axis=-1, backend="numba")
            np.testing.assert_array_equal(got, _scipy(row, -1, True).astype(dtype))
            assert got[0, 0] == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_short_rows_same_bits_with_either_store_code(monkeypatch, dtype):
    """The short-row blocks turn their tiles around by whole 64-byte tiles
    with masked stores where the host has AVX-512, by 32-byte subtiles with
    stores of whole pieces elsewhere (``_MASKED_STORES``, read when a
    kernel compiles): a kernel compiled with the other choice (valid LLVM
    either way) writes the same bits, and nothing past the rows."""
    import numba

    monkeypatch.setattr(nb_softmax, "_MASKED_STORES", not nb_softmax._MASKED_STORES)
    other = numba.njit(nb_softmax._rows_serial, fastmath=nb_softmax._FM)
    lanes = 64 // np.dtype(dtype).itemsize
    rng = np.random.default_rng(11)
    for k in (1, 3, 5, 8, 10, 13, 16, 17, 31, 33, 63):
        if k >= _small_k(dtype):
            continue
        for n in (1, 5, lanes, lanes + 3):
            x = (rng.normal(size=(n, k)) * 4).astype(dtype)
            x[0, k // 2] = np.inf if n > 1 else x[0, k // 2]
            for log in (False, True):
                want = np.empty_like(x)
                nb_softmax.softmax_rows(x, want, log, 1)
                out = np.full((n, k + 5), 7, dtype=dtype)
                xf, xo, xs, _ = nb_softmax.flat(x)
                of, oo, os, _ = nb_softmax.flat(out[:, 2:k + 2])
                other(xf, xo, xs, of, oo, os, n, k, log)
                np.testing.assert_array_equal(out[:, 2:k + 2], want)
                assert np.all(out[:, :2] == 7) and np.all(out[:, k + 2:] == 7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("log", [False, True])
def test_fast_path_declines_what_it_cannot_take(dtype, log):
    """The public fast path leaves shapes, C order, alignment and overlap
    to the compiled kernel, which must decline (the general path then
    checks, copies or raises): each case gives the right result or error."""
    f = fastsoftmax.log_softmax if log else fastsoftmax.softmax
    rng = np.random.default_rng(5)
    x = rng.normal(size=(8, 6)).astype(dtype)
    want = f(x.copy(), axis=-1, backend="numpy")
    tol = dict(rtol=1e-5 if dtype == np.float32 else 1e-13, atol=1e-30)
    # out of another shape, or read-only: the usual errors
    with pytest.raises(ValueError, match="shape"):
        f(x, axis=-1, out=np.empty((8, 5), dtype=dtype), backend="numba")
    ro = np.empty_like(x)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only|writeable"):
        f(x, axis=-1, out=ro, backend="numba")
    # a Fortran-ordered out, a transposed x: not C-contiguous
    out = np.asfortranarray(np.empty_like(x))
    f(x, axis=-1, out=out, backend="numba")
    np.testing.assert_allclose(out, want, **tol)
    xt = np.ascontiguousarray(x.T).T
    np.testing.assert_allclose(f(xt, axis=1, backend="numba"), want, **tol)
    # an out overlapping x without being x: x shifted by one row in one buffer
    buf = np.zeros((9, 6), dtype=dtype)
    buf[1:] = x
    f(buf[1:], axis=-1, out=buf[:8], backend="numba")
    np.testing.assert_allclose(buf[:8], want, **tol)
    # unaligned data
    raw = np.zeros(x.nbytes + 1, dtype=np.uint8)
    xu = raw[1:].view(dtype).reshape(x.shape)
    xu[...] = x
    assert not xu.flags.aligned
    np.testing.assert_allclose(f(xu, axis=-1, backend="numba"), want, **tol)
