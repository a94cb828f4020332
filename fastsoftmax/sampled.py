"""Sampled softmax loss with TensorFlow's math, and its sparse gradients.

Only the rows of ``weights`` and ``biases`` of the true classes and of the
sampled candidates are read: the ``batch x (num_true + num_sampled)``
candidate logits are two gathers and one matrix product (BLAS through
NumPy), and the softmax cross-entropy over them (with its gradient, written
over the logits) is the fused kernel ``cross_entropy_index_rows`` /
``cross_entropy_prob_rows`` of the current backend.
"""
import functools
import operator
from typing import NamedTuple

import numpy as np

from . import _backends
from ._validate import as_real_array, float_dtypes
from .sampling import Candidates, LogUniformSampler

__all__ = ["sampled_softmax_loss", "SampledSoftmaxGrad"]

_REDUCTIONS = ("none", "mean", "sum")


class SampledSoftmaxGrad(NamedTuple):
    """Gradient of a sampled softmax loss, sparse over the class rows.

    Attributes
    ----------
    inputs : ndarray, shape (batch, dim)
        Gradient with respect to ``inputs``.
    ids : ndarray of int64, shape (k,)
        The distinct class ids whose rows of ``weights``/``biases`` the loss
        touched (true labels and sampled candidates), sorted.
    weights : ndarray, shape (k, dim)
        Gradient with respect to ``weights[ids]``, summed over every
        occurrence of each id; other rows have zero gradient.
    biases : ndarray, shape (k,)
        Gradient with respect to ``biases[ids]``.

    Like TensorFlow's ``IndexedSlices``: an SGD step is
    ``W[g.ids] -= lr * g.weights; b[g.ids] -= lr * g.biases``.
    """

    inputs: np.ndarray
    ids: np.ndarray
    weights: np.ndarray
    biases: np.ndarray


@functools.lru_cache(maxsize=8)
def _default_sampler(num_classes):
    return LogUniformSampler(num_classes)


