"""Conformance suite for cross_entropy / cross_entropy_grad on every available backend.

Each backend is compared with a float64 NumPy reference written here from
torch's documented formulas (independent of the reference kernels), with
central finite differences of the loss, and (when torch is installed) with
``torch.nn.functional.cross_entropy`` and its autograd gradient.
"""
import itertools
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

import fastsoftmax
from fastsoftmax import cross_entropy, cross_entropy_grad
from fastsoftmax._validate import AxisError

_KERNELS = ("cross_entropy_index_rows", "cross_entropy_prob_rows")
BACKENDS = [b for b, ok in fastsoftmax.available_backends().items() if ok is True]


_MISSING = {}


def _missing_kernels(name):
    """Contract kernels backend ``name`` lacks (or still stubs out), probed once."""
    if name not in _MISSING:
        module = fastsoftmax._backends._load(name)
        missing = [k for k in _KERNELS if not hasattr(module, k)]
        if not missing:
            x = np.zeros((1, 2))
            calls = {
                "cross_entropy_index_rows": (x, np.zeros(1, dtype=np.int64), None, -100,
                                             0.0, 1.0, np.empty(1), None, 1),
                "cross_entropy_prob_rows": (x, np.ones((1, 2)), None, 0.0, 1.0,
                                            np.empty(1), None, 1),
            }
            for k, args in calls.items():
                try:
                    getattr(module, k)(*args)
                except NotImplementedError:
                    missing.append(k)
        _MISSING[name] = missing
    return _MISSING[name]


@pytest.fixture(params=BACKENDS)
def backend(request):
    missing = _missing_kernels(request.param)
    if missing:
        pytest.skip(f"backend {request.param!r} does not implement {', '.join(missing)} yet")
    return request.param


RTOL = {np.float32: 2e-5, np.float64: 1e-12}
ATOL = {np.float32: 2e-6, np.float64: 1e-14}


# ------------------------------------------------------------------ the reference

def reference(logits, target, axis=-1, weight=None, ignore_index=-100,
              reduction="mean", label_smoothing=0.0):
    """float64 loss and gradient from torch's documented formulas.

    Per example n (class axis moved last), with log-probabilities ``lp``:
    index targets: ``nll_n = -w[y_n] lp[n, y_n]``, ``smooth_n = -sum_c w[c] lp[n, c]``,
    both 0 where ``y_n == ignore_index``; ``l_n = (1-eps) nll_n + eps/C smooth_n``;
    mean divides by ``sum_n w[y_n]`` over the non-ignored examples.
    probability targets: ``t' = (1-eps) t + eps/C``, ``l_n = -sum_c w[c] t'[n, c] lp[n, c]``;
    mean divides by the number of examples.
    The gradient of ``sum_n s * l_n`` (``s`` = 1 or 1/denominator) is written
    as ``s * (softmax * sum_c a_c - a)`` with ``a`` the per-class
    coefficients of ``-lp`` in ``l_n``.
    """
    z = np.moveaxis(np.asarray(logits, dtype=np.float64), axis, -1)
    batch_shape = z.shape[:-1]
    n_classes = z.shape[-1]
    z = z.reshape(-1, n_classes)
    n = z.shape[0]
    eps = label_smoothing
    w = np.ones(n_classes) if weight is None else np.asarray(weight, dtype=np.float64)
    shifted = z - z.max(axis=1, keepdims=True)
    lp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    target = np.asarray(target)
    if target.dtype.kind in "iu":
        y = target.reshape(-1).astype(np.int64)
        keep = y != ignore_index
        y0 = np.where(keep, y, 0)
        onehot = np.zeros((n, n_classes))
        onehot[np.arange(n), y0] = 1.0
        coef = ((1 - eps) * w[y0][:, None] * onehot + eps / n_classes * w[None, :])
        coef *= keep[:, None]
        denom = w[y0][keep].sum()
    else:
        t = np.moveaxis(target.astype(np.float64), axis, -1).reshape(-1, n_classes)
        coef = w * ((1 - eps) * t + eps / n_classes)
        denom = n
    losses = -(coef * lp).sum(axis=1)
    grad = np.exp(lp) * coef.sum(axis=1, keepdims=True) - coef
    if reduction == "none":
        loss = losses.reshape(batch_shape)
    elif reduction == "sum":
        loss = losses.sum()
    else:
        loss = losses.sum() / denom
        grad = grad / denom
    grad = np.moveaxis(grad.reshape(batch_shape + (n_classes,)), -1, axis)
    return loss, grad


