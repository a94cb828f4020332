"""Tests specific to the Numba backend: its exp, layouts, code paths, threads.

The conformance suites (test_softmax.py, test_cross_entropy.py) run this
backend through the public API; here the kernels are called directly, to
reach every internal path (serial / parallel / in-place, long rows split in
chunks, columns with special values) and to check properties the public API
cannot see (bit-identical results across thread counts and paths).
"""
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("numba")

import fastsoftmax  # noqa: E402
from fastsoftmax.kernels import reference  # noqa: E402

if fastsoftmax.available_backends()["numba"] is not True:  # pragma: no cover
    pytest.skip("the numba backend does not load here", allow_module_level=True)

from fastsoftmax.kernels import numba_backend as nb  # noqa: E402
from fastsoftmax.kernels.numba_backend import _exp  # noqa: E402
from fastsoftmax.kernels.numba_backend import softmax as nb_softmax  # noqa: E402

DTYPES = [np.float32, np.float64]
LONG = nb_softmax.LONG_ROW + 1000   # a row length that takes the chunked path


def _ulp_error(got, dtype, exact):
    """|got - exact| in units of the last place of exact rounded to dtype."""
    exact_rounded = exact.astype(dtype)
    spacing = np.spacing(np.abs(exact_rounded)).astype(np.float64)
    return np.abs(got.astype(np.float64) - exact) / spacing


def _ref_rows(x, log):
    out = np.empty(x.shape, dtype=np.float64)
    reference.softmax_rows(x.astype(np.float64), out, log)
    return out


def _assert_close(got, want, dtype, log):
    rtol = 1e-13 if dtype == np.float64 else 1e-5
    got = got.astype(np.float64)
    scale = np.maximum(np.abs(want), 1.0) if log else np.abs(want)
    with np.errstate(invalid="ignore"):
        ok = (np.isnan(got) & np.isnan(want)) | (got == want) | (np.abs(got - want) <= rtol * scale)
    assert ok.all(), f"max error {np.nanmax(np.abs(got - want) / scale)}"


# ------------------------------------------------------------------- exp
@pytest.mark.parametrize("dtype", DTYPES)
def test_exp_accuracy_sweep(dtype):
    rng = np.random.default_rng(0)
    lo, hi = (-745.2, 709.8) if dtype == np.float64 else (-104.0, 88.8)
    x = np.concatenate([rng.uniform(lo, hi, 200_000), rng.uniform(-1, 1, 50_000),
                        rng.uniform(lo, lo + 40, 50_000)]).astype(dtype)
    got = np.empty_like(x)
    _exp.vexp(x, got)
    with np.errstate(over="ignore", under="ignore"):
        exact = np.exp(x.astype(np.float64))  # float64 exp: ~0.5 ulp of float64
    normal = (np.abs(exact) >= np.finfo(dtype).tiny) & (exact < np.finfo(dtype).max)
    err = _ulp_error(got[normal], dtype, exact[normal])
    # float64: compared with NumPy's exp, itself within about 0.5 ulp
    limit = 1.5 if dtype == np.float64 else 1.1
    assert err.max() <= limit, f"max {err.max()} ulp at x={x[normal][err.argmax()]!r}"
    # subnormal results: within one subnormal step of the exact value
    sub = (exact > 0) & ~normal & (exact < 1)
    step = np.finfo(dtype).smallest_subnormal
    assert np.all(np.abs(got[sub].astype(np.float64) - exact[sub]) <= step)


@pytest.mark.parametrize("dtype", DTYPES)
def test_exp_special_values(dtype):
    info = np.finfo(dtype)
    x = np.array([np.nan, -np.inf, np.inf, 0.0, -0.0, 1.0, -1e30, 1e30, 1000.0, -1000.0],
                 dtype=dtype)
    got = np.empty_like(x)
    _exp.vexp(x, got)
    assert np.isnan(got[0])
    assert got[1] == 0 and got[2] == np.inf
    assert got[3] == 1 and got[4] == 1
    assert got[5] == np.exp(dtype(1)) or abs(got[5] - np.e) <= 2 * np.spacing(dtype(np.e))
    assert got[6] == 0 and got[7] == np.inf and got[8] == np.inf and got[9] == 0
    # the extremes of the range: SciPy's softmax([0, -745]) = [1, 5e-324]
    if dtype == np.float64:
        t = np.array([-745.0, -745.2, 709.7, 709.8])
        _exp.vexp(t, got[:4])
        assert got[0] == info.smallest_subnormal and got[1] == 0
        assert np.isfinite(got[2]) and got[3] == np.inf


