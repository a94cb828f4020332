"""sampled_softmax_loss: float64 reference, finite differences, full-softmax limit, errors."""
import numpy as np
import pytest

import fastsoftmax
from fastsoftmax import (Candidates, LogUniformSampler, SampledSoftmaxGrad, UniformSampler,
                         UnigramSampler, sampled_softmax_loss)

from fastsoftmax import sampled as sampled_mod

BACKENDS = [b for b, ok in fastsoftmax.available_backends().items() if ok is True]
HAVE_C_STEP = "cython" in BACKENDS and sampled_mod._scipy_gemm() is not None
# the Cython backend runs the chunked step in C with SciPy's BLAS; without
# SciPy (here: "cython/python-step") it runs in Python like the other backends
STEPS = BACKENDS + (["cython/python-step"] if HAVE_C_STEP else [])


@pytest.fixture(params=STEPS)
def backend(request, monkeypatch):
    name = request.param
    if name.endswith("/python-step"):
        monkeypatch.setattr(sampled_mod, "_scipy_gemm", lambda: None)
        name = name.split("/")[0]
    with fastsoftmax.use_backend(name):
        yield name


def reference(W, b, labels, x, sampled, true_exp, sampled_exp, remove_hits=True,
              subtract=True, reduction="none"):
    """float64 loss and dense gradients, one row at a time, from the definition."""
    W, b, x = (np.asarray(a, dtype=np.float64) for a in (W, b, x))
    labels = np.asarray(labels).reshape(x.shape[0], -1)
    true_exp = np.asarray(true_exp, dtype=np.float64).reshape(labels.shape)
    batch, num_true = labels.shape
    loss = np.zeros(batch)
    gx, gW, gb = np.zeros_like(x), np.zeros_like(W), np.zeros_like(b)
    for i in range(batch):
        keep = ~np.isin(sampled, labels[i]) if remove_hits else np.ones(sampled.size, bool)
        ids = np.concatenate([labels[i], sampled[keep]])
        z = W[ids] @ x[i] + b[ids]
        if subtract:
            z -= np.log(np.concatenate([true_exp[i], np.asarray(sampled_exp)[keep]]))
        t = np.zeros(ids.size)
        t[:num_true] = 1.0 / num_true
        lse = np.log(np.sum(np.exp(z - z.max()))) + z.max()
        loss[i] = -np.sum(t * (z - lse))
        dz = np.exp(z - lse) - t
        if reduction == "mean":
            dz /= batch
        gx[i] = dz @ W[ids]
        np.add.at(gW, ids, dz[:, None] * x[i])
        np.add.at(gb, ids, dz)
    if reduction == "mean":
        loss = loss.mean()
    elif reduction == "sum":
        loss = loss.sum()
    return loss, gx, gW, gb


def dense(grad, shape):
    """The sparse weight/bias gradient of a SampledSoftmaxGrad as dense arrays."""
    assert grad.ids.dtype == np.int64
    assert np.all(np.diff(grad.ids) > 0), "ids must be sorted and distinct"
    gW = np.zeros(shape)
    gW[grad.ids] = grad.weights
    gb = np.zeros(shape[0])
    gb[grad.ids] = grad.biases
    return gW, gb