def make_case(rng, shape, axis, kind, ignored=True, dtype=np.float64, scale=3.0):
    x = (scale * rng.standard_normal(shape)).astype(dtype)
    n_classes = shape[axis]
    if kind == "index":
        batch = shape[:axis % len(shape)] + shape[axis % len(shape) + 1:]
        t = rng.integers(0, n_classes, size=batch)
        if ignored and t.size > 1:
            t.reshape(-1)[::3] = -100
    else:
        t = rng.random(shape)
        t /= t.sum(axis=axis, keepdims=True)
        t = t.astype(dtype)
    return x, t


def check(backend, x, t, dtype=None, grad_out=None, **kw):
    """Compare loss and grad (and the loss-only function) with the reference."""
    dtype = x.dtype.type if dtype is None else dtype
    want_loss, want_grad = reference(x, t, **kw)
    loss, grad = cross_entropy_grad(x, t, grad_out=grad_out, backend=backend, **kw)
    loss_only = cross_entropy(x, t, backend=backend, **kw)
    rtol, atol = RTOL[dtype], ATOL[dtype]
    scale = max(1.0, float(np.max(np.abs(want_loss))) if np.size(want_loss) else 1.0)
    if kw.get("reduction", "mean") == "none":
        assert isinstance(loss, (np.ndarray, np.generic)) and loss.dtype == dtype
        assert loss.shape == np.shape(want_loss)
    else:
        assert type(loss) is float
    assert grad.dtype == dtype and grad.shape == x.shape
    assert_allclose(loss, want_loss, rtol=rtol, atol=atol * scale)
    assert_allclose(loss_only, loss, rtol=rtol, atol=atol * scale)
    assert_allclose(grad, want_grad, rtol=rtol, atol=atol)
    return loss, grad


# ------------------------------------------------------------------ option grid

GRID = list(itertools.product(
    ["index", "prob"], [False, True], [False, True], ["mean", "sum", "none"], [0.0, 0.25, 1.0]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind,weighted,ignored,reduction,eps", GRID)
def test_option_grid(backend, dtype, kind, weighted, ignored, reduction, eps):
    rng = np.random.default_rng(hash((kind, weighted, ignored, reduction, eps)) % 2**32)
    x, t = make_case(rng, (13, 7), -1, kind, ignored, dtype)
    w = rng.uniform(0.2, 2.0, 7) if weighted else None
    kw = dict(weight=w, reduction=reduction, label_smoothing=eps)
    if kind == "index" and ignored:
        kw["ignore_index"] = -100 if weighted else 5   # a valid class can be ignored too
        if not weighted:
            t[t == -100] = 5
    check(backend, x, t, **kw)


@pytest.mark.parametrize("shape,axis", [((4, 3, 5), 1), ((2, 3, 4, 5), -1), ((2, 3, 4, 5), 0),
                                        ((3, 6, 2, 2), -3), ((6,), 0)])
@pytest.mark.parametrize("kind", ["index", "prob"])
def test_more_dims_and_class_axis_not_last(backend, shape, axis, kind):
    rng = np.random.default_rng(7)
    x, t = make_case(rng, shape, axis, kind)
    w = rng.uniform(0.5, 1.5, shape[axis])
    for reduction in ("mean", "sum", "none"):
        check(backend, x, t, axis=axis, weight=w, reduction=reduction, label_smoothing=0.1)


def test_class_axis_not_last_in_place(backend):
    rng = np.random.default_rng(3)
    x, t = make_case(rng, (5, 4, 3), 1, "index")
    want_loss, want_grad = reference(x, t, axis=1, reduction="sum")
    buf = x.copy()
    loss, grad = cross_entropy_grad(buf, t, axis=1, reduction="sum", grad_out=buf,
                                    backend=backend)
    assert grad is buf
    assert_allclose(loss, want_loss, rtol=1e-12)
    assert_allclose(buf, want_grad, rtol=1e-12, atol=1e-15)
    # into a separate, non-contiguous grad_out
    out = np.zeros((5, 8, 3))[:, ::2]
    loss, grad = cross_entropy_grad(x, t, axis=1, reduction="sum", grad_out=out,
                                    backend=backend)
    assert grad is out
    assert_allclose(out, want_grad, rtol=1e-12, atol=1e-15)


@st.composite
def layouts(draw):
    """A logits array of 1-3 dims with any class axis, possibly strided or reversed."""
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=ndim, max_size=ndim)))
    axis = draw(st.integers(-ndim, ndim - 1))
    step = draw(st.sampled_from([1, 2, -1, -2]))
    strided_axis = draw(st.integers(0, ndim - 1))
    transpose = draw(st.booleans())
    return shape, axis, step, strided_axis, transpose


