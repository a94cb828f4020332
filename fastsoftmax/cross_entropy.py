"""cross_entropy and cross_entropy_grad: fused softmax cross-entropy, torch's semantics.

The public functions validate every argument here (the helpers below follow
:mod:`fastsoftmax._validate`), lay the logits out as rows ``(n, C)`` with the
class axis last, and call one fused kernel of the selected backend
(``cross_entropy_index_rows`` or ``cross_entropy_prob_rows``, see
:mod:`fastsoftmax.kernels`), which writes the per-example losses and, for
:func:`cross_entropy_grad`, the gradient.
"""
import math
import numbers
import operator

import numpy as np

from . import _backends
from ._validate import as_real_array, check_out, float_dtypes, normalize_axes

__all__ = ["cross_entropy", "cross_entropy_grad"]

_KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_REDUCTIONS = ("mean", "sum", "none")
_INT64 = np.iinfo(np.int64)


# ------------------------------------------------------------------ validation

def _check_reduction(reduction):
    if not isinstance(reduction, str) or reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of 'mean', 'sum', 'none', got {reduction!r}")
    return reduction


def _check_label_smoothing(label_smoothing):
    if isinstance(label_smoothing, (bool, np.bool_)) or not isinstance(
            label_smoothing, numbers.Real):
        raise TypeError("label_smoothing must be a real number in [0, 1], got "
                        f"{type(label_smoothing).__name__}")
    eps = float(label_smoothing)
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing!r}")
    return eps


def _check_ignore_index(ignore_index):
    if isinstance(ignore_index, (bool, np.bool_)):
        raise TypeError("ignore_index must be an int, got bool")
    try:
        value = operator.index(ignore_index)
    except TypeError:
        raise TypeError(f"ignore_index must be an int, got {type(ignore_index).__name__}") from None
    if not _INT64.min <= value <= _INT64.max:
        raise ValueError(f"ignore_index must fit in int64, got {value}")
    return value


def _check_axis(axis, ndim):
    if isinstance(axis, (bool, np.bool_)) or axis is None or isinstance(axis, (tuple, list)):
        raise TypeError(f"axis must be an int (the class axis), got {axis!r}")
    return normalize_axes(axis, ndim)[0]


def _fmt_position(pos):
    """``target[i, j]`` style text for an index tuple (``target[()]`` for 0-d)."""
    return "[" + ", ".join(str(i) for i in pos) + "]" if pos else "[()]"


def _first_position(mask):
    """Index tuple of the first True of ``mask`` in C order."""
    flat = int(np.argmax(mask.reshape(-1)))
    return tuple(int(i) for i in np.unravel_index(flat, mask.shape))


def _check_index_target(target, batch_shape, n_classes, ignore_index):
    """Class indices -> int64 C-contiguous flat array; IndexError for a bad class."""
    if target.shape != batch_shape:
        raise ValueError(
            f"target of class indices has shape {target.shape}; it must be the shape "
            f"of logits without the class axis, {batch_shape}")
    if target.dtype.kind == "u" and target.dtype.itemsize == 8:
        too_big = target > _INT64.max
        if too_big.any():
            pos = _first_position(too_big)
            raise IndexError(f"target{_fmt_position(pos)} = {target[pos]} is not a class index "
                             f"in [0, {n_classes}) nor ignore_index={ignore_index}")
    t = np.ascontiguousarray(target, dtype=np.int64).reshape(-1)
    bad = ((t < 0) | (t >= n_classes)) & (t != ignore_index)
    if bad.any():
        flat = int(np.argmax(bad))
        pos = tuple(int(i) for i in np.unravel_index(flat, batch_shape))
        raise IndexError(f"target{_fmt_position(pos)} = {t[flat]} is not a class index "
                         f"in [0, {n_classes}) nor ignore_index={ignore_index}")
    return t


def _check_prob_target(target, shape):
    if target.shape != shape:
        raise ValueError(
            f"target of class probabilities (a float dtype) has shape {target.shape}; "
            f"it must be the shape of logits, {shape} (pass an integer array for "
            "class indices)")
    if target.size == 0 or np.min(target) >= 0:  # min is NaN if any entry is: no N x C mask
        return
    with np.errstate(invalid="ignore"):
        bad = ~(target >= 0)
    if bad.any():
        pos = _first_position(bad)
        raise ValueError(f"target probabilities must be >= 0 and not NaN; "
                         f"target{_fmt_position(pos)} = {target[pos]}")