def problem(num_classes=50, dim=8, batch=6, num_true=1, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((num_classes, dim)).astype(dtype)
    b = rng.standard_normal(num_classes).astype(dtype)
    x = rng.standard_normal((batch, dim)).astype(dtype)
    labels = rng.integers(0, num_classes, (batch, num_true))
    return W, b, labels, x


@pytest.mark.parametrize("num_true", [1, 3])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("remove_hits, subtract", [(True, True), (False, True), (True, False)])
def test_against_reference(backend, num_true, reduction, remove_hits, subtract):
    W, b, labels, x = problem(num_true=num_true)
    labels[1] = labels[0]          # a true label shared between rows
    sampler = UnigramSampler(np.arange(1, 51), distortion=0.75)
    cand = sampler.sample_candidates(12, labels, seed=3)
    sampled = cand.sampled_ids.copy()
    sampled[0] = labels[0, 0]      # make sure of an accidental hit
    cand = Candidates(sampled, cand.true_expected_count,
                      sampler.sample_candidates(12, sampled[None], seed=3).true_expected_count[0])
    loss, grad = sampled_softmax_loss(W, b, labels, x, 12, num_true=num_true,
                                      sampled_values=cand, remove_accidental_hits=remove_hits,
                                      subtract_log_q=subtract, reduction=reduction,
                                      return_grad=True)
    ref_loss, gx, gW, gb = reference(W, b, labels, x, sampled, cand.true_expected_count,
                                     cand.sampled_expected_count, remove_hits, subtract,
                                     reduction)
    assert isinstance(grad, SampledSoftmaxGrad)
    if reduction == "none":
        assert loss.shape == (6,) and loss.dtype == np.float64
    else:
        assert isinstance(loss, float)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-12)
    np.testing.assert_allclose(grad.inputs, gx, rtol=1e-10, atol=1e-13)
    dW, db = dense(grad, W.shape)
    np.testing.assert_allclose(dW, gW, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(db, gb, rtol=1e-10, atol=1e-13)
    touched = np.union1d(labels.ravel(), sampled)
    assert np.array_equal(grad.ids, touched)


def test_finite_differences(backend):
    W, b, labels, x = problem(num_classes=30, dim=5, batch=4, num_true=2, seed=1)
    cand = LogUniformSampler(30).sample_candidates(7, labels, seed=5)

    def f(W_, b_, x_):
        return sampled_softmax_loss(W_, b_, labels, x_, 7, num_true=2, sampled_values=cand,
                                    reduction="sum")

    _, grad = sampled_softmax_loss(W, b, labels, x, 7, num_true=2, sampled_values=cand,
                                   reduction="sum", return_grad=True)
    dW, db = dense(grad, W.shape)
    h = 1e-6
    for arr, analytic, which in ((x, grad.inputs, 2), (W, dW, 0), (b, db, 1)):
        numeric = np.zeros_like(arr)
        for idx in np.ndindex(arr.shape):
            args = [W.copy(), b.copy(), x.copy()]
            args[which][idx] += h
            up = f(*args)
            args[which][idx] -= 2 * h
            numeric[idx] = (up - f(*args)) / (2 * h)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-7)