def _strided(a, step, axis, transpose):
    """``a``'s values in a view with ``step`` along ``axis`` (NaN in the gaps;
    -1 for an integer array)."""
    if transpose:
        a = np.asfortranarray(a)
    big_shape = list(a.shape)
    big_shape[axis] *= abs(step)
    gap = np.nan if a.dtype.kind in "fc" else -1
    big = np.full(big_shape, gap, dtype=a.dtype, order="F" if transpose else "C")
    index = [slice(None)] * a.ndim
    index[axis] = slice(None, None, step)
    view = big[tuple(index)]
    view[...] = a
    return view


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(layout=layouts(), kind=st.sampled_from(["index", "prob"]),
       reduction=st.sampled_from(["mean", "sum", "none"]),
       eps=st.sampled_from([0.0, 0.4]), weighted=st.booleans(), seed=st.integers(0, 2**16))
def test_layouts_property(backend, layout, kind, reduction, eps, weighted, seed):
    shape, axis, step, strided_axis, transpose = layout
    rng = np.random.default_rng(seed)
    x, t = make_case(rng, shape, axis, kind)
    x = _strided(x, step, strided_axis, transpose)
    w = rng.uniform(0.5, 2.0, shape[axis]) if weighted else None
    check(backend, x, t, axis=axis, weight=w, reduction=reduction, label_smoothing=eps)


def _assert_rows(a, n, n_classes, dtype):
    assert isinstance(a, np.ndarray) and a.dtype == dtype and a.dtype.isnative
    assert a.shape == (n, n_classes) and a.strides[1] == a.itemsize


def _assert_contract(logits, target, weight, label_smoothing, grad_scale, loss, grad,
                     n_threads, ignore_index=None):
    """Every precondition the kernel contract promises the kernels."""
    n, n_classes = logits.shape
    assert n >= 1 and n_classes >= 1
    assert logits.dtype in (np.float32, np.float64)
    _assert_rows(logits, n, n_classes, logits.dtype)
    if ignore_index is not None:
        assert target.dtype == np.int64 and target.shape == (n,)
        assert target.flags.c_contiguous
        assert (((target >= 0) & (target < n_classes)) | (target == ignore_index)).all()
        assert type(ignore_index) is int
    else:
        _assert_rows(target, n, n_classes, logits.dtype)
        assert (target >= 0).all()
    if weight is not None:
        assert weight.dtype == np.float64 and weight.shape == (n_classes,)
        assert weight.flags.c_contiguous
    assert type(label_smoothing) is float and 0 <= label_smoothing <= 1
    assert type(grad_scale) is float
    assert loss.dtype == np.float64 and loss.shape == (n,) and loss.flags.c_contiguous
    assert loss.flags.writeable
    for other in (logits, target, weight, grad):
        assert other is None or not np.may_share_memory(loss, other)
    if grad is not None:
        _assert_rows(grad, n, n_classes, logits.dtype)
        assert grad.flags.writeable
        same = (grad.__array_interface__["data"][0] == logits.__array_interface__["data"][0]
                and grad.strides == logits.strides)
        assert same or not np.may_share_memory(grad, logits)
        assert not np.may_share_memory(grad, target)
        assert weight is None or not np.may_share_memory(grad, weight)
    assert type(n_threads) is int and n_threads >= 1