def _check_weight(weight, n_classes):
    w = as_real_array(weight, "weight")
    if w.shape != (n_classes,):
        raise ValueError(f"weight has shape {w.shape}; it must be (C,) = ({n_classes},), "
                         "one weight per class")
    w = np.array(w, dtype=np.float64, order="C")  # always a private copy
    if not np.isfinite(w).all():
        raise ValueError("weight must be finite (no NaN or inf)")
    return w


# ---------------------------------------------------------------------- layout

def _rows_view(a):
    """``(n, C)`` view of ``a`` (class axis last) in the kernels' rows layout, or None."""
    n_classes = a.shape[-1]
    n = a.size // n_classes
    if a.ndim == 2 and a.strides[1] == a.itemsize:
        return a
    if a.flags.c_contiguous:
        v = a.reshape(n, n_classes)
    elif a.ndim == 1:
        v = a.reshape(1, n_classes)
    else:
        lead_shape, lead_strides = a.shape[:-1], a.strides[:-1]
        row_stride = None
        for size, stride in zip(reversed(lead_shape), reversed(lead_strides)):
            if size == 1:
                continue
            if row_stride is None:
                row_stride, span = stride, stride * size
            elif stride != span:
                return None
            else:
                span = stride * size
        v = np.lib.stride_tricks.as_strided(a, shape=(n, n_classes),
                                            strides=(row_stride or 0, a.strides[-1]))
    if n_classes > 1 and v.strides[1] != v.itemsize:
        return None
    if v.strides[1] != v.itemsize:  # a single class: its stride is free
        v = np.lib.stride_tricks.as_strided(v, strides=(v.strides[0], v.itemsize))
    return v


def _class_axis_last(a, ax):
    return a if ax == a.ndim - 1 else np.moveaxis(a, ax, -1)


def _same_view(a, b):
    ai, bi = a.__array_interface__, b.__array_interface__
    return ai["data"][0] == bi["data"][0] and a.strides == b.strides and a.shape == b.shape


# ------------------------------------------------------------------ the driver

