"""Sampled softmax loss with TensorFlow's math, and its sparse gradients.

Only the rows of ``weights`` and ``biases`` of the true classes and of the
sampled candidates are read: the ``batch x (num_true + num_sampled)``
candidate logits are two gathers and one matrix product (BLAS through
NumPy, the sampled biases riding in it as one more column), and the softmax
cross-entropy over them (with its gradient, written over the logits) is the
fused kernel ``cross_entropy_index_rows`` / ``cross_entropy_prob_rows`` of
the current backend.

The work after the gathers is cut into chunks of rows, then of candidates
(by shape only), run by the calling thread and ``get_num_threads() - 1``
helper threads, each chunk with single-threaded BLAS and kernels, so the
result does not depend on the thread count.  On a busy machine this keeps
going where OpenBLAS's own static split between threads, or an OpenMP team,
waits for a descheduled thread.  (Where threadpoolctl cannot set the BLAS's
thread count, and for one huge chunk, BLAS keeps its own threads.)
"""
import concurrent.futures
import contextlib
import functools
import itertools
import operator
import os
import threading
from typing import NamedTuple

import numpy as np

from . import _backends
from ._validate import as_real_array, float_dtypes
from .sampling import LogUniformSampler

__all__ = ["sampled_softmax_loss", "SampledSoftmaxGrad"]

_REDUCTIONS = ("none", "mean", "sum")
#: multiply-adds of each BLAS product per chunk at least (about 1 ms on one
#: core: fewer, bigger chunks measured faster than 4 per thread); the chunks
#: depend only on the problem's shape
_CHUNK_WORK = 1 << 26
_MAX_CHUNKS = 16
#: rows (candidates) per chunk at least: each product packs the other operand
#: whole, so thinner chunks repeat that copy more often than they gain
_MIN_ROWS = 256
#: an unchunked product of this many multiply-adds (several ms on one core)
#: keeps BLAS's threads: only then is a stalled thread the smaller risk
_BLAS_PARALLEL_MIN = 1 << 30
#: one chunk with at least this many logits lets the kernel use its threads
_KERNEL_PARALLEL_MIN = 1 << 23
#: the chunks of rows' shares of the candidates' gradient take at most this
#: many bytes (beyond the first's); else that gradient is a phase of its own
_SHARES_BYTES = 1 << 25


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


class _BlasThreads:
    """Run the process's BLAS on one thread for a while (threadpoolctl).

    OpenBLAS splits a product statically between its threads and then waits
    for all of them: on a machine whose other cores are busy (other
    processes, a framework's thread pool still spinning) one descheduled
    thread stalls a 2 ms product for a whole scheduler slice (10-20 ms were
    measured on 2 cores).  The products of a sampled softmax step are small,
    so they run on the calling thread.  The BLAS libraries loaded in the
    process are found once by threadpoolctl; their thread count is
    process-wide, so it is lowered on entry of the first caller and restored
    on exit of the last one (NumPy calls in other threads meanwhile run on
    one thread too).  Where threadpoolctl finds no BLAS it can control, this
    does nothing, and the computation uses no helper threads either.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._blas = None       # threadpoolctl controller of the BLAS libraries, or False
        self._depth = 0
        self._limiter = None
        self._stale = False     # a BLAS was loaded since: look again when idle

    def rescan(self):
        """Look for the BLAS libraries again before the next use (one was
        loaded since they were found)."""
        with self._lock:
            self._stale = True

    def _find(self):
        if self._stale and self._depth == 0:
            self._blas, self._stale = None, False
        if self._blas is None:
            try:
                from threadpoolctl import ThreadpoolController

                blas = ThreadpoolController().select(user_api="blas")
                self._blas = blas if blas.lib_controllers else False
            except Exception:  # pragma: no cover - not installed, or best effort only
                self._blas = False

    def controls(self):
        """Whether a BLAS was found (its thread count can be lowered)."""
        with self._lock:
            self._find()
            return bool(self._blas)

    def __enter__(self):
        with self._lock:
            if self._depth == 0:
                self._find()
                if self._blas:
                    self._limiter = self._blas.limit(limits=1)
            self._depth += 1
        return self

    def __exit__(self, *exc):
        with self._lock:
            self._depth -= 1
            if self._depth == 0 and self._limiter is not None:
                self._limiter.restore_original_limits()
                self._limiter = None


_single_thread_blas = _BlasThreads()


_pool_lock = threading.Lock()
_pool = None    # (pid, workers, ThreadPoolExecutor)


def _helper_pool(workers):
    """A process-wide pool of at least ``workers`` helper threads."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid() or _pool[1] < workers:
            old = _pool
            _pool = (os.getpid(), workers, concurrent.futures.ThreadPoolExecutor(
                max_workers=workers, thread_name_prefix="fastsoftmax-sampled"))
            if old is not None and old[0] == os.getpid():
                old[2].shutdown(wait=False)
        return _pool[2]


