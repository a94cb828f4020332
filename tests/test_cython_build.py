"""The compiled Cython backend itself: its vector exp, every code path of its
kernels (instruction sets, long rows, streaming stores, column blocks), thread
independence, argument checks, and that loading it leaves the process's
floating-point environment alone (no flush-to-zero).

The conformance suites (test_softmax.py, test_cross_entropy.py) test the
public functions on every backend; this file reaches the paths that their
small arrays and default tuning knobs do not, by turning the knobs.
"""
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import fastsoftmax
from fastsoftmax.kernels import reference as ref

K = pytest.importorskip("fastsoftmax.kernels.cython_backend._kernels",
                        reason="the Cython extension is not built")

ISAS = K._isa_available()
DTYPES = [np.float32, np.float64]
RTOL = {np.float32: 2e-6, np.float64: 1e-13}

# knob settings that push small arrays through the paths large ones take
PATHS = {
    "default": {},
    "long-rows": dict(long_row_bytes=0, chunk=64, par_min_elems=1),
    "streaming": dict(nt_min_bytes=1, scratch_min_bytes=64, par_min_elems=1),
    "long-rows-streaming": dict(long_row_bytes=0, chunk=128, nt_min_bytes=1, par_min_elems=1),
    "small-col-blocks": dict(col_block=64, col_group=3, par_min_elems=1),
    "wide-col-blocks": dict(col_block=2048, col_group=8, nt_min_bytes=1, par_min_elems=1),
}


@pytest.fixture(params=ISAS)
def isa(request):
    prev = K._set_isa(request.param)
    yield request.param
    K._set_isa(prev)


@pytest.fixture(params=list(PATHS))
def path(request):
    prev = K._set_config(**PATHS[request.param])
    yield request.param
    K._set_config(**prev)


def assert_matches(got, want, dtype, log):
    """Close to the reference; log-softmax gets an absolute tolerance near 0."""
    want = np.asarray(want)
    finite = np.abs(want[np.isfinite(want)])
    atol = 4 * np.finfo(dtype).tiny  # below the normal range precision is absolute
    if log:
        atol = 16 * np.finfo(dtype).eps * max(1.0, float(finite.max(initial=1.0)))
    np.testing.assert_allclose(got, want, rtol=RTOL[dtype], atol=atol, equal_nan=True)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))


def rows_reference(x, log):
    out = np.empty(x.shape, dtype=np.float64)
    ref.softmax_rows(x.astype(np.float64), out, log)
    return out


def special_rows(dtype, k, rng):
    """Rows with every special-value situation the contract names."""
    base = rng.standard_normal(k).astype(dtype)
    rows = [base.copy()]
    for value in (np.nan, np.inf, -np.inf):
        r = base.copy()
        r[rng.integers(k)] = value
        rows.append(r)
    rows.append(np.full(k, -np.inf, dtype))                 # all -inf
    r = np.full(k, -np.inf, dtype); r[-1] = 2.0; rows.append(r)
    r = np.full(k, -np.inf, dtype); r[0] = np.nan; rows.append(r)
    r = base.copy(); r[0] = np.inf; r[-1] = np.inf; rows.append(r)
    r = base.copy(); r[0] = np.inf; r[-1] = np.nan; rows.append(r)
    r = np.full(k, -745.0 if dtype == np.float64 else -100.0, dtype); r[0] = 0; rows.append(r)
    rows.append(base * 300)
    return np.array(rows)


# ------------------------------------------------------------------ the exp

def test_isa_names():
    assert ISAS[0] == "base"
    assert K._isa() in ISAS
    with pytest.raises(ValueError, match="not available"):
        K._set_isa("sse9")