def test_all_other_classes_is_full_softmax(backend):
    """Candidates = every class, no correction, hits removed: the full cross-entropy."""
    V = 40
    W, b, labels, x = problem(num_classes=V, dim=6, batch=9, seed=2)
    labels = labels[:, 0]
    perm = np.random.default_rng(0).permutation(V)
    cand = (perm, np.ones(9), np.ones(V))
    loss, grad = sampled_softmax_loss(W, b, labels, x, V, sampled_values=cand,
                                      subtract_log_q=False, return_grad=True)
    logits = x @ W.T + b
    full = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1) \
        - logits[np.arange(9), labels]
    np.testing.assert_allclose(loss, full, rtol=1e-12)
    # (the NumPy backend's cross-entropy: this test checks sampled_softmax_loss,
    # not the compiled cross-entropy kernels, which have their own tests)
    np.testing.assert_allclose(loss, fastsoftmax.cross_entropy(logits, labels, reduction="none",
                                                               backend="numpy"), rtol=1e-12)
    _, g_logits = fastsoftmax.cross_entropy_grad(logits, labels, reduction="sum",
                                                 backend="numpy")
    np.testing.assert_allclose(grad.inputs, g_logits @ W, rtol=1e-10, atol=1e-13)
    dW, db = dense(grad, W.shape)
    np.testing.assert_allclose(dW, g_logits.T @ x, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(db, g_logits.sum(0), rtol=1e-10, atol=1e-13)
    # the same through a sampler asked for every class
    loss2 = sampled_softmax_loss(W, b, labels, x, V, sampler=UniformSampler(V),
                                 subtract_log_q=False, seed=4)
    np.testing.assert_allclose(loss2, full, rtol=1e-12)


def test_float32(backend):
    W, b, labels, x = problem(num_classes=500, dim=32, batch=64, dtype=np.float32, seed=3)
    cand = LogUniformSampler(500).sample_candidates(40, labels, seed=1)
    loss, grad = sampled_softmax_loss(W, b, labels, x, 40, sampled_values=cand,
                                      return_grad=True)
    assert loss.dtype == np.float32
    assert grad.inputs.dtype == grad.weights.dtype == grad.biases.dtype == np.float32
    ref_loss, gx, gW, gb = reference(W, b, labels, x, cand.sampled_ids,
                                     cand.true_expected_count, cand.sampled_expected_count)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grad.inputs, gx, rtol=1e-4, atol=1e-5)
    dW, db = dense(grad, W.shape)
    np.testing.assert_allclose(dW, gW, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(db, gb, rtol=1e-4, atol=1e-5)
    # float16 computes in float32 and returns float16
    loss16 = sampled_softmax_loss(W.astype(np.float16), b.astype(np.float16), labels,
                                  x.astype(np.float16), 40, sampled_values=cand)
    assert loss16.dtype == np.float16


def test_default_sampler_and_seed(backend):
    W, b, labels, x = problem(num_classes=300, dim=4, batch=5, seed=4)
    loss = sampled_softmax_loss(W, b, labels, x, 20, seed=11)
    assert np.array_equal(loss, sampled_softmax_loss(W, b, labels, x, 20, seed=11))
    cand = LogUniformSampler(300).sample_candidates(20, labels, seed=11)
    np.testing.assert_allclose(loss, sampled_softmax_loss(W, b, labels, x, 20,
                                                          sampled_values=cand), rtol=1e-14)
    assert not np.array_equal(sampled_softmax_loss(W, b, labels, x, 20),
                              sampled_softmax_loss(W, b, labels, x, 20))
    # num_classes below the rows of weights: candidates and labels stay below it
    loss = sampled_softmax_loss(W, b, labels % 100, x, 20, num_classes=100, seed=1)
    assert np.isfinite(loss).all()


def test_accidental_hits_stay_finite(backend):
    """Every candidate a true label: masked logits give exactly-zero terms, no NaN."""
    W, b, _, x = problem(num_classes=10, dim=4, batch=3, seed=5)
    labels = np.array([[1, 2], [2, 1], [1, 1]])
    cand = (np.array([1, 2]), np.full((3, 2), 0.5), np.array([0.5, 0.5]))
    for dtype in (np.float32, np.float64):
        loss, grad = sampled_softmax_loss(W.astype(dtype), b.astype(dtype), labels,
                                          x.astype(dtype), 2, num_true=2,
                                          sampled_values=cand, return_grad=True)
        assert np.isfinite(loss).all() and np.isfinite(grad.weights).all()
        assert np.isfinite(grad.inputs).all() and np.isfinite(grad.biases).all()
        ref = reference(W, b, labels, x, cand[0], cand[1], cand[2])
        np.testing.assert_allclose(loss, ref[0], rtol=1e-5)


def test_repeated_candidates(backend):
    """unique=False candidates may repeat; each occurrence counts, hits all masked."""
    W, b, labels, x = problem(num_classes=8, dim=3, batch=5, seed=6)
    cand = UniformSampler(8).sample_candidates(20, labels, unique=False, seed=2)
    assert np.unique(cand.sampled_ids).size < 20
    loss, grad = sampled_softmax_loss(W, b, labels, x, 20, sampled_values=cand,
                                      return_grad=True)
    ref_loss, gx, gW, gb = reference(W, b, labels, x, cand.sampled_ids,
                                     cand.true_expected_count, cand.sampled_expected_count)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-12)
    np.testing.assert_allclose(grad.inputs, gx, rtol=1e-10, atol=1e-13)
    dW, db = dense(grad, W.shape)
    np.testing.assert_allclose(dW, gW, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(db, gb, rtol=1e-10, atol=1e-13)


def test_torch_formula_if_available():
    torch = pytest.importorskip("torch")
    W, b, labels, x = problem(num_classes=60, dim=7, batch=8, num_true=2, seed=7)
    cand = LogUniformSampler(60).sample_candidates(10, labels, seed=9)
    loss, grad = sampled_softmax_loss(W, b, labels, x, 10, num_true=2, sampled_values=cand,
                                      reduction="mean", return_grad=True)
    Wt, bt, xt = (torch.tensor(a, requires_grad=True) for a in (W, b, x))
    ids = torch.tensor(np.concatenate([labels, np.broadcast_to(cand.sampled_ids, (8, 10))], 1))
    z = (Wt[ids] @ xt[:, :, None])[..., 0] + bt[ids]
    z = z - torch.log(torch.tensor(np.concatenate(
        [cand.true_expected_count, np.broadcast_to(cand.sampled_expected_count, (8, 10))], 1)))
    hit = (ids[:, 2:, None] == torch.tensor(labels)[:, None, :]).any(-1)
    z[:, 2:] = z[:, 2:].masked_fill(hit, torch.finfo(torch.float64).min)
    target = torch.zeros_like(z)
    target[:, :2] = 0.5
    t_loss = torch.nn.functional.cross_entropy(z, target)
    t_loss.backward()
    np.testing.assert_allclose(loss, t_loss.item(), rtol=1e-12)
    np.testing.assert_allclose(grad.inputs, xt.grad.numpy(), rtol=1e-10, atol=1e-13)
    dW, db = dense(grad, W.shape)
    np.testing.assert_allclose(dW, Wt.grad.numpy(), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(db, bt.grad.numpy(), rtol=1e-10, atol=1e-13)


def test_empty_batch():
    W, b, _, _ = problem()
    loss, grad = sampled_softmax_loss(W, b, np.zeros((0, 1), int), np.zeros((0, 8)), 5,
                                      seed=0, return_grad=True)
    assert loss.shape == (0,) and grad.inputs.shape == (0, 8)
    assert np.isnan(sampled_softmax_loss(W, b, np.zeros(0, int), np.zeros((0, 8)), 5,
                                         reduction="mean"))


def test_errors():
    W, b, labels, x = problem()
    call = sampled_softmax_loss
    with pytest.raises(ValueError, match="weights must be 2-D"):
        call(b, b, labels, x, 5)
    with pytest.raises(ValueError, match="biases has shape"):
        call(W, b[:-1], labels, x, 5)
    with pytest.raises(ValueError, match="inputs must be"):
        call(W, b, labels, x[:, :3], 5)
    with pytest.raises(ValueError, match="labels has shape"):
        call(W, b, labels[:-1], x, 5)
    with pytest.raises(ValueError, match="labels has shape"):
        call(W, b, labels[:, 0], x, 5, num_true=2)
    with pytest.raises(IndexError, match=r"labels\[2, 0\] = 50 is out of range"):
        bad = labels.copy()
        bad[2, 0] = 50
        call(W, b, bad, x, 5)
    with pytest.raises(IndexError, match="out of range for num_classes=10"):
        call(W, b, labels + 10, x, 5, num_classes=10)
    with pytest.raises(ValueError, match="num_sampled must be >= 1"):
        call(W, b, labels, x, 0)
    with pytest.raises(ValueError, match="unique=True"):
        call(W, b, labels, x, 51)
    with pytest.raises(ValueError, match="exceeds the 50 rows"):
        call(W, b, labels, x, 5, num_classes=51)
    with pytest.raises(ValueError, match="reduction"):
        call(W, b, labels, x, 5, reduction="avg")
    with pytest.raises(ValueError, match="sampler has num_classes=49"):
        call(W, b, labels, x, 5, sampler=UniformSampler(49))
    with pytest.raises(TypeError, match="complex"):
        call(W + 0j, b, labels, x, 5)
    with pytest.raises(ValueError, match="integer class ids"):
        call(W, b, labels + 0.5, x, 5)
    cand = UniformSampler(50).sample_candidates(5, labels, seed=0)
    with pytest.raises(ValueError, match=r"shape \(5,\), expected \(4,\)"):
        call(W, b, labels, x, 4, sampled_values=cand)
    with pytest.raises(ValueError, match="true_expected_count has shape"):
        call(W, b, labels, x, 5, sampled_values=(cand[0], cand[1][:2], cand[2]))
    with pytest.raises(TypeError, match="3-tuple"):
        call(W, b, labels, x, 5, sampled_values=cand[:2])
    with pytest.raises(ValueError, match="expected counts must be positive"):
        call(W, b, labels, x, 5, sampled_values=(cand[0], cand[1] * 0, cand[2]))
    # a true class the sampler never draws cannot be corrected for
    zero_at_label = np.ones(50)
    zero_at_label[labels[0, 0]] = 0
    from fastsoftmax import AliasSampler
    with pytest.raises(ValueError, match="expected counts must be positive"):
        call(W, b, labels, x, 5, sampler=AliasSampler(zero_at_label))


@pytest.mark.parametrize("num_true", [1, 2])
@pytest.mark.parametrize("layout", ["shares", "four_shares", "cols_phase"])
def test_chunked_work_is_thread_count_independent(backend, num_true, layout, monkeypatch):
    """A problem big enough to be cut into several chunks of rows and of
    candidates (run on helper threads with single-threaded BLAS) gives the
    same bits for 1, 2 and 3 threads, matches the float64 reference, and
    leaves the BLAS thread count as it was: with the candidates' weights
    gradient added up from the chunks of rows' shares (2 or 4 chunks), and
    as a phase of its own (shares too big)."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from fastsoftmax import sampled as sampled_mod
    if layout == "four_shares":
        monkeypatch.setattr(sampled_mod, "_CHUNK_WORK", sampled_mod._CHUNK_WORK // 2)
    elif layout == "cols_phase":
        monkeypatch.setattr(sampled_mod, "_SHARES_BYTES", 0)
    W, b, labels, x = problem(num_classes=3000, dim=128, batch=1100, num_true=num_true, seed=4)
    cand = LogUniformSampler(3000).sample_candidates(1100, labels, seed=7)

    def blas_threads():
        return [i["num_threads"] for i in threadpoolctl.threadpool_info()
                if i["user_api"] == "blas"]

    before = blas_threads()
    prev = fastsoftmax.get_num_threads()
    results = []
    try:
        for n in (1, 2, 3):
            fastsoftmax.set_num_threads(n)
            results.append(sampled_softmax_loss(W, b, labels, x, 1100, num_true=num_true,
                                                sampled_values=cand, return_grad=True))
    finally:
        fastsoftmax.set_num_threads(prev)
    assert blas_threads() == before
    (loss, g), *others = results
    for loss_n, g_n in others:
        np.testing.assert_array_equal(loss_n, loss)
        for a, c in zip(g, g_n):
            np.testing.assert_array_equal(a, c)
    ref_loss, gx, gW, gb = reference(W, b, labels, x, cand.sampled_ids, cand.true_expected_count,
                                     cand.sampled_expected_count)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-10)
    np.testing.assert_allclose(g.inputs, gx, rtol=1e-9, atol=1e-12)
    dW, db = dense(g, W.shape)
    np.testing.assert_allclose(dW, gW, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(db, gb, rtol=1e-9, atol=1e-12)


needs_c_step = pytest.mark.skipif(not HAVE_C_STEP, reason="needs the Cython backend and SciPy")


def _record_steps(monkeypatch):
    """Make the Cython backend's SampledStep record its arguments."""
    from fastsoftmax.kernels import cython_backend
    real, calls = cython_backend.SampledStep, []

    def step(*args):
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(cython_backend, "SampledStep", step)
    return real, calls


@needs_c_step
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_c_step_used_and_agrees_with_python_step(dtype, monkeypatch):
    """With SciPy the Cython backend runs the chunks in C (contiguous weights
    of the compute type); its results agree with the Python step's, and
    weights of another layout take the Python step."""
    _, calls = _record_steps(monkeypatch)
    W, b, labels, x = problem(num_classes=300, dim=24, batch=40, num_true=2, dtype=dtype, seed=3)
    cand = LogUniformSampler(300).sample_candidates(60, labels, seed=2)
    kw = dict(num_true=2, sampled_values=cand, return_grad=True)
    with fastsoftmax.use_backend("cython"):
        loss_c, g_c = sampled_softmax_loss(W, b, labels, x, 60, **kw)
        assert len(calls) == 1
        loss_f, g_f = sampled_softmax_loss(np.asfortranarray(W), b, labels, x, 60, **kw)
        assert len(calls) == 1          # a column-major W: the Python step
        monkeypatch.setattr(sampled_mod, "_scipy_gemm", lambda: None)
        loss_p, g_p = sampled_softmax_loss(W, b, labels, x, 60, **kw)
        assert len(calls) == 1
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)
    for loss, g in ((loss_f, g_f), (loss_p, g_p)):
        np.testing.assert_allclose(loss, loss_c, **tol)
        np.testing.assert_array_equal(g.ids, g_c.ids)
        for a, c in zip(g, g_c):
            np.testing.assert_allclose(a, c, **tol)


@needs_c_step
def test_c_step_checks_every_index(monkeypatch):
    """SampledStep refuses an out-of-range or unsorted index, a wrong shape
    or dtype, or a capsule that is not a gemm, before any C code runs."""
    real, calls = _record_steps(monkeypatch)
    W, b, labels, x = problem(num_classes=100, dim=8, batch=12, num_true=1, dtype=np.float32,
                              seed=5)
    # labels that are candidates too, and accidental hits
    cand = UniformSampler(100).sample_candidates(30, labels, seed=1)
    with fastsoftmax.use_backend("cython"):
        sampled_softmax_loss(W, b, labels, x, 30, sampled_values=cand, return_grad=True)
    (args,) = calls
    names = ["gemm", "w", "sampled", "w_aug", "x", "x_aug", "true_ids", "bias_true", "hit_rows",
             "hit_cols", "logits", "ce_target", "grad_scale", "row_loss", "grad_x", "fold_rows",
             "fold_t", "fold_cols", "rest_pos", "rest_out", "cand", "shares", "row_bounds",
             "n_gather"]
    assert len(args) == len(names)
    base = dict(zip(names, args))
    real(*base.values())                # the recorded arguments are valid
    assert base["fold_rows"].size and base["rest_pos"].size

    def refused(exc=ValueError, **change):
        kw = {k: (np.array(v, copy=True) if isinstance(v, np.ndarray) else v)
              for k, v in base.items()}
        outputs = [kw[k] for k in ("logits", "grad_x", "cand", "rest_out", "w_aug")]
        for out in outputs:
            out[...] = 7.0
        kw.update(change)
        with pytest.raises(exc):
            real(*kw.values())
        for out in outputs:
            np.testing.assert_array_equal(out, 7.0)   # nothing ran

    def bumped(name, pos, value):
        a = np.array(base[name], copy=True)
        a[pos] = value
        return a

    B, S = x.shape[0], 30
    refused(sampled=bumped("sampled", 0, 100))
    refused(sampled=bumped("sampled", 0, -1))
    refused(true_ids=bumped("true_ids", (0, 0), 100))
    refused(fold_rows=bumped("fold_rows", 0, B))
    refused(fold_t=bumped("fold_t", 0, 1))
    refused(fold_cols=bumped("fold_cols", 0, 1 + S))
    refused(fold_cols=bumped("fold_cols", 0, 0))
    refused(rest_pos=bumped("rest_pos", -1, B))
    refused(rest_pos=base["rest_pos"][::-1].copy() if base["rest_pos"].size > 1
            else np.array([B], dtype=np.int64))
    refused(row_bounds=np.array([0, B - 1], dtype=np.int64))
    refused(row_bounds=np.array([0, B + 1], dtype=np.int64))
    refused(hit_rows=np.array([B], dtype=np.int64), hit_cols=np.array([0], dtype=np.int64))
    refused(hit_rows=np.array([0], dtype=np.int64), hit_cols=np.array([S], dtype=np.int64))
    refused(rest_out=base["rest_out"][:max(0, base["rest_pos"].size - 1)].copy())
    refused(logits=np.zeros((B, S + 2), np.float32))
    refused(x=base["x"].astype(np.float64))
    refused(shares=np.zeros((1, S, 9), np.float32))
    refused(w=np.asfortranarray(W))
    refused(TypeError, gemm=sampled_mod._scipy_gemm()[np.dtype(np.float64)])
    refused(TypeError, gemm=object())
    refused(n_gather=0)
    refused(n_gather=S + 1)


def _unaligned(a):
    """A copy of ``a`` at an odd address (not aligned to its item size)."""
    buf = np.zeros(a.nbytes + 1, dtype=np.uint8)
    out = np.frombuffer(buf.data, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
    out[...] = a
    return out


def test_unaligned_inputs(backend):
    """Weights, biases, labels and inputs at odd addresses give the results
    of aligned copies (the compiled steps take aligned data only)."""
    W, b, labels, x = problem(num_classes=200, dim=16, batch=30, num_true=1,
                              dtype=np.float32, seed=9)
    cand = LogUniformSampler(200).sample_candidates(40, labels, seed=4)
    kw = dict(sampled_values=cand, return_grad=True)
    loss, g = sampled_softmax_loss(W, b, labels, x, 40, **kw)
    uW, ub, ul, ux = (_unaligned(a) for a in (W, b, labels.astype(np.int64), x))
    assert not (uW.flags.aligned or ux.flags.aligned or ul.flags.aligned)
    for args in ((uW, ub, ul, ux), (W, b, ul, ux)):   # the weights aligned or not
        loss_u, g_u = sampled_softmax_loss(*args, 40, **kw)
        np.testing.assert_allclose(loss_u, loss, rtol=1e-6)
        for a, c in zip(g_u, g):
            np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-7)