def _run_phases(phases, n_threads):
    """Run ``work(i)`` for ``i in range(n)`` for each ``(work, n)`` of
    ``phases`` in turn, on up to ``n_threads`` threads.

    The calling thread and the helpers take the items of a phase in turn
    from one counter and start on the next phase once every item of this one
    is done; so a helper that the OS does not schedule (a busy machine)
    holds up at most the item it is running, and a helper that never started
    is cancelled, its share done here.  ``work`` must give the same result
    whichever thread runs an item.
    """
    helpers = min(n_threads, max(n for _, n in phases)) - 1
    if helpers <= 0:
        for work, n in phases:
            for i in range(n):
                work(i)
        return
    lock = threading.Lock()
    counters = [itertools.count() for _ in phases]
    done = [0] * len(phases)
    finished = [threading.Event() for _ in phases]
    failed = []

    def loop():
        for p, (work, n) in enumerate(phases):
            while not failed:
                i = next(counters[p])   # atomic under the GIL
                if i >= n:
                    break
                try:
                    work(i)
                except BaseException:
                    failed.append(True)
                    for event in finished:
                        event.set()
                    raise
                with lock:
                    done[p] += 1
                    if done[p] == n:
                        finished[p].set()
            finished[p].wait()
            if failed:
                return

    pool = _helper_pool(helpers)
    futures = [pool.submit(loop) for _ in range(helpers)]
    try:
        loop()
    except BaseException:
        failed.append(True)     # e.g. KeyboardInterrupt while waiting
        raise
    finally:
        for f in futures:
            f.cancel()
        if failed:
            concurrent.futures.wait(futures)
    # every item is done; a helper still on its way out is not waited for (a
    # wait costs a GIL hand-over or two, 0.1-0.2 ms), only one that failed
    for f in futures:
        if f.done() and not f.cancelled():
            f.result()          # a helper's exception


@functools.lru_cache(maxsize=None)
def _scipy_gemm():
    """SciPy's BLAS ``sgemm`` / ``dgemm`` for C code, by dtype, or None.

    ``scipy.linalg.cython_blas`` is SciPy's public interface to BLAS for
    compiled code (Numba's ``np.dot`` uses it the same way); it lets the
    Cython backend run the whole chunked step without the GIL.  Without
    SciPy the step runs on Python threads, BLAS through NumPy.
    """
    try:
        from scipy.linalg import cython_blas
        capi = cython_blas.__pyx_capi__
        gemm = {np.dtype(np.float32): capi["sgemm"], np.dtype(np.float64): capi["dgemm"]}
    except Exception:  # not installed, or an unexpected build: the NumPy path
        return None
    _single_thread_blas.rescan()    # SciPy's own BLAS is loaded now: limit it too
    return gemm


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


def _match_sampled(true_ids, sampled):
    """Column in ``sampled`` of each of ``true_ids`` (-1 where absent), or None
    when ``sampled`` repeats an id."""
    order = np.argsort(sampled)  # (distinct ids: any sort gives this order)
    sorted_ids = sampled[order]
    if sorted_ids.size > 1 and (sorted_ids[1:] == sorted_ids[:-1]).any():
        return None
    pos = np.searchsorted(sorted_ids, true_ids)
    pos[pos == sorted_ids.size] = 0
    return np.where(sorted_ids[pos] == true_ids, order[pos], -1)