def _cross_entropy(logits, target, axis, weight, ignore_index, reduction, label_smoothing,
                   backend, want_grad, grad_out):
    # The commonest call (C-ordered (n, C) float logits, int64 class indices,
    # no weight) may be checked and run in compiled code by the backend
    # (``cross_entropy_fast``, optional in the kernel contract): it returns
    # None for anything else, bad class indices included, which then get
    # the general path's checks and messages.
    fast = _backends.kernels_for(backend, "cross_entropy_index_rows").__dict__.get(
        "cross_entropy_fast")
    if fast is not None:
        res = fast(logits, target, axis, weight, ignore_index, reduction, label_smoothing,
                   want_grad, grad_out, _backends._num_threads)
        if res is not None:
            return res
    reduction = _check_reduction(reduction)
    eps = _check_label_smoothing(label_smoothing)
    ignore_index = _check_ignore_index(ignore_index)

    logits = as_real_array(logits, "logits")
    if logits.ndim == 0:
        raise ValueError("logits must have at least one dimension (the class axis), "
                         "got a 0-d array")
    ax = _check_axis(axis, logits.ndim)
    compute, result_dtype = float_dtypes(logits.dtype)
    n_classes = logits.shape[ax]
    if n_classes == 0:
        raise ValueError(f"logits of shape {logits.shape} has no classes along axis {ax}")
    batch_shape = logits.shape[:ax] + logits.shape[ax + 1:]
    n = math.prod(batch_shape)

    try:
        target = np.asarray(target)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"target must be array_like of numbers: {exc}") from None
    kind = target.dtype.kind
    if kind == "b":
        raise TypeError("target is boolean; pass class indices (an integer dtype) "
                        "or class probabilities (a float dtype)")
    if kind in "iu":
        index_target = _check_index_target(target, batch_shape, n_classes, ignore_index)
    elif kind == "f":
        if ignore_index != -100:
            raise ValueError("ignore_index is not supported with class-probability "
                             "targets (a float target), as in torch")
        _check_prob_target(target, logits.shape)
        index_target = None
    else:
        raise TypeError(f"target must hold class indices (integers) or class "
                        f"probabilities (floats), got dtype {target.dtype}")

    w = None if weight is None else _check_weight(weight, n_classes)
    if grad_out is not None:
        check_out(grad_out, logits.shape, result_dtype, "grad_out")

    name = "cross_entropy_index_rows" if index_target is not None else "cross_entropy_prob_rows"
    if compute in _KERNEL_DTYPES:
        kernels = _backends.kernels_for(backend, name)
    else:  # long double: only the NumPy reference computes in it
        _backends.kernels_for(backend, name)  # still validates backend=
        kernels = _backends._load("numpy")
    kernel = getattr(kernels, name, None)
    if kernel is None:
        raise RuntimeError(f"the fastsoftmax backend {getattr(kernels, 'NAME', kernels.__name__)!r} "
                           f"does not implement {name}; use backend='numpy'")

    # --- the "mean" denominator (torch's): summed weights of the counted targets
    if reduction == "mean":
        if index_target is None:
            denom = float(n)
        else:
            counted = index_target[index_target != ignore_index]
            denom = float(counted.size) if w is None else float(np.sum(w[counted]))
        # torch: 0/0 -> nan for the loss and for the gradient of counted rows
        grad_scale = 1.0 / denom if denom != 0 else math.nan
    else:
        denom = None
        grad_scale = 1.0

    # --- empty batch: nothing to compute
    if n == 0:
        grad = None
        if want_grad:
            grad = grad_out if grad_out is not None else np.empty(logits.shape, result_dtype)
        if reduction == "none":
            loss = np.empty(batch_shape, dtype=result_dtype)
        else:
            loss = math.nan if reduction == "mean" else 0.0
        return loss, grad

    # --- logits as rows (n, C), class axis last; `private` when x is our own copy
    moved = _class_axis_last(logits, ax)
    moved_shape = moved.shape
    private = False
    x = None
    if moved.dtype == compute:
        x = _rows_view(moved)
    if x is None:
        x = np.ascontiguousarray(moved, dtype=compute).reshape(n, n_classes)
        private = True

    # --- where the gradient goes
    grad_rows = None        # (n, C) array the kernel writes
    grad_result = None      # what the caller gets
    copy_back = False       # grad_rows must be copied into grad_result afterwards
    if want_grad:
        if grad_out is not None:
            grad_result = grad_out
            if not private and _same_view(grad_out, logits):
                grad_rows = x                       # in place over the logits
            elif not private and np.may_share_memory(grad_out, logits):
                x = np.array(x, order="C")          # partial overlap: read a private copy
                private = True
            if grad_rows is None and grad_out.dtype == compute:
                view = _rows_view(_class_axis_last(grad_out, ax))
                if view is not None and np.may_share_memory(view, grad_out):
                    grad_rows = view
            if grad_rows is None:
                grad_rows = x if private else np.empty((n, n_classes), dtype=compute)
                copy_back = True
        elif private:
            grad_rows = x                           # overwrite our own copy
            if ax == logits.ndim - 1 and compute == result_dtype:
                grad_result = x.reshape(logits.shape)
            else:
                grad_result = np.empty(logits.shape, dtype=result_dtype)
                copy_back = True
        else:
            grad_result = np.empty(logits.shape, dtype=result_dtype)
            view = _rows_view(_class_axis_last(grad_result, ax))
            if view is not None:
                grad_rows = view
            else:
                grad_rows = np.empty((n, n_classes), dtype=compute)
                copy_back = True

    # --- targets in the kernel's layout, never overlapping the gradient
    if index_target is not None:
        t = index_target
        if grad_rows is not None and np.may_share_memory(t, grad_rows):
            t = t.copy()
    else:
        t_moved = _class_axis_last(target, ax)
        t = _rows_view(t_moved) if t_moved.dtype == compute else None
        if t is None or (grad_rows is not None and np.may_share_memory(t, grad_rows)):
            t = np.array(t_moved, dtype=compute, order="C").reshape(n, n_classes)

    loss = np.empty(n, dtype=np.float64)
    threads = _backends._num_threads
    if index_target is not None:
        kernel(x, t, w, ignore_index, eps, grad_scale, loss, grad_rows, threads)
    else:
        kernel(x, t, w, eps, grad_scale, loss, grad_rows, threads)

    if copy_back:
        np.copyto(_class_axis_last(grad_result, ax), grad_rows.reshape(moved_shape),
                  casting="unsafe")

    if reduction == "none":
        loss = loss.reshape(batch_shape).astype(result_dtype, copy=False)
        if loss.ndim == 0:
            loss = loss[()]
    else:
        total = float(np.sum(loss))
        if reduction == "sum":
            loss = total
        else:
            loss = total / denom if denom != 0 else math.nan
    return loss, grad_result