@pytest.mark.parametrize("dtype", DTYPES)
def test_fast_exp_matches_exp_on_its_range(dtype):
    x = np.linspace(float(_exp.FAST_MIN32 if dtype == np.float32 else _exp.FAST_MIN64), 0.0,
                    100_001).astype(dtype)
    a = np.empty_like(x)
    b = np.empty_like(x)
    _exp.vexp(x, a)
    _exp.vexp_fast(x, b)
    np.testing.assert_array_equal(a, b)
    nan = np.array([np.nan], dtype=dtype)
    _exp.vexp_fast(nan, a[:1])
    assert np.isnan(a[0])


# ------------------------------------------------------------ import cost
def test_import_fastsoftmax_does_not_import_numba():
    code = ("import sys, fastsoftmax; fastsoftmax.softmax([1.0, 2.0], backend='numpy'); "
            "print('numba' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "False"


@pytest.mark.slow  # compiles all 38 kernel variants: minutes on a cold cache
def test_warmup_compiles_every_kernel():
    seconds = nb.warmup()
    assert seconds >= 0
    from fastsoftmax.kernels.numba_backend import cross_entropy as nb_ce
    for kernel in nb_softmax.ALL_KERNELS + nb_ce.ALL_KERNELS:
        assert set(kernel.dispatchers) >= {"f", "d"}
        for disp in kernel.dispatchers.values():
            assert len(disp.overloads) == 1


# -------------------------------------------------------------- softmax
def _layouts(x):
    """Views of x (2-D) in the rows layout: sliced, reversed, broadcast."""
    yield "contiguous", x
    yield "row-sliced", x[::2]
    yield "col-sliced", x[:, 3:-2]
    yield "reversed", x[::-1]
    yield "broadcast", np.broadcast_to(x[-1], x.shape)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (64, 10), (50, 700), (3, LONG), (9, LONG)])
def test_rows_layouts_threads_inplace(dtype, log, shape):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(shape) * 8).astype(dtype)
    if shape[1] < 5:
        x = np.concatenate([x, x, x, x, x, x], axis=1)
    for name, view in _layouts(x):
        want = _ref_rows(view, log)
        outs = []
        for n_threads in (1, 2, 3):
            out = np.empty(view.shape, dtype=dtype)
            nb.softmax_rows(view, out, log, n_threads)
            outs.append(out)
        _assert_close(outs[0], want, dtype, log)
        for other in outs[1:]:
            np.testing.assert_array_equal(outs[0], other, err_msg=name)
        # strided output, and in place
        big = np.full((view.shape[0], view.shape[1] + 5), 7.0, dtype=dtype)
        nb.softmax_rows(view, big[:, 2:-3], log, 2)
        np.testing.assert_array_equal(big[:, 2:-3], outs[0])
        assert np.all(big[:, :2] == 7) and np.all(big[:, -3:] == 7)
        if name != "broadcast":
            buf = view.copy()
            nb.softmax_rows(buf, buf, log, 2)
            np.testing.assert_array_equal(buf, outs[0], err_msg=name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("log", [False, True])
def test_long_row_paths_agree(dtype, log):
    # few long rows: chunks in parallel; many: one row per task.  Same bits.
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((6, LONG)) * 5).astype(dtype)
    all_rows = np.empty_like(x)
    nb.softmax_rows(x, all_rows, log, 2)
    for i in range(x.shape[0]):
        one = np.empty_like(x[i:i + 1])
        nb.softmax_rows(x[i:i + 1], one, log, 2)
        np.testing.assert_array_equal(one[0], all_rows[i])
    _assert_close(all_rows, _ref_rows(x, log), dtype, log)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("k", [5, 40, 100, 3000, LONG])