class _RestRows:
    """Gradient rows of the true ids that are not candidates, summed per id.

    Rows ``out[j]`` hold the terms, ``j`` in the order of the flat (row, t)
    positions: each chunk of rows fills in its own terms (:meth:`fill`), then
    :meth:`finish` adds up the terms of each id that occurs more than once
    (in that order) into the row of its first term.  So the result does not
    depend on which thread ran a chunk.  ``out`` is ``(>= terms, dim + 1)``:
    weights gradient, then the bias gradient in the last column.
    """

    def __init__(self, true_ids, match, num_true, out):
        self.pos = np.flatnonzero(match < 0)        # flat (row, t) positions, ascending
        perm = np.argsort(true_ids[self.pos], kind="stable")
        sorted_ids = true_ids[self.pos[perm]]
        first = np.ones(sorted_ids.size, dtype=bool)
        np.not_equal(sorted_ids[1:], sorted_ids[:-1], out=first[1:])
        starts = np.flatnonzero(first)
        self.ids = sorted_ids[starts]
        self.rows = perm[starts]                    # the row of out that holds each id's sum
        # the terms of the ids that occur more than once, by id, and where
        # each such id's terms start among them
        single = first.copy()
        single[:-1] &= first[1:]
        multi = np.flatnonzero(~single)
        self.multi_terms = perm[multi]
        self.multi_starts = np.flatnonzero(first[multi])
        self.multi_rows = self.multi_terms[self.multi_starts]
        self.num_true = num_true
        self.out = out

    def fill(self, g_true, xc, r0, r1):
        """The terms of rows ``r0:r1``: ``g_true`` and ``xc`` hold those rows."""
        nt = self.num_true
        lo, hi = np.searchsorted(self.pos, (r0 * nt, r1 * nt))
        if hi > lo:
            local = self.pos[lo:hi] - r0 * nt
            coef = g_true.reshape(-1)[local]
            np.multiply(xc[local // nt], coef[:, None], out=self.out[lo:hi, :-1])
            self.out[lo:hi, -1] = coef

    def finish(self):
        """Add up the terms of the ids that occur more than once; returns the
        ids (sorted) and the rows of ``out`` that hold their gradients."""
        if self.multi_rows.size:
            terms = self.out[self.multi_terms]
            self.out[self.multi_rows, :-1] = np.add.reduceat(terms[:, :-1], self.multi_starts,
                                                             axis=0)
            self.out[self.multi_rows, -1] = np.add.reduceat(terms[:, -1].astype(np.float64),
                                                            self.multi_starts)
        return self.ids, self.rows


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

    The work is cut into chunks of rows by shape alone and the chunks run
    on ``fastsoftmax.get_num_threads()`` threads with single-threaded BLAS,
    so the result does not depend on the thread count.  With the Cython
    backend and SciPy installed, each chunk runs in C without the GIL (BLAS
    through ``scipy.linalg.cython_blas``); otherwise in Python with NumPy's
    BLAS.  The two round differently in the last bits.

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

    return _loss_and_grad(w, b, y, x, sampled, true_expected, sampled_expected,
                          compute, result, subtract_log_q, remove_accidental_hits,
                          reduction, return_grad)


def _loss_and_grad(w, b, y, x, sampled, true_expected, sampled_expected, compute, result,
                   subtract_log_q, remove_accidental_hits, reduction, return_grad):
    """The computation of :func:`sampled_softmax_loss` on validated arguments.

    After the gathers the work runs in items that the calling thread and
    helpers share (:func:`_run_phases`): chunks of rows (candidate logits,
    fused cross-entropy, ``inputs`` gradient, and the chunk's share of the
    candidates' ``weights`` gradient, added up afterwards in chunk order).
    When those shares would take too much memory, the ``weights`` gradient is
    a phase of its own instead, blocks of candidates each one product over
    the batch.  Items are cut by shape only, write disjoint outputs, and BLAS
    runs on one thread in each, so the result does not depend on the threads.
    """
    batch, num_true = y.shape
    num_sampled = sampled.size
    dim = w.shape[1]
    width = num_true + num_sampled

    # ---- candidate rows (the rows of the true ids are gathered per chunk) ----
    true_ids = y.reshape(-1)
    xc = x.astype(compute, copy=False)
    log_true = np.log(true_expected) if subtract_log_q else None
    # the sampled biases (with their log-q correction, formed in float64) ride
    # in the logits product as one more column of weights against a column of
    # ones: the last term of each dot product, so the same rounding as adding
    # them after it, without another pass over the logits
    # (the rows are gathered by the first phase of the chunked work below)
    w_aug = np.empty((num_sampled, dim + 1), dtype=compute)
    bias_sampled = b[sampled].astype(np.float64)
    if subtract_log_q:
        bias_sampled -= np.log(sampled_expected)
    w_aug[:, dim] = bias_sampled
    w_sampled = w_aug[:, :dim]                                  # (num_sampled, dim)

    # sampled column of each true id (-1: none), None when sampled repeats ids
    match = _match_sampled(true_ids, sampled)
    hit_rows = hit_cols = np.zeros(0, dtype=np.intp)
    if remove_accidental_hits:
        if match is None:
            hit_rows, hit_cols = _accidental_hits(y, sampled)
        else:
            hit = np.flatnonzero(match >= 0)
            hit_rows, hit_cols = hit // num_true, match[hit]
    if return_grad and match is not None:
        # a true id that is also a candidate has the same weights row: its
        # gradient entry is added into that candidate's column, so one product
        # gives the weight gradient of every candidate row
        fold = np.flatnonzero(match >= 0)
        fold_rows, fold_t, fold_cols = fold // num_true, fold % num_true, num_true + match[fold]

    # ---- chunks ----------------------------------------------------------------
    # phase 1, chunks of rows: logits, cross-entropy, inputs gradient and the
    # chunk's share of the candidates' weights/biases gradient; or, when the
    # shares would be big, phase 2, blocks of candidates: their weights/biases
    # gradient (one product over the whole batch).  Items depend on the shape
    # only and write disjoint outputs.
    work = batch * num_sampled * dim
    n_rows = int(max(1, min(_MAX_CHUNKS, batch // _MIN_ROWS, work // _CHUNK_WORK)))
    row_bounds = [batch * c // n_rows for c in range(n_rows + 1)]
    n_cols = int(max(1, min(_MAX_CHUNKS, num_sampled // _MIN_ROWS, work // _CHUNK_WORK)))
    col_bounds = [num_sampled * c // n_cols for c in range(n_cols + 1)]
    two_phase = return_grad and match is not None
    # each chunk of rows adds its share to the candidates' gradient (a start of
    # the next phase costs 50-170 us of GIL hand-over on a 5 ms call)
    shared = two_phase and ((n_rows - 1) * num_sampled * (dim + 1)
                            * np.dtype(compute).itemsize <= _SHARES_BYTES)
    # a helper thread is only worth waking for a few chunks of work, and only
    # when BLAS can be kept to one thread per chunk (else the threads of both
    # would oversubscribe the cores)
    n_threads = (_backends.get_num_threads()
                 if n_rows > 1 and _single_thread_blas.controls() else 1)
    # BLAS on the calling thread when the chunks share the work, for small
    # products, or when fastsoftmax is set to one thread; only one big chunk
    # (a short batch) keeps BLAS's own threads
    blas = (contextlib.nullcontext()
            if n_rows == 1 and work >= _BLAS_PARALLEL_MIN and _backends.get_num_threads() > 1
            else _single_thread_blas)
    # one chunk of many logits: let the kernel split it; else one thread each
    kernel_threads = (_backends.get_num_threads()
                      if n_rows == 1 and batch * width >= _KERNEL_PARALLEL_MIN else 1)
    if num_true == 1:  # the true class is column 0
        ce_name = "cross_entropy_index_rows"
        ce_target = np.zeros(batch, dtype=np.int64)
    else:
        ce_name = "cross_entropy_prob_rows"
        ce_target = np.zeros((batch, width), dtype=compute)
        ce_target[:, :num_true] = 1.0 / num_true
    # resolved here: the backend choice is local to the calling thread
    ce_kernel = getattr(_backends.kernels_for(None, ce_name), ce_name)
    grad_scale = 1.0 / batch if reduction == "mean" else 1.0
    floor = np.finfo(compute).min

    logits = np.empty((batch, width), dtype=compute)
    row_loss = np.empty(batch, dtype=np.float64)
    if return_grad:
        grad_x = np.empty((batch, dim), dtype=compute)
    if two_phase:
        # the inputs with a column of ones: against it the products give the
        # candidates' bias gradient (the sum over the batch) as a last column
        x_aug = np.empty((batch, dim + 1), dtype=compute)
        # candidates' weights and bias gradients, then the other true ids'
        cand = np.empty((num_sampled + true_ids.size, dim + 1), dtype=compute)
        rest = _RestRows(true_ids, match, num_true, cand[num_sampled:])
        shares = np.empty((n_rows - 1 if shared else 0, num_sampled, dim + 1), dtype=compute)

    def gather(c):
        # rows of weights at random places of a large matrix: bound by memory
        # latency, so two threads gather about twice as fast
        c0, c1 = num_sampled * c // n_gather, num_sampled * (c + 1) // n_gather
        if w.dtype == compute:  # (the ids are checked: no bounds check needed)
            np.take(w, sampled[c0:c1], axis=0, out=w_aug[c0:c1, :dim], mode="clip")
        else:
            w_aug[c0:c1, :dim] = w[sampled[c0:c1]]

    def rows(c):
        r0, r1 = row_bounds[c], row_bounds[c + 1]
        z = logits[r0:r1]
        xa = x_aug[r0:r1] if two_phase else np.empty((r1 - r0, dim + 1), dtype=compute)
        xa[:, :dim] = xc[r0:r1]
        xa[:, dim] = 1.0
        # BLAS writes straight into the sampled columns (unit inner stride)
        np.matmul(xa, w_aug.T, out=z[:, num_true:])
        ids_true = true_ids[r0 * num_true:r1 * num_true]
        w_true = w[ids_true].astype(compute, copy=False).reshape(r1 - r0, num_true, dim)
        np.einsum("bd,btd->bt", xc[r0:r1], w_true, out=z[:, :num_true])
        bias_true = b[ids_true].astype(np.float64).reshape(r1 - r0, num_true)
        if log_true is not None:
            bias_true -= log_true[r0:r1]
        z[:, :num_true] += bias_true.astype(compute)
        lo, hi = np.searchsorted(hit_rows, (r0, r1))
        if hi > lo:
            # a finite floor: exp() gives 0 and 0 * (lse - logit) stays 0 (no NaN)
            z[hit_rows[lo:hi] - r0, num_true + hit_cols[lo:hi]] = floor
        g = z if return_grad else None
        if num_true == 1:
            ce_kernel(z, ce_target[r0:r1], None, -100, 0.0, grad_scale, row_loss[r0:r1], g,
                      kernel_threads)
        else:
            ce_kernel(z, ce_target[r0:r1], None, 0.0, grad_scale, row_loss[r0:r1], g,
                      kernel_threads)
        if not return_grad:
            return
        gx = grad_x[r0:r1]
        np.matmul(g[:, num_true:], w_sampled, out=gx)
        gx += np.einsum("bt,btd->bd", g[:, :num_true], w_true)
        if not two_phase:
            return
        lo, hi = np.searchsorted(fold_rows, (r0, r1))
        if hi > lo:
            rr = fold_rows[lo:hi] - r0
            if num_true == 1:  # distinct (row, column) pairs
                g[rr, fold_cols[lo:hi]] += g[rr, fold_t[lo:hi]]
            else:              # a row may hold a true id twice
                np.add.at(g, (rr, fold_cols[lo:hi]), g[rr, fold_t[lo:hi]])
        rest.fill(g[:, :num_true], xc[r0:r1], r0, r1)
        if shared:
            np.matmul(g[:, num_true:].T, xa, out=cand[:num_sampled] if c == 0 else shares[c - 1])

    def cols(c):
        c0, c1 = col_bounds[c], col_bounds[c + 1]
        np.matmul(logits[:, num_true + c0:num_true + c1].T, x_aug, out=cand[c0:c1])

    # the chunks' work in C without the GIL (Cython backend, SciPy's BLAS), or
    # in Python, BLAS through NumPy; the same items either way
    step = gemm = None
    if (shared and dim >= 1 and w.dtype == compute and w.strides[1] == w.itemsize
            and w.strides[0] >= 0 and w.flags.aligned):
        step = getattr(_backends.kernels_for(None, "SampledStep"), "SampledStep", None)
        gemm = _scipy_gemm() if step is not None else None
    n_gather = 2 if n_threads > 1 and num_sampled >= _MIN_ROWS else 1
    if gemm is not None:
        bias_true = b[true_ids].astype(np.float64).reshape(batch, num_true)
        if log_true is not None:
            bias_true -= log_true
        # (the C code takes aligned, C-contiguous arrays, checked there)
        i64 = functools.partial(np.require, dtype=np.int64, requirements=["C", "A"])
        step = step(gemm[np.dtype(compute)], w, i64(sampled), w_aug,
                    np.require(xc, requirements=["C", "A"]), x_aug, i64(y),
                    bias_true.astype(compute), i64(hit_rows), i64(hit_cols),
                    logits, ce_target, grad_scale, row_loss, grad_x, i64(fold_rows),
                    i64(fold_t), i64(fold_cols), i64(rest.pos), cand[num_sampled:],
                    cand[:num_sampled], shares, np.array(row_bounds, dtype=np.int64),
                    n_gather)
        # the threads share the items in C, without the GIL between them (a
        # phase boundary of _run_phases costs 50-100 us of GIL hand-over)
        with _single_thread_blas:
            if n_threads > 1:
                pool = _helper_pool(n_threads - 1)
                for _ in range(n_threads - 1):
                    pool.submit(step.work)
            step.work()
            step.wait()
    else:
        phases = [(gather, n_gather), (rows, n_rows)]
        if two_phase and not shared:
            phases.append((cols, n_cols))
        with blas:
            _run_phases(phases, n_threads)
    if two_phase:
        for share in shares:    # in chunk order
            cand[:num_sampled] += share
        rest_ids, rest_rows = rest.finish()

    if reduction == "none":
        loss = row_loss.astype(result)
    elif reduction == "mean":
        loss = float(row_loss.mean())
    else:
        loss = float(row_loss.sum())
    if not return_grad:
        return loss

    # ---- sparse weights/biases gradient ----------------------------------------
    g = logits
    g_true = g[:, :num_true]
    if match is None:  # repeated candidates: sum rows of equal ids by sorting
        g_sampled = g[:, num_true:]
        rows_true = (g_true[:, :, None] * xc[:, None, :]).reshape(batch * num_true, -1)
        with blas:
            rows_sampled = g_sampled.T @ xc
        ids, grad_w, grad_b = _scatter_rows(
            np.concatenate([true_ids, sampled]),
            np.concatenate([rows_true, rows_sampled]),
            np.concatenate([g_true.reshape(-1), g_sampled.sum(axis=0)]).astype(np.float64),
            compute)
    else:
        ids = np.concatenate([sampled, rest_ids])
        perm = np.argsort(ids)  # (distinct ids)
        src = np.concatenate([np.arange(num_sampled), num_sampled + rest_rows])[perm]
        # (indexing copies the rows of a strided array twice as fast as np.take)
        ids, grad_w, grad_b = ids[perm], cand[src, :dim], cand[src, dim]
    return loss, SampledSoftmaxGrad(grad_x.astype(result, copy=False), ids,
                                    grad_w.astype(result, copy=False),
                                    grad_b.astype(result, copy=False))