@pytest.fixture
def contract_checked(monkeypatch):
    """Run the NumPy kernels behind a check of every contract precondition."""
    from fastsoftmax.kernels import reference
    index_kernel = reference.cross_entropy_index_rows
    prob_kernel = reference.cross_entropy_prob_rows

    def index_rows(logits, target, weight, ignore_index, eps, scale, loss, grad, threads):
        _assert_contract(logits, target, weight, eps, scale, loss, grad, threads, ignore_index)
        index_kernel(logits, target, weight, ignore_index, eps, scale, loss, grad, threads)

    def prob_rows(logits, target, weight, eps, scale, loss, grad, threads):
        _assert_contract(logits, target, weight, eps, scale, loss, grad, threads)
        prob_kernel(logits, target, weight, eps, scale, loss, grad, threads)

    monkeypatch.setattr(reference, "cross_entropy_index_rows", index_rows)
    monkeypatch.setattr(reference, "cross_entropy_prob_rows", prob_rows)
    return "numpy"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(layout=layouts(), kind=st.sampled_from(["index", "prob"]),
       dtype=st.sampled_from([np.float16, np.float32, np.float64, ">f8", np.int32]),
       out=st.sampled_from([None, "logits", "strided", "fresh"]), seed=st.integers(0, 2**16))
def test_front_end_meets_kernel_contract(contract_checked, layout, kind, dtype, out, seed):
    shape, axis, step, strided_axis, transpose = layout
    rng = np.random.default_rng(seed)
    x, t = make_case(rng, shape, axis, kind)
    x = _strided(x.astype(dtype), step, strided_axis, transpose)
    result_dtype = np.float64 if np.dtype(dtype).kind == "i" else np.dtype(dtype).newbyteorder("=")
    if out == "logits" and x.dtype == result_dtype:
        grad_out = x
    elif out == "strided":
        grad_out = _strided(np.zeros(shape, result_dtype), -step, strided_axis, not transpose)
    elif out == "fresh":
        grad_out = np.zeros(shape, result_dtype)
    else:
        grad_out = None
    want_loss, want_grad = reference(x, t, axis=axis, weight=np.linspace(0.5, 1, shape[axis]),
                                     label_smoothing=0.1)
    loss, grad = cross_entropy_grad(x, t, axis=axis, weight=np.linspace(0.5, 1, shape[axis]),
                                    label_smoothing=0.1, grad_out=grad_out,
                                    backend=contract_checked)
    assert grad_out is None or grad is grad_out
    loss_rtol = 1e-12 if result_dtype == np.float64 else 1e-5   # float16: computed in float32
    grad_rtol = {np.float64: 1e-12, np.float32: 1e-5, np.float16: 1e-2}[np.dtype(result_dtype).type]
    assert_allclose(loss, want_loss, rtol=loss_rtol)
    assert_allclose(grad, want_grad, rtol=grad_rtol, atol=grad_rtol / 10)


# ------------------------------------------------------------------ finite differences