# ---------------------------------------------------------------------- public

_COMMON_DOC = """
    Parameters
    ----------
    logits : array_like
        Unnormalised scores of real numbers, at least 1-D, with the classes
        along ``axis`` (any layout: strided, transposed, read-only...).
        float16 is computed in float32; integer and bool logits compute in
        float64.  Complex input raises ``TypeError``.
    target : array_like
        Either class indices, of an integer dtype and the shape of
        ``logits`` without ``axis`` (a 0-d target for 1-D logits), each in
        ``[0, C)`` or equal to ``ignore_index``; or class probabilities, of
        a float dtype and the shape of ``logits`` (cast to the compute
        dtype), each ``>= 0`` and not NaN (they need not sum to 1, as in
        torch).  Boolean targets raise ``TypeError``.
    axis : int, optional
        The class axis (default: the last one).  Negative values count from
        the end.
    weight : array_like, optional
        Per-class weights, shape ``(C,)``, finite (NaN or inf raise
        ``ValueError``; torch accepts them).  Negative weights are accepted,
        as in torch.
    ignore_index : int, optional
        Class-index targets equal to it add nothing to the loss, the
        gradient or the ``"mean"`` denominator.  With probability targets it
        must be left at -100 (``ValueError`` otherwise, as torch refuses it).
    reduction : {"mean", "sum", "none"}, optional
        ``"none"``: the per-example losses.  ``"sum"``: their sum.
        ``"mean"``: with class indices, the sum divided by the summed
        weights of the targets that are not ignored (their count when
        ``weight`` is None); with probabilities, divided by the number of
        examples (``logits.size / C``).  A zero denominator (every target
        ignored, or their weights summing to 0) gives NaN, as in torch.
    label_smoothing : float, optional
        In ``[0, 1]``: the target becomes ``(1 - eps)`` of itself plus
        ``eps / C`` spread uniformly over the classes, combined with
        ``weight`` and ``ignore_index`` exactly as in torch.
"""

_LOSS_DOC = """loss : float or ndarray
        A Python float (computed in float64) for ``"mean"`` and ``"sum"``;
        for ``"none"`` an array of the logits' dtype with the shape of
        ``logits`` without ``axis`` (a NumPy scalar for 1-D logits).  An
        empty batch gives NaN (``"mean"``), 0.0 (``"sum"``) or an empty
        array (``"none"``), as in torch."""


def cross_entropy(logits, target, *, axis=-1, weight=None, ignore_index=-100,
                  reduction="mean", label_smoothing=0.0, backend=None):
    return _cross_entropy(logits, target, axis, weight, ignore_index, reduction,
                          label_smoothing, backend, False, None)[0]


def cross_entropy_grad(logits, target, *, axis=-1, weight=None, ignore_index=-100,
                       reduction="mean", label_smoothing=0.0, grad_out=None, backend=None):
    return _cross_entropy(logits, target, axis, weight, ignore_index, reduction,
                          label_smoothing, backend, True, grad_out)


