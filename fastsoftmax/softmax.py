"""softmax and log_softmax: drop-in replacements for scipy.special's."""
import numpy as np

from . import _backends
from ._layout import split_for_reduction
from ._validate import as_real_array, check_out, float_dtypes, normalize_axes

__all__ = ["softmax", "log_softmax"]

_KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _same_view(a, b):
    ai, bi = a.__array_interface__, b.__array_interface__
    return ai["data"][0] == bi["data"][0] and a.strides == b.strides and a.shape == b.shape


def _fast_path(kernels, x, axis, out, log):
    """The simple case, or None: a C-ordered native float32/float64 ndarray
    over its last axis (or over everything), out= absent or a C-ordered
    array of the same shape and dtype that is x itself or does not overlap
    it.  For backends without their own ``softmax_fast`` (optional in the
    kernel contract: the same checks and call, possibly in compiled code;
    ``_softmax`` calls it directly)."""
    if type(x) is not np.ndarray or not x.flags.c_contiguous:
        return None
    ndim = x.ndim
    if not (ndim and x.dtype in _KERNEL_DTYPES and x.size
            and (axis is None or (type(axis) is int and (axis == -1 or axis == ndim - 1)))):
        return None
    if out is None:
        res = np.empty_like(x)
    elif (type(out) is np.ndarray and out.shape == x.shape and out.dtype == x.dtype
          and out.flags.c_contiguous and out.flags.writeable
          and (out is x or not np.may_share_memory(out, x))):
        res = out
    else:
        return None  # the general path checks and handles it
    if ndim == 2 and axis is not None:
        kernels.softmax_rows(x, res, log, _backends._num_threads)
    else:
        k = x.size if axis is None else x.shape[-1]
        kernels.softmax_rows(x.reshape(-1, k), res.reshape(-1, k), log, _backends._num_threads)
    return res


def _softmax(x, axis, out, dtype, backend, log):
    if dtype is None:
        fast, kernels = _backends.softmax_fast_for(backend)
        if fast is not None:
            res = fast(x, axis, out, log, _backends._num_threads)
        else:
            res = _fast_path(kernels, x, axis, out, log)
        if res is not None:
            return res
    arr = as_real_array(x, "x")
    compute, result_dtype = float_dtypes(arr.dtype, dtype)
    axes = normalize_axes(axis, arr.ndim)
    if out is not None:
        check_out(out, arr.shape, result_dtype)
    if arr.size == 0:
        return out if out is not None else np.empty(arr.shape, dtype=result_dtype)

    if arr.dtype != compute:
        arr = arr.astype(compute)
    if compute in _KERNEL_DTYPES:
        kernels = _backends.kernels_for(backend, "softmax_rows")
    else:  # long double: only NumPy computes in it
        _backends.kernels_for(backend, "softmax_rows")  # still validates backend=
        kernels = _backends._load("numpy")

    target = out if (out is not None and out.dtype == compute) else None
    if target is not None and np.may_share_memory(arr, target) and not _same_view(arr, target):
        arr = arr.copy()  # partial overlap: read from a private copy
    plan = split_for_reduction(arr, axes, target)
    if plan.x3.shape[2] == 1:
        kernels.softmax_rows(plan.x3[:, :, 0], plan.out3[:, :, 0], log, _backends._num_threads)
    else:
        kernels.softmax_cols(plan.x3, plan.out3, log, _backends._num_threads)
    res = plan.finish()

    if out is not None:
        if res is not out:
            np.copyto(out, res, casting="unsafe")
        return out
    if res.dtype != result_dtype:
        res = res.astype(result_dtype)
    return res[()] if res.ndim == 0 else res


def softmax(x, axis=None, *, out=None, dtype=None, backend=None):
    r"""Softmax of ``x`` along ``axis``: ``exp(x) / sum(exp(x))``, computed stably.

    A drop-in replacement for :func:`scipy.special.softmax`, parallel and
    vectorised.

    Parameters
    ----------
    x : array_like
        Input of real numbers (any layout: strided, transposed, read-only...).
    axis : int, tuple of ints or None, optional
        Axis or axes over which each softmax is taken.  ``None`` (the default,
        as in SciPy) takes a single softmax over the whole array.
    out : ndarray, optional
        Where to write the result: the result's shape and dtype, writeable.
        It may be ``x`` itself (in place).
    dtype : float dtype, optional
        Compute and return in this dtype instead of the input's.
    backend : {"auto", "numba", "cython", "numpy"}, optional
        Backend for this call; ``None`` uses :func:`get_backend`.

    Returns
    -------
    ndarray
        Same shape as ``x``.  float16/float32/float64 input keeps its dtype
        (float16 is computed in float32); integer and bool input gives
        float64.  A 0-d input gives a NumPy scalar (as NumPy ufuncs and
        SciPy do), unless ``out`` is given.

    Notes
    -----
    With ``m`` the slice maximum, this computes ``exp(x - m) / sum(exp(x - m))``
    exactly as SciPy does, so special values behave the same: a slice holding
    NaN or +inf, or made only of -inf, gives NaN everywhere; a -inf entry among
    finite ones gives 0.  Unlike SciPy, an empty array gives an empty result.

    Examples
    --------
    >>> import numpy as np
    >>> from fastsoftmax import softmax
    >>> softmax([1.2, 0.3]).round(2)       # cat, dog
    array([0.71, 0.29])
    >>> p = softmax(np.array([[1., 2.], [3., 3.]], dtype=np.float32), axis=1)
    >>> p.dtype, p.round(4)
    (dtype('float32'), array([[0.2689, 0.7311],
           [0.5   , 0.5   ]], dtype=float32))
    """
    return _softmax(x, axis, out, dtype, backend, False)


def log_softmax(x, axis=None, *, out=None, dtype=None, backend=None):
    r"""Logarithm of the softmax of ``x`` along ``axis``, computed stably.

    A drop-in replacement for :func:`scipy.special.log_softmax`; the
    parameters and return value are those of :func:`softmax`.

    Notes
    -----
    With ``m`` the slice maximum (replaced by 0 when it is not finite, as in
    SciPy), this computes ``(x - m) - log(sum(exp(x - m)))``: a slice holding
    NaN, or made only of -inf, gives NaN; a slice holding +inf gives -inf at
    its finite entries and NaN at the +inf ones; a -inf entry among finite
    ones gives -inf.

    Examples
    --------
    >>> from fastsoftmax import log_softmax
    >>> log_softmax([1000.0, 1.0])
    array([   0., -999.])
    """
    return _softmax(x, axis, out, dtype, backend, True)