@pytest.mark.parametrize("kind", ["index", "prob"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_gradient_finite_differences(backend, kind, reduction):
    rng = np.random.default_rng(11)
    x, t = make_case(rng, (3, 4, 2), 1, kind, scale=1.0)
    kw = dict(axis=1, weight=rng.uniform(0.5, 2.0, 4), reduction=reduction,
              label_smoothing=0.2, backend=backend)

    def total(z):
        return float(np.sum(cross_entropy(z, t, **kw)))

    _, grad = cross_entropy_grad(x, t, **kw)
    h = 1e-6
    numeric = np.empty_like(x)
    for idx in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[idx] += h
        down[idx] -= h
        numeric[idx] = (total(up) - total(down)) / (2 * h)
    assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


# ------------------------------------------------------------------ torch

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["index", "prob"])
def test_against_torch(backend, dtype, kind):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    rng = np.random.default_rng(5)
    tdtype = torch.float32 if dtype == np.float32 else torch.float64
    for (shape, axis), weighted, reduction, eps in itertools.product(
            [((9, 6), -1), ((3, 6, 4), 1), ((6,), 0)], [False, True],
            ["mean", "sum", "none"], [0.0, 0.3]):
        x, t = make_case(rng, shape, axis, kind, dtype=dtype)
        w = rng.uniform(0.2, 2.0, shape[axis]) if weighted else None
        loss, grad = cross_entropy_grad(x, t, axis=axis, weight=w, reduction=reduction,
                                        label_smoothing=eps, backend=backend)
        # torch puts the classes on dim 1 (dim 0 for unbatched input)
        xt = torch.tensor(np.moveaxis(x, axis, min(1, x.ndim - 1)), requires_grad=True)
        tt = torch.tensor(np.moveaxis(t, axis, min(1, x.ndim - 1)) if kind == "prob" else t)
        wt = None if w is None else torch.tensor(w, dtype=tdtype)
        lt = F.cross_entropy(xt, tt, weight=wt, reduction=reduction, label_smoothing=eps)
        lt.sum().backward()
        gt = np.moveaxis(xt.grad.numpy(), min(1, x.ndim - 1), axis)
        rtol = 1e-5 if dtype == np.float32 else 1e-12
        assert_allclose(loss, lt.detach().numpy(), rtol=rtol, atol=10 * ATOL[dtype])
        assert_allclose(grad, gt, rtol=rtol, atol=10 * ATOL[dtype])


def test_torch_special_denominators(backend):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    x = np.random.default_rng(2).standard_normal((4, 5))
    cases = [(np.full(4, -100), None), (np.zeros(4, dtype=np.int64), np.r_[0.0, 1, 1, 1, 1])]
    for (t, w), eps in itertools.product(cases, [0.0, 0.3]):
        loss, grad = cross_entropy_grad(x, t, weight=w, label_smoothing=eps, backend=backend)
        xt = torch.tensor(x, requires_grad=True)
        lt = F.cross_entropy(xt, torch.tensor(t), label_smoothing=eps,
                             weight=None if w is None else torch.tensor(w))
        lt.backward()
        assert np.isnan(loss) and np.isnan(lt.item())
        assert_array_equal(grad, xt.grad.numpy())   # zeros, or all NaN, as torch


# ------------------------------------------------------------------ special denominators, values

def test_all_ignored_and_zero_weight(backend):
    x = np.random.default_rng(1).standard_normal((4, 5))
    t = np.full(4, -100)
    loss, grad = cross_entropy_grad(x, t, backend=backend)
    assert np.isnan(loss)
    assert_array_equal(grad, 0.0)
    assert cross_entropy(x, t, reduction="sum", backend=backend) == 0.0
    assert_array_equal(cross_entropy(x, t, reduction="none", backend=backend), 0.0)
    loss, grad = cross_entropy_grad(x, [0, 0, 0, -100], weight=[0.0, 1, 1, 1, 1],
                                    backend=backend)
    assert np.isnan(loss)
    assert np.isnan(grad[:3]).all() and (grad[3] == 0).all()


def test_minus_inf_logit_elsewhere_keeps_loss_finite(backend):
    x = np.array([[0.0, -np.inf, 1.0], [2.0, 0.0, -1.0]])
    loss, grad = cross_entropy_grad(x, [0, 1], reduction="none", backend=backend)
    want = np.log(np.exp(0) + np.exp(1.0)) - 0.0
    assert_allclose(loss[0], want, rtol=1e-14)
    assert np.isfinite(grad).all() and grad[0, 1] == 0
    # with smoothing, the -inf class enters the loss: inf, as torch gives
    assert cross_entropy(x, [0, 1], reduction="none", label_smoothing=0.1,
                         backend=backend)[0] == np.inf


@pytest.mark.parametrize("kind", ["index", "prob"])
def test_nan_row_stays_in_its_row(backend, kind):
    rng = np.random.default_rng(4)
    x, t = make_case(rng, (6, 9), -1, kind, ignored=False)
    _, clean_grad = cross_entropy_grad(x, t, backend=backend)
    clean_loss = cross_entropy(x, t, reduction="none", backend=backend)
    x[2, 4] = np.nan
    loss, grad = cross_entropy_grad(x, t, backend=backend)
    losses = cross_entropy(x, t, reduction="none", backend=backend)
    assert np.isnan(loss)
    assert np.isnan(losses[2]) and np.isnan(grad[2]).all()
    others = np.arange(6) != 2
    assert_array_equal(losses[others], clean_loss[others])
    assert_array_equal(grad[others], clean_grad[others])


# ------------------------------------------------------------------ in place and memory

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["index", "prob"])
def test_in_place_identical_and_no_nxc_allocation(backend, dtype, kind):
    rng = np.random.default_rng(9)
    x, t = make_case(rng, (2048, 1000), -1, kind, dtype=dtype)
    kw = dict(label_smoothing=0.1, weight=rng.uniform(0.5, 1.5, 1000), backend=backend)
    loss, grad = cross_entropy_grad(x, t, **kw)
    buf = x.copy()
    # warm up on the same call (a JIT may compile size-dependent serial/parallel paths)
    cross_entropy_grad(buf, t, grad_out=buf, **kw)
    buf[...] = x
    tracemalloc.start()
    try:
        loss2, grad2 = cross_entropy_grad(buf, t, grad_out=buf, **kw)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert grad2 is buf
    assert loss2 == loss
    assert_array_equal(buf, grad)
    assert peak < x.nbytes / 8, f"peak {peak} bytes for a {x.nbytes}-byte input"