cross_entropy.__doc__ = f"""Softmax cross-entropy loss, with the semantics of ``torch.nn.functional.cross_entropy``.

    Computes ``-sum_c weight[c] * target[c] * log_softmax(logits)[c]`` per
    example (with a class index ``y``: ``-weight[y] * log_softmax(logits)[y]``),
    then reduces, in one fused pass over the logits (no ``n x C``
    temporaries on the compiled backends).
{_COMMON_DOC}    backend : {{"auto", "numba", "cython", "numpy"}}, optional
        Backend for this call; ``None`` uses :func:`get_backend`.

    Returns
    -------
    {_LOSS_DOC}

    Raises
    ------
    IndexError
        A class index outside ``[0, C)`` that is not ``ignore_index``; the
        message names the first such position of ``target`` and its value.
        It is raised before any kernel runs.
    ValueError
        Shapes that do not match (both are named), negative or NaN
        probabilities, a bad ``weight``, ``reduction`` or
        ``label_smoothing``, or logits with no classes (``C == 0``).

    See Also
    --------
    cross_entropy_grad : the loss and its gradient, in one pass.

    Notes
    -----
    With ``eps = label_smoothing``, ``W = sum(weight)`` and ``lse`` the
    log-sum-exp of an example's logits ``z``, an example with class index
    ``y`` has loss ``(1-eps)*w[y]*(lse - z[y]) + eps/C * sum_c w[c]*(lse - z[c])``
    (the second term is left out entirely when ``eps == 0``, so a ``-inf``
    logit elsewhere than at ``y`` keeps the loss finite, as in torch); an
    example with probabilities ``p`` uses ``t = (1-eps)*p + eps/C`` and has
    loss ``sum_c w[c]*t[c]*(lse - z[c])``.  NaN in an example's logits makes
    that example's loss NaN (unless its target is ignored: an ignored
    example's loss is 0 whatever its logits) and leaves the others alone.

    Examples
    --------
    >>> import numpy as np
    >>> from fastsoftmax import cross_entropy
    >>> logits = np.array([[2.0, 0.5, -1.0], [0.0, 0.0, 3.0]])
    >>> round(cross_entropy(logits, [0, 2]), 6)
    0.168117
    >>> cross_entropy(logits, [0, 2], reduction="none").round(4)
    array([0.2413, 0.0949])
    >>> round(cross_entropy(logits, [0, -100], reduction="sum"), 4)   # ignored
    0.2413
    >>> probs = np.array([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    >>> round(cross_entropy(logits, probs, label_smoothing=0.1), 4)
    0.6806
    """

cross_entropy_grad.__doc__ = f"""Softmax cross-entropy loss and its gradient with respect to the logits, fused.

    The loss is that of :func:`cross_entropy`; the gradient is exactly what
    autograd gives for it in torch (for ``reduction="none"``, the gradient of
    ``loss.sum()``).  The logits are read from memory once for both, and
    ``grad_out=logits`` writes the gradient over them, so that large
    vocabularies need no second ``n x C`` buffer.
{_COMMON_DOC}    grad_out : ndarray, optional
        Where to write the gradient: writeable, the shape of ``logits`` and
        the gradient's dtype.  It may be ``logits`` itself (in place; when
        the class axis is last, the logits are float32 or float64 and their
        rows can be viewed without a copy, no ``n x C`` memory is allocated
        at all).  Any other overlap with ``logits`` or ``target`` is handled
        by reading a private copy of the input first.
    backend : {{"auto", "numba", "cython", "numpy"}}, optional
        Backend for this call; ``None`` uses :func:`get_backend`.

    Returns
    -------
    {_LOSS_DOC}
    grad : ndarray
        d(loss)/d(logits), the shape of ``logits`` and its dtype (float64
        for integer logits, float16 for float16 logits, computed in
        float32); ``grad_out`` when given, otherwise a new C-ordered array.
        Examples whose target is ``ignore_index`` get a zero gradient;
        "mean" with a zero denominator gives NaN for the others (as torch).

    Raises
    ------
    IndexError
        A class index outside ``[0, C)`` that is not ``ignore_index``
        (before anything is written).
    ValueError
        As :func:`cross_entropy`, and a ``grad_out`` of the wrong shape or
        dtype, or read-only.

    See Also
    --------
    cross_entropy : the loss alone.

    Examples
    --------
    >>> import numpy as np
    >>> from fastsoftmax import cross_entropy_grad
    >>> logits = np.array([[2.0, 0.5, -1.0], [0.0, 0.0, 3.0]])
    >>> loss, grad = cross_entropy_grad(logits, [0, 2])
    >>> round(loss, 6)
    0.168117
    >>> grad.round(4)
    array([[-0.1072,  0.0876,  0.0196],
           [ 0.0226,  0.0226, -0.0453]])
    >>> loss, grad = cross_entropy_grad(logits, [0, 2], grad_out=logits)
    >>> grad is logits                    # the logits now hold the gradient
    True
    """