@pytest.mark.parametrize("dtype", DTYPES)
def test_exp_accuracy_dense_sweep(isa, dtype):
    lo, hi = (-760.0, 720.0) if dtype == np.float64 else (-110.0, 95.0)
    x = np.linspace(lo, hi, 400_001).astype(dtype)
    x = np.concatenate([x, -x[:1000] * 1e-3])  # around 0, both signs
    got = K._exp(x)
    with np.errstate(over="ignore", under="ignore"):
        if dtype == np.float32:  # correctly rounded float32 result
            want = np.exp(x.astype(np.float64)).astype(np.float32)
        else:
            want = np.exp(x)
    finite = np.isfinite(want)
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    np.testing.assert_array_equal(got == 0, want == 0)
    ulp = np.abs(got[finite].astype(np.float64) - want[finite]) / np.spacing(want[finite])
    assert ulp.max() <= 1.0  # also in the subnormal range (ulp = smallest subnormal)


@pytest.mark.parametrize("dtype", DTYPES)
def test_exp_special_values(isa, dtype):
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0], dtype)
    got = K._exp(x)
    assert np.isnan(got[0])
    assert got[1] == np.inf and got[2] == 0.0
    np.testing.assert_array_equal(got[3:5], [1.0, 1.0])
    np.testing.assert_allclose(got[5:], np.exp(x[5:]), rtol=np.finfo(dtype).eps)


@pytest.mark.parametrize("dtype", DTYPES)
def test_exp_nonpositive_matches_general_exp(isa, dtype):
    """The branch-free exp the kernels use on x - max: <= 1 ulp down to the
    smallest subnormal, and bit for bit the general exp."""
    lo = -760.0 if dtype == np.float64 else -110.0
    x = np.linspace(lo, 0.0, 400_001).astype(dtype)
    x = np.concatenate([x, x[-1000:] * 1e-3, [np.nan, -np.inf, -0.0, 0.0, -1e4, -1e30]]).astype(dtype)
    got = K._exp(x, nonpositive=True)
    np.testing.assert_array_equal(got, K._exp(x))
    with np.errstate(over="ignore", under="ignore"):
        want = np.exp(x.astype(np.float64)).astype(dtype)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(x))
    finite = np.isfinite(x)
    np.testing.assert_array_equal(got[finite] == 0, want[finite] == 0)
    ulp = np.abs(got[finite].astype(np.float64) - want[finite]) / np.spacing(want[finite])
    assert ulp.max() <= 1.0
    with pytest.raises(ValueError, match="needs arguments <= 0"):
        K._exp(np.array([1.0], dtype), nonpositive=True)


def test_exp_subnormal_range_float64(isa):
    x = np.array([-708.5, -720.0, -740.0, -745.0, -745.13, -745.14, -746.0, -1000.0])
    np.testing.assert_array_equal(K._exp(x), np.exp(x))
    assert K._exp(np.array([-745.0]))[0] == 5e-324


# ------------------------------------------------------------ softmax kernels

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("k", [1, 3, 8, 17, 100, 1000])
def test_rows_special_values_every_path(isa, path, dtype, log, k):
    rng = np.random.default_rng(k)
    x = special_rows(dtype, k, rng)
    want = rows_reference(x, log)
    for n_threads in (1, 2):
        out = np.empty_like(x)
        with np.errstate(all="ignore"):
            K.softmax_rows(x, out, log, n_threads)
        assert_matches(out, want, dtype, log)


@pytest.mark.parametrize("k", [2, 5, 16, 40])
def test_short_row_log_sum_to_the_last_bits(isa, k):
    """Short rows take log(sum) with the kernels' own vector log, a block of
    rows at once: against log1p in float64, from sums just above 1 (values
    near 0 that cancel) to sums of k (ties), and 0 / inf / NaN sums."""
    a = np.concatenate([np.geomspace(1e-300, 1.0, 300), np.geomspace(1.0, 700.0, 60)])
    x = np.zeros((a.size, k))
    x[:, 1:] = -a[:, None]                       # sum = 1 + (k - 1) exp(-a)
    want = x - np.log1p((k - 1) * np.exp(-a))[:, None]
    out = np.empty_like(x)
    K.softmax_rows(x, out, True, 1)
    # the sum itself is a double rounded a few times: a few ulps of 1, absolute
    np.testing.assert_allclose(out, want, rtol=4e-16, atol=4 * np.finfo(float).eps)
    ties = np.zeros((3, k)) - np.arange(3)[:, None]   # all equal: sum = k
    K.softmax_rows(ties, out[:3], True, 1)
    np.testing.assert_allclose(out[:3], np.log(np.full((3, k), 1.0 / k)), rtol=4e-16)
    special = np.zeros((4, k))
    special[0] = -np.inf
    special[1, 0] = np.inf
    special[2, -1] = np.nan
    special[3, :] = 5.0
    with np.errstate(all="ignore"):
        K.softmax_rows(special, out[:4], True, 1)
    assert np.isnan(out[0]).all() and np.isnan(out[2]).all()
    assert np.isnan(out[1, 0]) and (k == 1 or np.isneginf(out[1, 1:]).all())
    np.testing.assert_allclose(out[3], np.full(k, -np.log(k)), rtol=4e-16)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("log", [False, True])