def test_partial_overlap_is_handled(backend):
    rng = np.random.default_rng(8)
    base = rng.standard_normal((7, 5))
    t = rng.integers(0, 5, 6)
    x = base[:6].copy()
    want_loss, want_grad = reference(x, t)
    # grad_out overlapping logits shifted by one row
    buf = base.copy()
    loss, grad = cross_entropy_grad(buf[:6], t, grad_out=buf[1:], backend=backend)
    assert_allclose(loss, want_loss, rtol=1e-12)
    assert_allclose(buf[1:], want_grad, rtol=1e-12, atol=1e-15)
    # grad_out = the probability target itself
    p = rng.random((6, 5))
    want_loss, want_grad = reference(x, p)
    loss, grad = cross_entropy_grad(x, p, grad_out=p, backend=backend)
    assert grad is p
    assert_allclose(loss, want_loss, rtol=1e-12)
    assert_allclose(p, want_grad, rtol=1e-12, atol=1e-15)


def test_overlaps_reach_kernels_as_contracted(contract_checked):
    rng = np.random.default_rng(17)
    buf = rng.standard_normal((7, 5))
    t = rng.integers(0, 5, 6)
    cross_entropy_grad(buf[:6], t, grad_out=buf[1:], backend=contract_checked)
    x = rng.standard_normal((6, 5))
    p = rng.random((6, 5))
    cross_entropy_grad(x, p, grad_out=p, backend=contract_checked)
    both = rng.random((6, 5))
    cross_entropy_grad(both, both, grad_out=both, backend=contract_checked)
    cross_entropy_grad(x, t, grad_out=x, backend=contract_checked)


# ------------------------------------------------------------------ layouts and dtypes

def test_non_contiguous_and_read_only(backend):
    rng = np.random.default_rng(6)
    big = rng.standard_normal((10, 14))
    t = rng.integers(0, 7, 5)
    for x in (big[::2, ::2], big[::-2, :7], big[:7, :5].T, np.asfortranarray(big[:5, :7])):
        ro = x.view()
        ro.flags.writeable = False
        check(backend, ro, t, weight=np.linspace(0.5, 1.5, 7), label_smoothing=0.2)
    row = np.broadcast_to(big[0, :7], (5, 7))     # zero row stride
    check(backend, row, t)
    p = rng.random((14, 16))[::2, ::-2][:, :7]     # strided probability target
    check(backend, big[:7, :7], p.copy())
    check(backend, big[:7, :7], p)