def test_rows_special_values(dtype, log, k):
    # k: short rows in blocks, a row in cache, through a scratch row, in chunks
    rng = np.random.default_rng(3)
    x = rng.standard_normal((14, k)).astype(dtype)
    far = nb_softmax.CHUNK * 2 + 3 if k == LONG else k - 1
    x[0, 0] = np.nan
    x[1, far] = np.inf
    x[2, [0, far]] = np.inf
    x[3] = -np.inf
    x[4, : k // 2] = -np.inf                 # whole -inf chunks when k is long
    x[5, far] = -np.inf
    x[6, 1] = -np.inf
    x[6, far] = np.nan
    x[7] = -np.inf
    x[7, far] = 0.0
    x[8, 0] = -745.0 if dtype == np.float64 else -103.0
    x[8, 1:] = 0.0
    x[9] *= 1e30                             # huge magnitudes
    x[10, 2] = np.inf
    x[10, far] = -np.inf
    x[11] = 1e-3 * x[11] - 900               # far from 0, small spread
    x[12] = np.nan                           # NaN only: the max is NaN (every vector's max -inf)
    x[13, : k // 2] = np.nan                 # whole NaN chunks when k is long,
    x[13, k // 2:] = -np.inf                 # the others -inf only
    out = np.empty_like(x)
    nb.softmax_rows(x, out, log, 2)
    with np.errstate(all="ignore"):
        want = np.empty_like(x)
        reference.softmax_rows(x, want, log)   # SciPy's formulas in the same dtype
    _assert_close(out, want.astype(np.float64), dtype, log)
    assert np.array_equal(np.isnan(out), np.isnan(want))


def test_subnormal_result_like_scipy():
    out = np.empty((1, 2))
    nb.softmax_rows(np.array([[0.0, -745.0]]), out, False, 1)
    assert out[0, 0] == 1.0 and out[0, 1] == 5e-324


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("shape", [(1, 5, 2), (3, 7, 9), (2, 300, 700), (1, 2000, 40)])
def test_cols_against_reference(dtype, log, shape):
    rng = np.random.default_rng(4)
    x = (rng.standard_normal(shape) * 6).astype(dtype)
    if shape == (3, 7, 9):
        x[0, 2, 3] = np.nan
        x[1, :, 4] = -np.inf
        x[2, 1, 5] = np.inf
        x[1, [0, 3], 1] = -np.inf
        x[1, [0, 1], 2] = -np.inf
        x[2, [2, 5], 6] = np.inf
    want = np.empty(shape)
    reference.softmax_cols(x.astype(np.float64), want, log)
    outs = []
    for n_threads in (1, 2):
        out = np.empty_like(x)
        nb.softmax_cols(x, out, log, n_threads)
        outs.append(out)
    _assert_close(outs[0], want, dtype, log)
    np.testing.assert_array_equal(outs[0], outs[1])
    buf = x.copy()
    nb.softmax_cols(buf, buf, log, 2)
    np.testing.assert_array_equal(buf, outs[0])
    # negative strides: outer axis (same bits), reduced axis (summed in
    # another order, so only close)
    out = np.empty_like(x)
    nb.softmax_cols(x[::-1], out, log, 2)
    np.testing.assert_array_equal(out, outs[0][::-1])
    nb.softmax_cols(x[:, ::-1], out, log, 2)
    _assert_close(out[:, ::-1], want, dtype, log)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("log", [False, True])
def test_streaming_store_paths(dtype, log, monkeypatch):
    # outputs of >= NT_MIN_BYTES (read at call time) are written with
    # streaming stores: same bits as the ordinary stores, for every thread
    # count, strided (unaligned) output, in place, special values
    rng = np.random.default_rng(7)
    rows = (rng.standard_normal((3, LONG)) * 5).astype(dtype)
    rows[0, 5] = np.nan
    rows[1, 100] = np.inf
    rows[2, : nb_softmax.CHUNK * 2 + 7] = -np.inf
    cols = (rng.standard_normal((2, 300, 533)) * 6).astype(dtype)
    cols[0, 2, 3] = np.nan
    cols[1, :, 4] = -np.inf
    cols[1, 1, 5] = np.inf
    # rows of whole 64-byte vectors (streamed straight from the loops), two
    # column blocks, 4 * 16 + 3 rows (the writing pass's remainder)
    cols64 = (rng.standard_normal((2, 67, nb_softmax.COL_BLOCK + 144)) * 6).astype(dtype)
    cols64[0, 2, 3] = np.nan
    cols64[1, :, nb_softmax.COL_BLOCK + 2] = -np.inf
    cols64[1, 66, 7] = np.inf
    cases = [("rows", rows, nb.softmax_rows), ("cols", cols, nb.softmax_cols),
             ("cols64", cols64, nb.softmax_cols)]
    plain = {}
    for name, x, fn in cases:
        out = np.empty_like(x)
        fn(x, out, log, 2)
        plain[name] = out
    want = np.empty_like(rows)
    with np.errstate(all="ignore"):
        reference.softmax_rows(rows, want, log)
    _assert_close(plain["rows"], want.astype(np.float64), dtype, log)
    assert np.array_equal(np.isnan(plain["rows"]), np.isnan(want))
    want = np.empty(cols.shape)
    with np.errstate(all="ignore"):
        reference.softmax_cols(cols.astype(np.float64), want, log)
    _assert_close(plain["cols"], want, dtype, log)
    want = np.empty(cols64.shape)
    with np.errstate(all="ignore"):
        reference.softmax_cols(cols64.astype(np.float64), want, log)
    _assert_close(plain["cols64"], want, dtype, log)
    monkeypatch.setattr(nb_softmax, "NT_MIN_BYTES", 0)
    # (the columns stream only where a store fills a line: AVX-512; forced here on every host)
    monkeypatch.setattr(nb_softmax, "_LINE_STORES", True)
    for name, x, fn in cases:
        for n_threads in (1, 2, 3):
            out = np.empty_like(x)
            fn(x, out, log, n_threads)
            np.testing.assert_array_equal(out, plain[name], err_msg=name)
        big = np.full(x.shape[:-1] + (x.shape[-1] + 5,), 7.0, dtype=dtype)
        fn(x, big[..., 1:-4], log, 2)
        np.testing.assert_array_equal(big[..., 1:-4], plain[name], err_msg=name)
        assert np.all(big[..., :1] == 7) and np.all(big[..., -4:] == 7)
        # a row stride of whole 64-byte vectors, from one item past a boundary
        lanes = 64 // x.itemsize
        pad = np.full(x.shape[:-1] + (x.shape[-1] + 2 * lanes,), 7.0, dtype=dtype)
        start = (-pad.ctypes.data % 64) // x.itemsize + 1
        fn(x, pad[..., start:start + x.shape[-1]], log, 2)
        np.testing.assert_array_equal(pad[..., start:start + x.shape[-1]], plain[name], err_msg=name)
        assert np.all(pad[..., :start] == 7) and np.all(pad[..., start + x.shape[-1]:] == 7)
        buf = x.copy()
        fn(buf, buf, log, 2)
        np.testing.assert_array_equal(buf, plain[name], err_msg=name)


def test_unusual_strides_are_copied_not_misread():
    # a row stride that is not a multiple of the item size, and unaligned data
    rec = np.zeros(6, dtype=[("a", "f8", (5,)), ("b", "i1")])
    rec["a"] = np.arange(30.0).reshape(6, 5) / 7
    field = rec["a"]                                # row stride 41 bytes
    assert field.strides[0] % 8 != 0
    raw = np.zeros(6 * 5 * 8 + 1, dtype=np.uint8)[1:].view(np.float64).reshape(6, 5)
    raw[...] = np.arange(30.0).reshape(6, 5) / 7
    assert not raw.flags.aligned
    for x in (field, raw):
        out = np.empty(x.shape)
        nb.softmax_rows(x, out, False, 2)
        np.testing.assert_allclose(out, _ref_rows(x, False), rtol=1e-13)
        out_u = np.zeros(6 * 5 * 8 + 1, dtype=np.uint8)[1:].view(np.float64).reshape(6, 5)
        nb.softmax_rows(x, out_u, True, 2)
        np.testing.assert_allclose(out_u, _ref_rows(x, True), rtol=1e-13)


# --------------------------------------------------------------- threads
def test_thread_safe_layer_selected():
    import numba
    x = np.random.default_rng(5).standard_normal((256, 512))
    nb.softmax_rows(x, np.empty_like(x), False, 2)
    if numba.config.NUMBA_NUM_THREADS > 1:
        assert numba.threading_layer() in ("omp", "tbb")


def test_concurrent_calls_from_python_threads():
    rng = np.random.default_rng(6)
    xs = [(rng.standard_normal((300, 500)) * 3).astype(dt) for dt in (np.float32, np.float64) * 4]
    wants = []
    for x in xs:
        out = np.empty_like(x)
        nb.softmax_rows(x, out, False, 1)
        wants.append(out)

    def work(i):
        x = xs[i % len(xs)]
        out = np.empty_like(x)
        nb.softmax_rows(x, out, False, 1 + i % 3)
        cols = np.empty((3, 100, 500), dtype=x.dtype)
        nb.softmax_cols(x.reshape(3, 100, 500), cols, True, 2)
        return out

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(work, range(48)))
    for i, got in enumerate(results):
        np.testing.assert_array_equal(got, wants[i % len(xs)])


# ---------------------------------------------------------- cross-entropy
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("shape", [(5, 3), (64, 1000)])
def test_cross_entropy_paths_agree(dtype, eps, weighted, shape):
    rng = np.random.default_rng(7)
    n, c = shape
    z = (rng.standard_normal(shape) * 3).astype(dtype)
    z[2, 1] = np.nan
    y = rng.integers(0, c, n)
    y[3] = -100
    w = rng.random(c) + 0.5 if weighted else None
    t = rng.random(shape).astype(dtype)
    t /= t.sum(axis=1, keepdims=True)
    for kernel, args in (
        (nb.cross_entropy_index_rows, (y, w, -100, eps, 0.25)),
        (nb.cross_entropy_prob_rows, (t, w, eps, 0.25)),
    ):
        ref_kernel = getattr(reference, kernel.__name__)
        loss_ref, grad_ref = np.empty(n), np.empty(shape)
        with np.errstate(all="ignore"):
            ref_kernel(z, *args, loss_ref, grad_ref)
        results = []
        for n_threads in (1, 2):
            loss, grad = np.empty(n), np.empty_like(z)
            kernel(z, *args, loss, grad, n_threads)
            results.append((loss, grad))
        loss, grad = results[0]
        rtol = 1e-12 if dtype == np.float64 else 2e-5
        np.testing.assert_allclose(loss, loss_ref, rtol=rtol, atol=rtol)
        np.testing.assert_allclose(grad, grad_ref, rtol=rtol, atol=rtol * 1e-2)
        assert np.isnan(loss[2]) and np.isnan(grad[2]).all()
        assert not np.isnan(np.delete(loss, 2)).any()
        if kernel is nb.cross_entropy_index_rows:
            assert loss[3] == 0 and np.all(grad[3] == 0)
        np.testing.assert_array_equal(results[1][0], loss)
        np.testing.assert_array_equal(results[1][1], grad)
        # loss only: the same losses
        loss_only = np.empty(n)
        kernel(z, *args, loss_only, None, 2)
        np.testing.assert_array_equal(loss_only, loss)
        # gradient written over the logits: the same bits
        buf = z.copy()
        loss_ip = np.empty(n)
        kernel(buf, *args, loss_ip, buf, 2)
        np.testing.assert_array_equal(loss_ip, loss)
        np.testing.assert_array_equal(buf, grad)
        # strided logits and gradient
        wide = np.zeros((n, c + 4), dtype=dtype)
        wide[:, 2:-2] = z
        gwide = np.full((n, c + 4), 9, dtype=dtype)
        loss_s = np.empty(n)
        kernel(wide[:, 2:-2], *args, loss_s, gwide[:, 1:-3], 2)
        np.testing.assert_array_equal(loss_s, loss)
        np.testing.assert_array_equal(gwide[:, 1:-3], grad)
        assert np.all(gwide[:, 0] == 9) and np.all(gwide[:, -3:] == 9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_for_nonpositive_arguments_matches_the_general_exp(dtype):
    """fexp_np (no upper clamp, one scaling) gives fexp's bits for x <= 0,
    -inf and NaN, through the subnormal range down to 0."""
    lo = -120.0 if dtype == np.float32 else -760.0
    x = np.concatenate([np.linspace(lo, 0.0, 400_001), -np.geomspace(1e-30, 1.0, 2001),
                        [-np.inf, np.nan, -0.0]]).astype(dtype)
    got, want = np.empty_like(x), np.empty_like(x)
    _exp.vexp_np(x, got)
    _exp.vexp(x, want)
    np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_vector_exps_give_the_scalar_exps_bits(dtype):
    """The exponentials written out on whole vectors (``_vec.vec_exp``,
    ``vec_exp_np``: the short-row blocks') give ``fexp``'s and
    ``fexp_np``'s bits, over their whole ranges and for inf, -inf, NaN,
    -0 and values past the clamps."""
    from fastsoftmax.kernels.numba_backend import _vec
    hi = 100.0 if dtype == np.float32 else 720.0
    lo = -120.0 if dtype == np.float32 else -760.0
    rng = np.random.default_rng(5)
    x = np.concatenate([np.linspace(lo, hi, 200_000), rng.uniform(lo, hi, 100_000),
                        -np.geomspace(1e-30, 1.0, 2000), np.geomspace(1e-30, 1.0, 2000),
                        [-np.inf, np.inf, np.nan, -0.0, 0.0, 1e30, -1e30] * 16]).astype(dtype)
    x = x[:x.size - x.size % 16]
    for np_only, scalar in ((False, _exp.vexp), (True, _exp.vexp_np)):
        xs = np.minimum(x, 0) if np_only else x  # fexp_np's range: x <= 0, -inf, NaN
        got, want = np.full_like(xs, 7.0), np.empty_like(xs)
        _vec.exp_by_vectors(xs, got, np_only)
        scalar(xs, want)
        np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))


def test_log_of_sums_against_numpy():
    """log64_ge1 (the vectorised log of log_softmax's sums of exponentials,
    x >= 1) is within 1 ulp of np.log, exact at 1, over [1, DBL_MAX]:
    near 1 (where log(x) ~ x - 1 and cancellation would show), at the
    sqrt(2) splits of its reduction, over the whole exponent range."""
    rng = np.random.default_rng(3)
    half = np.sqrt(0.5)
    x = np.concatenate([
        1.0 + rng.random(200_000) * 63.0,
        1.0 + np.geomspace(2.0**-52, 1e-3, 50_000),
        np.exp(rng.random(200_000) * 709.7),
        np.ldexp(half, np.arange(1, 1024)), np.nextafter(np.ldexp(half, np.arange(1, 1024)), 0),
        np.nextafter(np.ldexp(half, np.arange(1, 1024)), np.inf),
        [1.0, 2.0, np.e, np.finfo(np.float64).max],
    ])
    got = np.empty_like(x)
    _exp.vlog_ge1(x, got)
    want = np.log(x)
    assert got[-4] == 0.0 and got[-3] == want[-3]
    ulps = np.abs(got - want) / np.spacing(np.abs(want))
    assert ulps.max() <= 1.0, f"max {ulps.max()} ulp at x={x[ulps.argmax()]!r}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_short_row_log_softmax_sums_out_of_the_vector_log_range(dtype):
    """Rows whose sum of exponentials is not a finite number >= 1 (an all
    -inf row: 0; a row with +inf: inf or NaN; NaN) take np.log's value,
    whatever their place in a block of rows; the other rows of the block
    keep the vectorised log's."""
    from fastsoftmax.kernels import numba_backend as nb
    rng = np.random.default_rng(7)
    x = rng.standard_normal((130, 10)).astype(dtype)
    x[3] = -np.inf
    x[64, 2] = np.inf
    x[65, 5] = np.nan
    x[129, :] = np.inf
    out = np.empty_like(x)
    nb.softmax_rows(x, out, True, 1)
    want = np.empty(x.shape)
    from fastsoftmax.kernels import reference
    reference.softmax_rows(x.astype(np.float64), want, True)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(want))
    finite = ~np.isnan(want)
    tol = 1e-13 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(out[finite], want[finite], rtol=tol, atol=tol)