def test_rows_strides_and_in_place(isa, path, dtype, log):
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((6, 300)) * 4).astype(dtype)
    views = [x[::-1], x[::2], x[1:, 7:250], np.broadcast_to(x[2], (5, 300))]
    for v in views:
        out = np.empty((v.shape[0], v.shape[1] + 9), dtype)[:, 3:3 + v.shape[1]]
        K.softmax_rows(v, out, log, 2)
        assert_matches(out, rows_reference(v, log), dtype, log)
    y = x.copy()
    K.softmax_rows(y, y, log, 2)
    assert_matches(y, rows_reference(x, log), dtype, log)


def special_columns(dtype, shape, rng):
    x = (rng.standard_normal(shape) * 5).astype(dtype)
    k = shape[1]
    for j in range(shape[2]):
        col = x[:, :, j]
        kind = j % 9
        if kind == 1:
            col[:, rng.integers(k)] = np.nan
        elif kind == 2:
            col[:, rng.integers(k)] = np.inf
        elif kind == 3:
            col[:, rng.integers(k)] = -np.inf
        elif kind == 4:
            col[:] = -np.inf
        elif kind == 5:
            col[:] = -np.inf
            col[:, -1] = 2.0
        elif kind == 6:
            col[:, 0] = np.inf
            col[:, -1] = np.nan
        elif kind == 7:
            col[:] = -745.0 if dtype == np.float64 else -100.0
            col[:, -1] = 0.0
        elif kind == 8:
            col *= 300
    return x


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("shape", [(1, 1, 2), (2, 7, 3), (3, 40, 19), (1, 20, 150), (2, 23, 160)])
def test_cols_every_path(isa, path, dtype, log, shape):
    # (2, 23, 160): rows of whole 64-byte vectors, which streaming stores
    # write four at a time (5 * 4 rows, then 3)
    rng = np.random.default_rng(sum(shape))
    x = special_columns(dtype, shape, rng)
    want = np.empty(shape)
    with np.errstate(all="ignore"):
        ref.softmax_cols(x.astype(np.float64), want, log)
    results = []
    for n_threads in (1, 2):
        out = np.empty_like(x)
        K.softmax_cols(x, out, log, n_threads)
        assert_matches(out, want, dtype, log)
        results.append(out)
    np.testing.assert_array_equal(results[0], results[1])
    # reversed strides, strided output, in place
    v = x[::-1, ::-1]
    out = np.empty((shape[0], shape[1], shape[2] + 4), dtype)[:, :, 2:2 + shape[2]]
    K.softmax_cols(v, out, log, 2)
    assert_matches(out, want[::-1, ::-1], dtype, log)
    # a row stride of whole 64-byte vectors, from one item past a boundary
    lanes = 64 // np.dtype(dtype).itemsize
    pad = np.full((shape[0], shape[1], shape[2] + 2 * lanes), 7.0, dtype)
    start = (-pad.ctypes.data % 64) // np.dtype(dtype).itemsize + 1
    K.softmax_cols(x, pad[:, :, start:start + shape[2]], log, 2)
    np.testing.assert_array_equal(pad[:, :, start:start + shape[2]], results[0])
    assert np.all(pad[:, :, :start] == 7) and np.all(pad[:, :, start + shape[2]:] == 7)
    y = x.copy()
    K.softmax_cols(y, y, log, 2)
    assert_matches(y, want, dtype, log)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("log", [False, True])
