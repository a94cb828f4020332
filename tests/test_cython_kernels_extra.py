"""Extra checks of the Cython backend's kernels: the accuracy of the
table-driven float64 exp (AVX-512) against an extended-precision reference."""
import numpy as np
import pytest

K = pytest.importorskip("fastsoftmax.kernels.cython_backend._kernels")

EXTENDED = np.finfo(np.longdouble).nmant >= 63  # x86 80-bit long double


@pytest.fixture(params=K._isa_available())
def isa(request):
    prev = K._set_isa(request.param)
    yield request.param
    K._set_isa(prev)


@pytest.mark.skipif(not EXTENDED, reason="needs an extended-precision long double")
def test_exp_float64_error_against_extended_precision(isa):
    """The float64 exp is within 0.56 ulp of exp (the table-driven one of
    AVX-512: 0.5 ulp for the final rounding plus a few hundredths), and
    within 1.05 ulp for the polynomial-only exp of the other instruction
    sets; the branch-free one for x <= 0 gives the same bits."""
    rng = np.random.default_rng(7)
    x = np.concatenate([np.linspace(-708.0, 708.0, 400_001),
                        rng.uniform(-20.0, 20.0, 400_000),
                        rng.uniform(-0.05, 0.05, 100_000)])
    want = np.exp(x.astype(np.longdouble))
    spacing = np.spacing(np.exp(x))
    got = K._exp(x)
    err = np.abs((got.astype(np.longdouble) - want) / spacing).astype(np.float64)
    assert err.max() <= (0.56 if isa == "avx512" else 1.05)
    neg = x[x <= 0]
    np.testing.assert_array_equal(K._exp(neg, nonpositive=True), K._exp(neg))


def test_exp_float64_table_entries(isa):
    """Exactly the powers of two and the 16ths of ln 2 (the table's own
    entries, j = 0..15), on both sides of the subnormal boundary."""
    j = np.arange(-16 * 1080, 16 * 1030, dtype=np.float64)
    x = j * (np.log(2.0) / 16)
    with np.errstate(over="ignore", under="ignore"):
        want = np.exp(x)
        got = K._exp(x)
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    np.testing.assert_array_equal(got == 0, want == 0)
    finite = np.isfinite(want) & (want > 0)
    ulp = np.abs(got[finite] - want[finite]) / np.spacing(want[finite])
    assert ulp.max() <= 1.0


def _log_softmax_ref(x):
    x = x.astype(np.float64)
    m = np.max(np.where(np.isnan(x), -np.inf, x), axis=1, keepdims=True)
    shift = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        s = np.sum(np.exp(x - shift), axis=1, keepdims=True)
        return (x - shift) - np.log(s)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 7, 31, 32, 33, 70])
@pytest.mark.parametrize("k", [1, 5, 16, 33, 64])
def test_short_row_log_softmax_blocks(isa, dtype, n, k):
    """Short rows take their logs in blocks of rows (transposed sums): every
    row count, special rows anywhere in a block, near-zero outputs."""
    rng = np.random.default_rng(n * 100 + k)
    x = (rng.standard_normal((n, k)) * 4).astype(dtype)
    if k > 1:
        x[::5, 0] = 60  # one dominant entry: outputs near 0
    specials = [np.nan, np.inf, -np.inf]
    for i, v in enumerate(specials):
        if 3 * i + 2 < n:
            x[3 * i + 2, (i * 7) % k] = v
    if n > 9:
        x[9] = -np.inf
    out = np.empty_like(x)
    K.softmax_rows(x, out, True, 1)
    want = _log_softmax_ref(x)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(want))
    atol = 16 * np.finfo(dtype).eps * max(1.0, float(np.abs(want[np.isfinite(want)]).max(initial=1.0)))
    rtol = 2e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(out, want, rtol=rtol, atol=atol, equal_nan=True)
    near0 = np.isfinite(want) & (np.abs(want) < 1e-10)
    # near 0 the relative error stays at the precision of the dtype
    if near0.any():
        np.testing.assert_allclose(out[near0], want[near0], rtol=4 * np.finfo(dtype).eps)