def test_float16_int_bool_and_byteswapped_logits(backend):
    rng = np.random.default_rng(12)
    x = rng.standard_normal((6, 5))
    t = rng.integers(0, 5, 6)
    loss, grad = cross_entropy_grad(x.astype(np.float16), t, backend=backend)
    want_loss, want_grad = reference(x.astype(np.float16), t)
    assert grad.dtype == np.float16 and type(loss) is float
    assert_allclose(loss, want_loss, rtol=1e-6)
    assert_allclose(grad, want_grad, rtol=2e-3, atol=1e-4)
    assert cross_entropy(x.astype(np.float16), t, reduction="none",
                         backend=backend).dtype == np.float16
    half = x.astype(np.float16)
    _, g = cross_entropy_grad(half, t, grad_out=half, backend=backend)
    assert g is half
    assert_allclose(half, want_grad, rtol=2e-3, atol=1e-4)
    ints = rng.integers(-3, 4, (6, 5))
    check(backend, ints, t, dtype=np.float64)
    check(backend, ints.astype(bool), t, dtype=np.float64)
    check(backend, x.astype(">f8"), t, dtype=np.float64)
    # probability target of another float dtype is cast to the compute dtype
    p = rng.random((6, 5))
    loss, grad = cross_entropy_grad(x.astype(np.float32), p, backend=backend)
    assert grad.dtype == np.float32
    assert_allclose(grad, reference(x.astype(np.float32), p.astype(np.float32))[1],
                    rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("tdtype", [np.int8, np.uint8, np.int32, np.uint64, np.int64])
def test_integer_target_dtypes(backend, tdtype):
    x = np.random.default_rng(13).standard_normal((4, 6))
    t = np.array([0, 5, 2, 3], dtype=tdtype)
    check(backend, x, t, reduction="none")
    if np.iinfo(tdtype).min < 0:
        t[1] = -100
        check(backend, x, t)


def test_one_dimensional_logits(backend):
    x = np.array([0.5, -1.0, 2.0, 0.0])
    loss, grad = cross_entropy_grad(x, 2, backend=backend)
    want_loss, want_grad = reference(x, np.array(2))
    assert_allclose(loss, want_loss, rtol=1e-14)
    assert_allclose(grad, want_grad, rtol=1e-14)
    none = cross_entropy(x, np.int64(2), reduction="none", backend=backend)
    assert np.ndim(none) == 0 and none.dtype == np.float64
    assert_allclose(none, want_loss, rtol=1e-14)
    p = np.array([0.1, 0.2, 0.3, 0.4])
    assert_allclose(cross_entropy(x, p, backend=backend), reference(x, p)[0], rtol=1e-14)
    assert cross_entropy(x, -100, reduction="sum", backend=backend) == 0.0


def test_lists_and_single_class(backend):
    assert_allclose(cross_entropy([[1, 2, 3]], [2], backend=backend),
                    reference(np.array([[1.0, 2, 3]]), np.array([2]))[0], rtol=1e-14)
    loss, grad = cross_entropy_grad(np.array([[3.0], [-2.0]]), [0, 0], backend=backend)
    assert loss == 0.0 and (grad == 0).all()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_empty_batch(backend, reduction):
    x = np.zeros((0, 4), dtype=np.float32)
    for t in (np.zeros(0, dtype=np.int64), np.zeros((0, 4), dtype=np.float32)):
        loss, grad = cross_entropy_grad(x, t, reduction=reduction, backend=backend)
        assert grad.shape == (0, 4) and grad.dtype == np.float32
        if reduction == "mean":
            assert np.isnan(loss)
        elif reduction == "sum":
            assert loss == 0.0
        else:
            assert loss.shape == (0,) and loss.dtype == np.float32
    loss = cross_entropy(np.zeros((2, 0, 3)), np.zeros((2, 0), dtype=int), axis=-1,
                         reduction="none", backend=backend)
    assert loss.shape == (2, 0)


def test_threads_do_not_change_results(backend, restore_threads):
    rng = np.random.default_rng(14)
    x, t = make_case(rng, (301, 37), -1, "index")
    fastsoftmax.set_num_threads(1)
    one = cross_entropy_grad(x, t, label_smoothing=0.1, reduction="none", backend=backend)
    fastsoftmax.set_num_threads(2)
    two = cross_entropy_grad(x, t, label_smoothing=0.1, reduction="none", backend=backend)
    assert_array_equal(one[0], two[0])
    assert_array_equal(one[1], two[1])


def test_auto_backend_matches_reference():
    for b in BACKENDS:
        module = fastsoftmax._backends._load(b)
        if any(hasattr(module, k) for k in _missing_kernels(b)):
            pytest.skip(f"backend {b!r} still stubs out a cross-entropy kernel")
    rng = np.random.default_rng(15)
    x, t = make_case(rng, (5, 8), -1, "prob")
    check("auto", x, t, label_smoothing=0.3)
    x, t = make_case(rng, (5, 8), -1, "index")
    check(None, x, t, weight=np.arange(1.0, 9.0))


# ------------------------------------------------------------------ errors

X = np.zeros((3, 4))
T = np.array([0, 1, 2])

ERRORS = [
    (dict(target=np.array([0, 4, 1])), IndexError, "target[1] = 4"),
    (dict(target=np.array([0, -1, 1])), IndexError, "target[1] = -1"),
    (dict(target=np.array([0, 1, -100]), ignore_index=3), IndexError, "target[2] = -100"),
    (dict(logits=np.zeros((2, 3, 4)), target=np.array([[0, 1, 2, 2], [0, 1, 5, 0]]), axis=1),
     IndexError, "target[1, 2] = 5"),
    (dict(logits=np.zeros(4), target=9), IndexError, "target[()] = 9"),
    (dict(target=np.array([2**63 + 1, 0, 0], dtype=np.uint64)), IndexError, "target[0]"),
    (dict(target=np.array([0, 1])), ValueError, "(2,)"),
    (dict(target=np.array([0, 1])), ValueError, "(3,)"),
    (dict(target=np.zeros((3, 5))), ValueError, "(3, 5)"),
    (dict(target=np.zeros((3, 5))), ValueError, "(3, 4)"),
    (dict(target=np.full((3, 4), 0.25) - np.eye(3, 4)), ValueError, "target[0, 0] = -0.75"),
    (dict(target=np.where(np.eye(3, 4) > 0, np.nan, 0.25)), ValueError, "not NaN"),
    (dict(target=np.full((3, 4), 0.25), ignore_index=0), ValueError, "ignore_index"),
    (dict(target=np.array([True, False, True])), TypeError, "boolean"),
    (dict(target=np.array(["a", "b", "c"])), TypeError, "target"),
    (dict(target=np.array([0, 1, 2]) + 0j), TypeError, "target"),
    (dict(logits=X + 1j), TypeError, "complex"),
    (dict(logits=np.float64(1.0), target=0), ValueError, "at least one dimension"),
    (dict(logits=np.zeros((3, 0)), target=np.zeros(3, dtype=int)), ValueError, "no classes"),
    (dict(axis=2), AxisError, "axis"),
    (dict(axis=(0, 1)), TypeError, "axis must be an int"),
    (dict(axis=None), TypeError, "axis must be an int"),
    (dict(weight=np.ones(3)), ValueError, "weight has shape (3,)"),
    (dict(weight=np.ones((1, 4))), ValueError, "weight has shape"),
    (dict(weight=np.array([1.0, np.nan, 1, 1])), ValueError, "finite"),
    (dict(weight=np.array([1.0, np.inf, 1, 1])), ValueError, "finite"),
    (dict(weight=np.ones(4) * 1j), TypeError, "complex"),
    (dict(reduction="avg"), ValueError, "reduction"),
    (dict(reduction=None), ValueError, "reduction"),
    (dict(label_smoothing=1.5), ValueError, "label_smoothing"),
    (dict(label_smoothing=-0.1), ValueError, "label_smoothing"),
    (dict(label_smoothing=np.nan), ValueError, "label_smoothing"),
    (dict(label_smoothing="0.1"), TypeError, "label_smoothing"),
    (dict(ignore_index=1.5), TypeError, "ignore_index"),
    (dict(ignore_index=2**70), ValueError, "ignore_index"),
    (dict(backend="tensorflow"), ValueError, "unknown backend"),
]


@pytest.mark.parametrize("kw,exc,fragment", ERRORS)
def test_errors(kw, exc, fragment):
    kw = dict(kw)
    logits = kw.pop("logits", X)
    target = kw.pop("target", T)
    for func in (cross_entropy, cross_entropy_grad):
        with pytest.raises(exc) as info:
            func(logits, target, **kw)
        assert fragment in str(info.value)


GRAD_OUT_ERRORS = [
    (np.zeros((3, 5)), ValueError, "shape"),
    (np.zeros((3, 4), dtype=np.float32), ValueError, "dtype"),
    ([[0.0] * 4] * 3, TypeError, "grad_out"),
]


@pytest.mark.parametrize("out,exc,fragment", GRAD_OUT_ERRORS)
def test_grad_out_errors(out, exc, fragment):
    with pytest.raises(exc, match=fragment):
        cross_entropy_grad(X, T, grad_out=out)


def test_read_only_grad_out_and_untouched_on_error():
    ro = np.zeros((3, 4))
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        cross_entropy_grad(X, T, grad_out=ro)
    x = np.arange(12.0).reshape(3, 4)
    before = x.copy()
    with pytest.raises(IndexError, match="target"):
        cross_entropy_grad(x, [0, 7, 1], grad_out=x)
    assert_array_equal(x, before)


def test_inputs_not_modified(backend):
    rng = np.random.default_rng(16)
    x, p = make_case(rng, (4, 6), -1, "prob")
    w = rng.random(6)
    copies = [a.copy() for a in (x, p, w)]
    cross_entropy_grad(x, p, weight=w, label_smoothing=0.5, backend=backend)
    for a, b in zip((x, p, w), copies):
        assert_array_equal(a, b)