def test_long_row_default_knobs(dtype, log):
    """A row longer than long_row_bytes: chunk partials, split across threads."""
    k = K._get_config()["long_row_bytes"] // np.dtype(dtype).itemsize + 12345
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((1, k)) * 3).astype(dtype)
    x[0, 5] = -np.inf
    outs = []
    for n_threads in (1, 2, 3):
        out = np.empty_like(x)
        K.softmax_rows(x, out, log, n_threads)
        outs.append(out)
    assert_matches(outs[0], rows_reference(x, log), dtype, log)
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0], outs[2])


@pytest.mark.parametrize("dtype", DTYPES)
def test_thread_count_does_not_change_results(path, dtype):
    rng = np.random.default_rng(8)
    x = (rng.standard_normal((33, 777)) * 3).astype(dtype)
    x3 = x.reshape(3, 11, 777)
    for log in (False, True):
        rows = [np.empty_like(x) for _ in range(3)]
        cols = [np.empty_like(x3) for _ in range(3)]
        for out_r, out_c, n_threads in zip(rows, cols, (1, 2, 5)):
            K.softmax_rows(x, out_r, log, n_threads)
            K.softmax_cols(x3, out_c, log, n_threads)
        for a in rows[1:]:
            np.testing.assert_array_equal(rows[0], a)
        for a in cols[1:]:
            np.testing.assert_array_equal(cols[0], a)


def test_unaligned_arrays():
    buf = np.zeros(8 * 50 + 1, np.uint8)
    x = np.frombuffer(buf[1:].data, dtype=np.float64).reshape(5, 10)
    assert not x.flags.aligned
    x = x.copy()  # aligned source, then make unaligned in/out views
    raw = np.zeros(8 * 50 + 1, np.uint8)
    xu = np.frombuffer(raw[1:].data, dtype=np.float64).reshape(5, 10)
    xu[...] = np.random.default_rng(0).standard_normal((5, 10))
    out_raw = np.zeros(8 * 50 + 1, np.uint8)
    out = np.ndarray((5, 10), np.float64, out_raw.data, offset=1)
    assert not xu.flags.aligned and not out.flags.aligned
    K.softmax_rows(xu, out, False, 2)
    assert_matches(out, rows_reference(np.array(xu), False), np.float64, False)
    out3 = out.reshape(1, 5, 10)
    K.softmax_cols(xu.reshape(1, 5, 10), out3, True, 2)
    want = np.empty((1, 5, 10))
    ref.softmax_cols(np.array(xu).reshape(1, 5, 10), want, True)
    assert_matches(out3, want, np.float64, True)


def test_kernel_argument_checks():
    x = np.zeros((3, 4))
    with pytest.raises(TypeError, match="float32 or float64"):
        K.softmax_rows(x.astype(np.int64), np.zeros((3, 4), np.int64), False, 1)
    with pytest.raises(TypeError, match="float32 or float64"):
        K.softmax_rows(x.astype(">f8"), x.astype(">f8"), False, 1)
    with pytest.raises(TypeError, match="out is float32"):
        K.softmax_rows(x, x.astype(np.float32), False, 1)
    with pytest.raises(ValueError, match="shape"):
        K.softmax_rows(x, np.zeros((3, 5)), False, 1)
    with pytest.raises(ValueError, match="2-D"):
        K.softmax_rows(x.ravel(), x.ravel(), False, 1)
    with pytest.raises(ValueError, match="stride of one element"):
        K.softmax_rows(np.zeros((3, 8))[:, ::2], np.zeros((3, 4)), False, 1)
    ro = np.zeros((3, 4))
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        K.softmax_rows(x, ro, False, 1)
    with pytest.raises(ValueError, match="n_threads"):
        K.softmax_rows(x, np.empty_like(x), False, 0)
    with pytest.raises(ValueError, match="3-D"):
        K.softmax_cols(x, np.empty_like(x), False, 1)
    with pytest.raises(ValueError, match="unknown knob"):
        K._set_config(speed=11)
    # empty arrays are a no-op
    K.softmax_rows(np.zeros((0, 4)), np.zeros((0, 4)), False, 2)
    K.softmax_cols(np.zeros((2, 0, 4)), np.zeros((2, 0, 4)), False, 2)