@pytest.mark.parametrize("k", [65, 100, 257, 1000, 1029])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_row_log_softmax_float32_near_zero_wherever_the_max_is(isa, k, n_threads):
    """float32 log_softmax of rows in cache sums the exponentials in float
    blocks, with the max's column rotated into an accumulator that leaves
    out exp(0) = 1: the outputs near 0 (-log(sum), sum just above 1) keep
    their relative accuracy with the max at every lane of the first groups
    of four vectors (each instruction set), in later blocks and in the
    tail; ties in one column (counted), in two columns and everywhere."""
    rng = np.random.default_rng(k)
    places = sorted(set(range(min(k, 130))) | {k // 2, k - 41, k - 17, k - 2, k - 1})
    rows = []
    for p in places:
        r = rng.uniform(-28.0, -17.0, k)   # the sum's part below 1: 1e-8 .. 1e-5
        r[p] = 0.0
        rows.append(r)
    for p, q in [(0, 64), (5, 69), (k - 70, k - 6), (3, 4), (0, k - 1)]:
        if not (0 <= p < k and 0 <= q < k):
            continue
        r = rng.uniform(-28.0, -17.0, k)
        r[p] = r[q] = 0.0
        rows.append(r)
    rows.append(np.zeros(k))
    rows.append(np.linspace(-30.0, 0.0, k))
    x = (np.array(rows) + 3.0).astype(np.float32)   # a max that is not 0
    out = np.full_like(x, np.nan)
    K.softmax_rows(x, out, True, n_threads)
    want = _log_softmax_ref(x)
    eps = np.finfo(np.float32).eps
    np.testing.assert_allclose(out, want, rtol=2e-6, atol=16 * eps * 30.0)
    top = want.max(axis=1)   # -log(sum): 1e-8 .. 1e-5 below 0 for the single-max rows
    assert (top[: len(places)] > -2e-5).all() and (top[: len(places)] < -1e-9).all()
    got_top = out[np.arange(len(rows)), np.argmax(x, axis=1)]
    np.testing.assert_allclose(got_top, top, rtol=8 * eps)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 48, 63, 64])
def test_short_rows_same_bits_in_a_block_alone_and_at_any_thread_count(isa, dtype, k):
    """Short rows go through blocks of W rows turned around (one row per
    lane); the rows left over go through a block of their own.  A row's
    result depends on that row alone: computed alone, in a block at any
    lane, at 1, 2 and 3 threads (other blocks and leftovers), strided or in
    place, the bits are the same; special rows anywhere (NaN, +inf, -inf,
    all -inf, all equal, a dominant entry, a +inf max for log_softmax's
    clamped exp) leave their neighbours alone."""
    import fastsoftmax
    rng = np.random.default_rng(k)
    n = 37
    x = (rng.standard_normal((n, k)) * 4).astype(dtype)
    specials = [np.nan, np.inf, -np.inf, None, "zero", 60.0, "small"]
    for r in range(n):
        sp = specials[r % len(specials)]
        if sp is None:
            x[r] = -np.inf
        elif sp == "zero":
            x[r] = 0.0
        elif sp == "small":
            x[r] *= 1e-6
        elif r % 3 == 0:
            x[r, rng.integers(k)] = sp
    for log in (False, True):
        want = np.empty_like(x)
        for r in range(n):
            K.softmax_rows(x[r:r + 1], want[r:r + 1], log, 1)
        for threads in (1, 2, 3):
            out = np.full_like(x, 7.0)
            K.softmax_rows(x, out, log, threads)
            np.testing.assert_array_equal(out, want)
        f = fastsoftmax.log_softmax if log else fastsoftmax.softmax
        wide = np.zeros((n, k + 3), dtype=dtype)
        wide[:, 1:k + 1] = x
        np.testing.assert_array_equal(f(wide[:, 1:k + 1], axis=-1, backend="cython"), want)
        y = x.copy()
        f(y, axis=-1, out=y, backend="cython")
        np.testing.assert_array_equal(y, want)
        ref = _log_softmax_ref(x) if log else None
        if log:
            np.testing.assert_array_equal(np.isnan(want), np.isnan(ref))