def _int(value, name, minimum):
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__}") from None
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _ids(arr, num_classes, name):
    arr = np.asarray(arr)
    if arr.dtype.kind not in "iu":
        if not (arr.size == 0 and arr.dtype.kind in "fb"):
            raise ValueError(f"{name} must hold integer class ids, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size:
        bad = (arr < 0) | (arr >= num_classes)
        if bad.any():
            pos = np.unravel_index(int(np.argmax(bad)), arr.shape)
            raise IndexError(f"{name}[{', '.join(map(str, pos))}] = {arr[pos]} is out of "
                             f"range for num_classes={num_classes}")
    return arr


def _counts(arr, shape, name):
    arr = as_real_array(arr, name)
    if arr.shape != shape:
        if shape[1:] == (1,) and arr.shape == shape[:1]:
            arr = arr.reshape(shape)
        else:
            raise ValueError(f"{name} has shape {arr.shape}, expected {shape}")
    return arr.astype(np.float64, copy=False)


def _candidates(sampled_values, sampler, labels, num_sampled, num_classes, seed):
    """(sampled ids, true expected counts (batch, num_true), sampled expected counts)."""
    if sampled_values is None:
        if sampler is None:
            sampler = _default_sampler(num_classes)
        elif not hasattr(sampler, "sample_candidates"):
            raise TypeError("sampler must be a fastsoftmax sampler (with sample_candidates), "
                            f"got {type(sampler).__name__}")
        elif sampler.num_classes != num_classes:
            raise ValueError(f"sampler has num_classes={sampler.num_classes}, the loss "
                             f"has num_classes={num_classes}")
        sampled_values = sampler.sample_candidates(num_sampled, labels, unique=True, seed=seed)
    try:
        sampled, true_expected, sampled_expected = sampled_values
    except (TypeError, ValueError):
        raise TypeError("sampled_values must be a Candidates or a 3-tuple (sampled_ids, "
                        "true_expected_count, sampled_expected_count)") from None
    sampled = _ids(sampled, num_classes, "sampled_values.sampled_ids")
    if sampled.shape != (num_sampled,):
        raise ValueError(f"sampled_values.sampled_ids has shape {sampled.shape}, expected "
                         f"({num_sampled},) for num_sampled={num_sampled}")
    true_expected = _counts(true_expected, labels.shape, "sampled_values.true_expected_count")
    sampled_expected = _counts(sampled_expected, sampled.shape,
                               "sampled_values.sampled_expected_count")
    return sampled, true_expected, sampled_expected


def _accidental_hits(labels, sampled):
    """``(rows, cols)``: ``sampled[cols] == labels[rows, t]`` for some ``t``."""
    order = np.argsort(sampled, kind="stable")
    sorted_ids = sampled[order]
    if sorted_ids.size > 1 and (sorted_ids[1:] == sorted_ids[:-1]).any():
        # repeated candidates (unique=False): compare everything
        hit = (labels[:, :, None] == sampled[None, None, :]).any(axis=1)
        return np.nonzero(hit)
    pos = np.searchsorted(sorted_ids, labels)
    pos[pos == sorted_ids.size] = 0
    found = sorted_ids[pos] == labels
    rows = np.nonzero(found)[0]
    cols = order[pos[found]]
    if labels.shape[1] > 1:  # a row with a repeated true label hits once
        pair = np.unique(rows * sampled.size + cols)
        rows, cols = pair // sampled.size, pair % sampled.size
    return rows, cols


def _cross_entropy(logits, num_true, grad_scale, want_grad):
    """Per-row loss (float64) of the candidate logits; the gradient over them."""
    batch, width = logits.shape
    n_threads = _backends.get_num_threads()
    loss = np.empty(batch, dtype=np.float64)
    grad = logits if want_grad else None
    if num_true == 1:  # the true class is column 0
        name = "cross_entropy_index_rows"
        args = (logits, np.zeros(batch, dtype=np.int64), None, -100, 0.0, grad_scale,
                loss, grad, n_threads)
    else:
        name = "cross_entropy_prob_rows"
        target = np.zeros((batch, width), dtype=logits.dtype)
        target[:, :num_true] = 1.0 / num_true
        args = (logits, target, None, 0.0, grad_scale, loss, grad, n_threads)
    getattr(_backends.kernels_for(None, name), name)(*args)
    return loss, grad


def _scatter_rows(all_ids, rows, biases, dtype):
    """Sum gradient rows (and bias entries) that belong to the same class id."""
    order = np.argsort(all_ids, kind="stable")
    sorted_ids = all_ids[order]
    first = np.empty(sorted_ids.size, dtype=bool)
    first[0] = True
    np.not_equal(sorted_ids[1:], sorted_ids[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    ids = sorted_ids[starts]
    group = np.cumsum(first) - 1                     # id position of each sorted row
    # most ids occur once: copy the first row of each id, then add the few
    # repeats in order (deterministic; np.add.at / reduceat over every row
    # cost 10-100 ms at batch 1024)
    grad_w = rows[order[starts]].astype(dtype, copy=False)
    repeats = np.flatnonzero(~first)
    if repeats.size:
        np.add.at(grad_w, group[repeats], rows[order[repeats]])
    grad_b = np.bincount(group, weights=biases[order], minlength=ids.size).astype(dtype)
    return ids, grad_w, grad_b


def sampled_softmax_loss(weights, biases, labels, inputs, num_sampled, num_classes=None, *,
                         num_true=1, sampler=None, sampled_values=None,
                         remove_accidental_hits=True, subtract_log_q=True, reduction="none",
                         seed=None, return_grad=False):
    """Sampled softmax training loss, as ``tf.nn.sampled_softmax_loss``.

    Scores each example against its true classes and ``num_sampled``
    candidates drawn from a proposal distribution instead of all
    ``num_classes`` classes, and corrects the logits for the proposal.  For
    row ``i``, with ``x = inputs[i]``::

        true logits      x . W[y_it] + b[y_it]         - log(true_expected_count[i, t])
        sampled logits   x . W[s_j]  + b[s_j]          - log(sampled_expected_count[j])
        loss[i]          softmax cross-entropy of [true, sampled] logits against
                         [1/num_true] * num_true + [0] * num_sampled

    (the ``- log(expected count)`` terms only when ``subtract_log_q``).
    Only the rows ``W[y]``, ``W[s]``, ``b[y]``, ``b[s]`` are read: the
    ``batch x num_classes`` logits are never built.

    Parameters
    ----------
    weights : array_like, shape (num_classes, dim)
        Class embeddings (only the needed rows are read and converted).
    biases : array_like, shape (num_classes,)
    labels : array_like of int, shape (batch, num_true)
        True classes; ``(batch,)`` is accepted when ``num_true == 1``.  Out
        of ``[0, num_classes)`` raises ``IndexError``.
    inputs : array_like, shape (batch, dim)
        The examples' final hidden activations.
    num_sampled : int
        Number of candidates to sample (distinct ones: at most the number of
        classes the sampler can draw, else ``ValueError``).
    num_classes : int, optional
        Number of possible classes (default ``weights.shape[0]``; at most
        that).
    num_true : int, default 1
        True labels per example, each with target ``1 / num_true``.
    sampler : sampler, optional
        Proposal distribution, with ``num_classes`` classes: one of
        :class:`~fastsoftmax.AliasSampler`, :class:`~fastsoftmax.UnigramSampler`,
        :class:`~fastsoftmax.LogUniformSampler` (the default, as in
        TensorFlow), :class:`~fastsoftmax.UniformSampler`.  Candidates are
        drawn with ``unique=True``.
    sampled_values : Candidates or tuple, optional
        ``(sampled_ids, true_expected_count, sampled_expected_count)`` to use
        instead of sampling (e.g. from ``sampler.sample_candidates``), as
        TensorFlow's ``sampled_values``.
    remove_accidental_hits : bool, default True
        Give a sampled candidate equal to one of the row's true labels the
        logit ``numpy.finfo(dtype).min`` (TensorFlow adds ``-FLT_MAX``): it
        drops out of the softmax, and its loss and gradient terms are 0.
    subtract_log_q : bool, default True
        Subtract the log expected counts (the sampled-softmax correction).
    reduction : {"none", "mean", "sum"}, default "none"
        ``"none"``: per-row losses, shape ``(batch,)``, in the computation
        dtype; ``"mean"``/``"sum"``: a Python float (computed in float64).
    seed : None, int, SeedSequence or Generator, optional
        Seed for the candidates (``None``: the sampler's own stream).
    return_grad : bool, default False
        Also return a :class:`SampledSoftmaxGrad`, the gradient of the
        reduced loss (of ``loss.sum()`` for ``"none"``).

    Returns
    -------
    loss : ndarray or float
    grad : SampledSoftmaxGrad
        Only with ``return_grad=True``.

    Notes
    -----
    float32 ``weights``/``biases``/``inputs`` compute and return float32
    (float16 computes in float32 and returns float16; integers compute in
    float64; mixed types promote as NumPy does).  Expected counts must be
    positive when ``subtract_log_q`` (a true class the sampler can never
    draw raises ``ValueError``).

    Examples
    --------
    >>> import numpy as np
    >>> import fastsoftmax as fsm
    >>> rng = np.random.default_rng(0)
    >>> W = rng.standard_normal((1000, 16)).astype(np.float32)
    >>> b = np.zeros(1000, dtype=np.float32)
    >>> x = rng.standard_normal((4, 16)).astype(np.float32)
    >>> y = np.array([3, 14, 159, 26])
    >>> loss, g = fsm.sampled_softmax_loss(W, b, y, x, num_sampled=64,
    ...                                    seed=1, return_grad=True)
    >>> loss.shape, loss.dtype
    ((4,), dtype('float32'))
    >>> g.inputs.shape, g.weights.shape == (g.ids.size, 16)
    ((4, 16), True)
    >>> W[g.ids] -= 0.1 * g.weights   # a sparse SGD step
    """
    # ---- validation -------------------------------------------------------
    w = as_real_array(weights, "weights")
    if w.ndim != 2:
        raise ValueError(f"weights must be 2-D (num_classes, dim), got shape {w.shape}")
    b = as_real_array(biases, "biases")
    if b.shape != (w.shape[0],):
        raise ValueError(f"biases has shape {b.shape}, expected ({w.shape[0]},) to match "
                         "weights")
    x = as_real_array(inputs, "inputs")
    if x.ndim != 2 or x.shape[1] != w.shape[1]:
        raise ValueError(f"inputs must be (batch, dim) with dim={w.shape[1]} as weights, "
                         f"got shape {x.shape}")
    num_true = _int(num_true, "num_true", 1)
    num_sampled = _int(num_sampled, "num_sampled", 1)
    if num_classes is None:
        num_classes = w.shape[0]
    num_classes = _int(num_classes, "num_classes", 1)
    if num_classes > w.shape[0]:
        raise ValueError(f"num_classes={num_classes} exceeds the {w.shape[0]} rows of weights")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    batch = x.shape[0]
    y = np.asarray(labels)
    if y.shape == (batch,) and num_true == 1:
        y = y.reshape(batch, 1)
    if y.shape != (batch, num_true):
        raise ValueError(f"labels has shape {y.shape}, expected (batch, num_true) = "
                         f"({batch}, {num_true})")
    y = _ids(y, num_classes, "labels")
    compute, result = float_dtypes(np.result_type(w.dtype, b.dtype, x.dtype))
    if compute.itemsize > 8:  # long double: BLAS works in float64 at most
        compute = result = np.dtype(np.float64)

    sampled, true_expected, sampled_expected = _candidates(
        sampled_values, sampler, y, num_sampled, num_classes, seed)
    if subtract_log_q:
        for name, counts in (("true", true_expected), ("sampled", sampled_expected)):
            if not (np.isfinite(counts).all() and (counts > 0).all()):
                raise ValueError(f"{name} expected counts must be positive and finite with "
                                 "subtract_log_q=True (a true class the sampler never "
                                 "draws has expected count 0)")

    if batch == 0:
        loss = np.zeros(0, dtype=result)
        if reduction != "none":
            loss = float("nan") if reduction == "mean" else 0.0
        if not return_grad:
            return loss
        ids = np.unique(sampled)
        return loss, SampledSoftmaxGrad(np.zeros(x.shape, result), ids,
                                        np.zeros((ids.size, w.shape[1]), result),
                                        np.zeros(ids.size, result))

    # ---- candidate logits: gathers and one BLAS product --------------------
    true_ids = y.reshape(-1)
    xc = x.astype(compute, copy=False)
    w_true = w[true_ids].astype(compute, copy=False)            # (batch*num_true, dim)
    w_sampled = w[sampled].astype(compute, copy=False)          # (num_sampled, dim)
    logits = np.empty((batch, num_true + num_sampled), dtype=compute)
    # BLAS into a contiguous product (a strided out= is several times slower), then
    # bias and copy into place in one pass
    np.add(xc @ w_sampled.T, b[sampled].astype(compute, copy=False), out=logits[:, num_true:])
    if num_true == 1:
        logits[:, 0] = np.einsum("bd,bd->b", xc, w_true)
    else:
        logits[:, :num_true] = np.einsum("bd,btd->bt", xc,
                                         w_true.reshape(batch, num_true, -1))
    logits[:, :num_true] += b[true_ids].astype(compute, copy=False).reshape(batch, num_true)
    if subtract_log_q:
        logits[:, :num_true] -= np.log(true_expected).astype(compute)
        logits[:, num_true:] -= np.log(sampled_expected).astype(compute)
    if remove_accidental_hits:
        rows, cols = _accidental_hits(y, sampled)
        # a finite floor: exp() gives 0 and 0 * (lse - logit) stays 0 (no NaN)
        logits[rows, num_true + cols] = np.finfo(compute).min

    # ---- fused softmax cross-entropy (and its gradient, over the logits) ---
    grad_scale = 1.0 / batch if reduction == "mean" else 1.0
    row_loss, g = _cross_entropy(logits, num_true, grad_scale, return_grad)
    if reduction == "none":
        loss = row_loss.astype(result)
    elif reduction == "mean":
        loss = float(row_loss.mean())
    else:
        loss = float(row_loss.sum())
    if not return_grad:
        return loss

    # ---- gradients: BLAS for the sampled part, scatter-add over ids ---------
    g_true = g[:, :num_true]
    g_sampled = g[:, num_true:]
    if num_true == 1:
        grad_x = g_true * w_true
        rows_true = g_true * xc
    else:
        grad_x = np.einsum("bt,btd->bd", g_true, w_true.reshape(batch, num_true, -1))
        rows_true = (g_true[:, :, None] * xc[:, None, :]).reshape(batch * num_true, -1)
    grad_x += g_sampled @ w_sampled
    rows_sampled = g_sampled.T @ xc                                # (num_sampled, dim)
    ids, grad_w, grad_b = _scatter_rows(
        np.concatenate([true_ids, sampled]),
        np.concatenate([rows_true, rows_sampled]),
        np.concatenate([g_true.reshape(-1), g_sampled.sum(axis=0)]).astype(np.float64),
        compute)
    grad = SampledSoftmaxGrad(grad_x.astype(result, copy=False), ids,
                              grad_w.astype(result, copy=False),
                              grad_b.astype(result, copy=False))
    return loss, grad