def test_concurrent_calls_from_python_threads():
    """The GIL is released around large calls; concurrent calls stay correct."""
    rng = np.random.default_rng(4)
    xs = [(rng.standard_normal((64, 700)) * 3).astype(np.float32) for _ in range(8)]
    want = [rows_reference(x, False) for x in xs]

    def run(i):
        out = np.empty_like(xs[i])
        K.softmax_rows(xs[i], out, False, 2)
        return out

    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(run, range(8)))
    for got, w in zip(outs, want):
        assert_matches(got, w, np.float32, False)


# ------------------------------------------------------- cross-entropy kernels

def ce_case(dtype, n, C, rng, special):
    z = (rng.standard_normal((n, C)) * 4).astype(dtype)
    y = rng.integers(0, C, n).astype(np.int64)
    y[1] = -100
    if special:
        z[0, rng.integers(C)] = np.nan
        z[2] = -np.inf
        z[2, y[2]] = 1.0
        z[3, (y[3] + 1) % C] = np.inf
        z[4, y[4]] = -np.inf
    return z, y


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("C", [1, 7, 300])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("eps", [0.0, 0.2])
@pytest.mark.parametrize("special", [False, True])
def test_ce_index_matches_reference(isa, dtype, C, weighted, eps, special):
    rng = np.random.default_rng(C)
    z, y = ce_case(dtype, 6, C, rng, special)
    w = rng.random(C) + 0.1 if weighted else None
    want_loss = np.empty(6)
    want_grad = np.empty_like(z)
    with np.errstate(all="ignore"):
        ref.cross_entropy_index_rows(z, y, w, -100, eps, 0.25, want_loss, want_grad)
    tol = RTOL[dtype] * 10
    for n_threads in (1, 2):
        for mode in ("separate", "in place", "loss only"):
            zz = z.copy()
            grad = {"separate": np.empty_like(z), "in place": zz, "loss only": None}[mode]
            loss = np.empty(6)
            K.cross_entropy_index_rows(zz, y, w, -100, eps, 0.25, loss, grad, n_threads)
            np.testing.assert_allclose(loss, want_loss, rtol=tol, atol=tol, equal_nan=True)
            if grad is not None:
                np.testing.assert_allclose(grad, want_grad, rtol=tol, atol=tol, equal_nan=True)
                assert np.all(grad[1] == 0)  # ignored row
    if special:
        assert np.isnan(want_loss[0])  # the NaN row is NaN, the others are not
        assert not np.isnan(want_loss[[1, 2]]).any()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("C", [1, 9, 300])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_ce_prob_matches_reference(isa, dtype, C, weighted, eps):
    rng = np.random.default_rng(C + 1)
    z = (rng.standard_normal((5, C)) * 4).astype(dtype)
    z[0, 0] = np.nan
    t = rng.random((5, C)).astype(dtype)
    t /= t.sum(axis=1, keepdims=True)
    w = rng.random(C) + 0.1 if weighted else None
    want_loss = np.empty(5)
    want_grad = np.empty_like(z)
    with np.errstate(all="ignore"):
        ref.cross_entropy_prob_rows(z, t, w, eps, 0.5, want_loss, want_grad)
    tol = RTOL[dtype] * 10
    for mode in ("separate", "in place", "loss only"):
        zz = z.copy()
        grad = {"separate": np.empty_like(z), "in place": zz, "loss only": None}[mode]
        loss = np.empty(5)
        K.cross_entropy_prob_rows(zz, t, w, eps, 0.5, loss, grad, 2)
        np.testing.assert_allclose(loss, want_loss, rtol=tol, atol=tol, equal_nan=True)
        if grad is not None:
            np.testing.assert_allclose(grad, want_grad, rtol=tol, atol=tol, equal_nan=True)
    assert np.isnan(want_loss[0]) and not np.isnan(want_loss[1:]).any()