@pytest.mark.parametrize("k", [2, 5, 16, 17, 40, 64])
def test_short_row_float32_log_softmax_near_zero_as_a_double_sum(isa, k):
    """float32 log_softmax of short rows: the exponentials other than 1 are
    summed in float, the ones counted, and log(count + sum) taken with the
    sum's rounding error kept, rounded as a double sum rounds it: the output
    at a dominant max is -log1p(s) to float precision (s down to 2^-52),
    and exactly 0 where a float64 sum of the exponentials is exactly 1
    (SciPy's result).  Ties (two, three maxima) keep log(2 + s), log(3 + s)."""
    eps = np.finfo(np.float32).eps
    rows = []
    gaps = [8.0, 15.0, 20.0, 25.0, 30.0, 35.0, 36.0, 36.5, 37.0, 38.0, 45.0, 100.0]
    for g in gaps:
        r = np.full(k, -np.inf)
        r[0] = 0.0
        if k > 1:
            r[1:] = -g - np.arange(k - 1) * 0.25
        rows.append(r)
    x = np.array(rows) + 2.5
    if k > 2:
        tie2 = x[2].copy()
        tie2[k // 2] = tie2[0]
        tie3 = tie2.copy()
        tie3[k - 1] = tie3[0]
        x = np.vstack([x, tie2, tie3])
    x = x.astype(np.float32)
    out = np.empty_like(x)
    K.softmax_rows(x, out, True, 1)
    x64 = x.astype(np.float64)
    m = x64.max(axis=1, keepdims=True)
    top = x64 == m
    n_max = top.sum(axis=1)
    s = np.where(top, 0.0, np.exp(x64 - m)).sum(axis=1)   # the terms below 1, exactly enough
    want_top = -np.log(n_max + s)
    got_top = out[np.arange(len(x)), np.argmax(x, axis=1)].astype(np.float64)
    single = n_max == 1
    gone = single & (s < 2.0 ** -54)     # 1 + s is 1 in double
    assert gone.any() and (single & ~gone).any()
    np.testing.assert_array_equal(got_top[gone], 0.0)
    keep = ~gone
    # float precision, plus the double sum's own rounding (half an ulp of 1)
    assert (np.abs(got_top[keep] - want_top[keep]) <= 3 * eps * np.abs(want_top[keep]) + 2.0 ** -53).all()
    # (the reference adds its terms to 1 one by one: a few roundings of 1)
    np.testing.assert_allclose(out, _log_softmax_ref(x), rtol=2 * eps, atol=2.0 ** -49)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [1024, 2048, 2500, 4099, 32000, 50257])