def test_ce_kernel_checks():
    z = np.zeros((3, 4))
    loss = np.empty(3)
    with pytest.raises(IndexError, match="outside"):
        K.cross_entropy_index_rows(z, np.array([0, 4, 1]), None, -100, 0.0, 1.0, loss, None, 1)
    with pytest.raises(IndexError, match="outside"):
        K.cross_entropy_index_rows(z, np.array([0, -1, 1]), None, -100, 0.0, 1.0, loss, None, 1)
    with pytest.raises(ValueError, match="target must be a contiguous int64"):
        K.cross_entropy_index_rows(z, np.array([0, 1]), None, -100, 0.0, 1.0, loss, None, 1)
    with pytest.raises(ValueError, match="weight must be"):
        K.cross_entropy_index_rows(z, np.array([0, 1, 2]), np.ones(3), -100, 0.0, 1.0,
                                   loss, None, 1)
    with pytest.raises(ValueError, match="loss must be"):
        K.cross_entropy_index_rows(z, np.array([0, 1, 2]), None, -100, 0.0, 1.0,
                                   np.empty(3, np.float32), None, 1)
    with pytest.raises(ValueError, match="shape"):
        K.cross_entropy_index_rows(z, np.array([0, 1, 2]), None, -100, 0.0, 1.0, loss,
                                   np.empty((3, 5)), 1)
    with pytest.raises(ValueError, match="target must have the shape and dtype"):
        K.cross_entropy_prob_rows(z, np.zeros((3, 4), np.float32), None, 0.0, 1.0, loss, None, 1)


# --------------------------------------------------- floating-point environment

def test_subnormals_survive_import_and_kernels():
    """Loading the extension and running its kernels must not turn on
    flush-to-zero / denormals-are-zero (what -ffast-math at link time does)."""
    import fastsoftmax.kernels.cython_backend  # noqa: F401

    x = np.random.default_rng(0).standard_normal((64, 4096)).astype(np.float32)
    fastsoftmax.softmax(x, axis=-1, backend="cython")
    fastsoftmax.log_softmax(x.astype(np.float64), axis=0, backend="cython")
    assert np.nextafter(0.0, 1.0) > 0
    assert np.float64(2.2250738585072014e-308) / 2 != 0
    assert np.float32(1.1754944e-38) / np.float32(2) != 0
    assert np.finfo(np.float64).smallest_subnormal > 0
    # and in another thread (OpenMP workers and Python threads alike)
    seen = []
    t = threading.Thread(target=lambda: seen.append(np.float64(2.2250738585072014e-308) / 2))
    t.start()
    t.join()
    assert seen[0] != 0
    # the kernels themselves still produce subnormal results
    got = fastsoftmax.softmax(np.array([0.0, -745.0]), backend="cython")
    assert got[1] == 5e-324


def test_public_api_uses_the_kernels():
    x = np.random.default_rng(1).standard_normal((64, 10)).astype(np.float32)
    got = fastsoftmax.softmax(x, axis=-1, backend="cython")
    want = rows_reference(x, False)
    assert_matches(got, want, np.float32, False)
    assert fastsoftmax.kernels.cython_backend.NAME == "cython"
    fastsoftmax.kernels.cython_backend.warmup()


# ------------------------------------------------- the compiled fast path