def test_long_rows_same_bits_alone_together_and_pipelined(isa, dtype, k):
    """Softmax and log_softmax of two or more rows of 2048 elements to
    sm_pipe_bytes (256 KB) in a thread's share go through a pipeline over
    rows (row i's sum writes row i - 1's result as it goes, rows_sm_piped,
    rows_log_piped); a row alone, shorter rows and rows past 256 KB go row
    by row (log_softmax's rows of at most 4 KB through rows_log_incache).  The bits are
    the same either way: each row alone, all rows at 1, 2 and 3 threads,
    pipelined or not (sm_pipe_bytes = 0), with and without streaming
    stores, in place, and into rows of ``out`` that are not 64-byte
    aligned; special values (NaN, +-inf, an all -inf row, a dominant entry)
    stay in their own rows and match SciPy's pattern."""
    import fastsoftmax
    scipy_special = pytest.importorskip("scipy.special")
    rng = np.random.default_rng(k)
    n = 5
    x = (rng.standard_normal((n, k)) * 4).astype(dtype)
    hot = rng.integers(0, k, size=3)
    x[1, hot[0]] = np.nan
    x[2, hot[1]] = np.inf
    x[3] = -np.inf
    x[4, hot[2]] = 80 if dtype == np.float32 else 700
    prev_threads = fastsoftmax.get_num_threads()
    prev = K._get_config()
    try:
        for log in (False, True):
            want = np.empty_like(x)
            for r in range(n):
                K.softmax_rows(x[r:r + 1], want[r:r + 1], log, 1)
            ref = scipy_special.log_softmax if log else scipy_special.softmax
            expect = ref(x.astype(np.float64), axis=-1)
            np.testing.assert_array_equal(np.isnan(want), np.isnan(expect))
            ok = np.isfinite(expect)
            atol = {(np.float32, True): 1e-6, (np.float64, True): 1e-12}.get(
                (dtype, log), 4 * np.finfo(dtype).smallest_subnormal)  # softmax: subnormal results
            np.testing.assert_allclose(want[ok], expect[ok], rtol=2e-5 if dtype == np.float32 else 1e-13,
                                       atol=atol)
            for nt_min, pipe in ((prev["nt_min_bytes"], prev["sm_pipe_bytes"]), (1, prev["sm_pipe_bytes"]),
                                 (0, prev["sm_pipe_bytes"]), (1, 0), (0, 0)):
                K._set_config(nt_min_bytes=nt_min, sm_pipe_bytes=pipe)  # (nt: default, always, never)
                for threads in (1, 2, 3):
                    out = np.full_like(x, 7.0)
                    K.softmax_rows(x, out, log, threads)
                    np.testing.assert_array_equal(out, want)
                    wide = np.full((n, k + 5), 7.0, dtype=dtype)  # rows of out at 4 or 8 bytes past a line
                    K.softmax_rows(x, wide[:, 1:k + 1], log, threads)
                    np.testing.assert_array_equal(wide[:, 1:k + 1], want)
                    assert (wide[:, 0] == 7).all() and (wide[:, k + 1:] == 7).all()
                    y = x.copy()
                    K.softmax_rows(y, y, log, threads)
                    np.testing.assert_array_equal(y, want)
            K._set_config(**prev)
            fastsoftmax.set_num_threads(2)
            f = fastsoftmax.log_softmax if log else fastsoftmax.softmax
            np.testing.assert_array_equal(f(x, axis=-1, backend="cython"), want)
    finally:
        K._set_config(**prev)
        fastsoftmax.set_num_threads(prev_threads)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("shape", [(1, 3000, 600), (1, 200, 4096 + 300), (3, 500, 1000)])
def test_column_blocks_narrowed_for_threads_same_bits(isa, dtype, log, shape):
    """The column kernel narrows its blocks (down to 64 columns) while that
    lowers the columns the busiest thread takes: 1, 2, 3, 12 and 16 threads
    (block widths 2048 down to 64 here) give the same bits, with maxima that
    grow all along, a ramp and a jump (the running sums rescaled), SciPy's
    values, in place too, and nothing written beside an unaligned output."""
    sc = pytest.importorskip("scipy.special")
    rng = np.random.default_rng(9)
    k = shape[1]
    x = rng.normal(size=shape) * 4 + np.linspace(0, 20, k)[:, None]  # maxima that keep growing
    x[:, :, 100:140] += 2.0 * np.arange(k)[:, None]                   # a ramp: every group moves
    x[:, k // 2:, 150:170] += 60.0                                    # a jump
    x = x.astype(dtype)
    x[0, 7, 3] = np.nan
    x[0, :, 5] = -np.inf
    x[-1, 11, 9] = np.inf
    prev = K._set_config(par_min_elems=1)
    try:
        one = np.empty_like(x)
        K.softmax_cols(x, one, log, 1)
        for n_threads in (2, 3, 12, 16):
            pad = np.full(x.shape[:2] + (x.shape[2] + 2,), 7.0, dtype)
            K.softmax_cols(x, pad[:, :, 1:-1], log, n_threads)
            np.testing.assert_array_equal(pad[:, :, 1:-1], one)
            assert np.all(pad[:, :, [0, -1]] == 7.0)
            y = x.copy()
            K.softmax_cols(y, y, log, n_threads)
            np.testing.assert_array_equal(y, one)
    finally:
        K._set_config(**prev)
    with np.errstate(all="ignore"):
        want = (sc.log_softmax if log else sc.softmax)(x.astype(np.float64), axis=1)
    np.testing.assert_array_equal(np.isnan(one), np.isnan(want))
    ok = np.isfinite(want)
    # float32: x - max rounds to half an ulp of itself (|x - max| up to ~50 here)
    rtol = 1e-13 if dtype == np.float64 else 2e-5
    scale = np.maximum(np.abs(want[ok]), 1.0) if log else np.abs(want[ok])
    assert np.all(np.abs(one[ok] - want[ok]) <= rtol * scale + (0 if dtype == np.float64 else 1e-37))