class _Sub(np.ndarray):
    pass


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("want_grad", [False, True])
def test_cross_entropy_fast_matches_the_general_path(dtype, reduction, want_grad):
    """cross_entropy_fast gives exactly what the general path gives (the
    general path is forced with a Fortran-ordered copy of the logits)."""
    rng = np.random.default_rng(11)
    z = (rng.standard_normal((37, 9)) * 3).astype(dtype)
    z[3, 2] = np.nan
    z[4, 0] = -np.inf
    y = rng.integers(0, 9, 37)
    y[[5, 6]] = -100
    for eps in (0.0, 0.3, 1):
        got = K.cross_entropy_fast(z, y, -1, None, -100, reduction, eps, want_grad, None, 2)
        assert got is not None
        with fastsoftmax.use_backend("cython"):
            f = fastsoftmax.cross_entropy_grad if want_grad else fastsoftmax.cross_entropy
            want = f(np.asfortranarray(z), y, reduction=reduction, label_smoothing=eps)
        loss, grad = got
        want_loss, want_grad_ = want if want_grad else (want, None)
        assert type(loss) is type(want_loss)
        np.testing.assert_array_equal(loss, want_loss)
        if reduction == "none":
            assert loss.dtype == dtype and loss.shape == (37,)
        if want_grad:
            assert grad.dtype == dtype and grad.flags.c_contiguous
            np.testing.assert_array_equal(grad, want_grad_)
        else:
            assert grad is None
    # every target ignored: "mean" is NaN (torch's 0/0), gradients 0
    loss, grad = K.cross_entropy_fast(z, np.full(37, 7), -1, None, 7, "mean", 0.0, True, None, 1)
    assert np.isnan(loss) and not grad.any()
    # in place, and into a disjoint grad_out
    zz = z.copy()
    loss2, grad2 = K.cross_entropy_fast(zz, y, 1, None, -100, reduction, 0.0, True, zz, 1)
    assert grad2 is zz
    out = np.empty_like(z)
    loss3, grad3 = K.cross_entropy_fast(z, y, 1, None, -100, reduction, 0.0, True, out, 1)
    assert grad3 is out
    np.testing.assert_array_equal(grad2, grad3)
    np.testing.assert_array_equal(loss2, loss3)


def test_cross_entropy_fast_declines_everything_else():
    rng = np.random.default_rng(12)
    z = rng.standard_normal((6, 4))
    y = rng.integers(0, 4, 6)
    ok = dict(logits=z, target=y, axis=-1, weight=None, ignore_index=-100, reduction="mean",
              label_smoothing=0.0, want_grad=True, grad_out=None, n_threads=1)
    assert K.cross_entropy_fast(**ok) is not None
    buf = np.zeros(40)
    ro = np.empty_like(z)
    ro.flags.writeable = False
    declined = [
        dict(logits=z.T.copy().T), dict(logits=z[:, ::2], target=y), dict(logits=z[None]),
        dict(logits=z[0], target=np.int64(1)), dict(logits=z.astype(np.float16)),
        dict(logits=z.astype(int)), dict(logits=z.tolist()), dict(logits=z.view(_Sub)),
        dict(logits=np.empty((0, 4)), target=np.empty(0, np.int64)),
        dict(logits=np.empty((6, 0))),
        dict(axis=0), dict(axis=np.int64(-1)), dict(axis=None), dict(axis=True),
        dict(weight=np.ones(4)), dict(ignore_index=np.int64(-100)), dict(ignore_index=2 ** 70),
        dict(ignore_index=True), dict(reduction="avg"), dict(reduction=None),
        dict(label_smoothing=-0.1), dict(label_smoothing=1.5), dict(label_smoothing=np.nan),
        dict(label_smoothing=np.float64(0.1)), dict(label_smoothing=True),
        dict(target=y.astype(np.int32)), dict(target=y.astype(np.uint64)), dict(target=y[::-1]),
        dict(target=y.tolist()), dict(target=y[:5]), dict(target=y.astype(float)),
        dict(target=np.array([0, 1, 2, 3, 4, 0])),           # class 4 out of range
        dict(target=np.array([0, 1, -1, 3, 0, 0])),          # negative, not ignore_index
        dict(grad_out=ro), dict(grad_out=np.empty((6, 4), np.float32)),
        dict(grad_out=np.empty((4, 6))), dict(grad_out=np.empty((6, 4)).T.copy().T),
        dict(grad_out=buf[:24].reshape(6, 4), logits=buf[8:32].reshape(6, 4)),  # overlap
        dict(n_threads=0),
    ]
    for change in declined:
        args = dict(ok, **change)
        assert K.cross_entropy_fast(**args) is None, change
    # a bad class index still raises the general path's IndexError naming it
    with pytest.raises(IndexError, match=r"target\[4\] = 4"):
        fastsoftmax.cross_entropy(z, np.array([0, 1, 2, 3, 4, 0]), backend="cython")
