"""The public softmax's fast path for the Numba backend (``softmax_fast`` of
the kernel contract).

A small call is mostly overhead: the front end's checks, then Numba's
dispatcher, which types every argument before it picks the compiled
function (about 0.4 us per call on its own).  Here the checks are the
fewest that make the call safe, and a small C-contiguous call goes straight
to the compiled function's entry point (``overloads[sig].entry_point``,
which only unboxes its arguments), skipping the dispatcher.  The checks
guarantee what the entry point's signature assumes (exact dtype, C order,
a writeable output), because it does not check them itself.
"""
import numpy as np

from . import softmax as _k

__all__ = ["softmax_fast"]

_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)
#: dtype -> entry point of K_ROWS_C (not in-place), filled on first use
_ENTRY = {}
# (bound once: a module attribute lookup is a noticeable part of a small call)
_SERIAL_WORK, _LONG_ROW = _k.SERIAL_WORK, _k.LONG_ROW
#: no size limit for the serial kernel (one thread)
_ANY_SIZE = 1 << 62
_empty = np.empty
_ndarray = np.ndarray


def _entry(dtype):
    """The compiled serial C-contiguous rows kernel for ``dtype``, called
    without the dispatcher (falls back to the dispatcher itself if this Numba
    does not expose the entry point)."""
    disp = _k.K_ROWS_C[dtype.char]
    try:
        (cres,) = disp.overloads.values()
        fn = cres.entry_point
    except (AttributeError, ValueError):
        fn = disp
    if not callable(fn):
        fn = disp
    _ENTRY[dtype] = fn
    return fn


def softmax_fast(x, axis, out, log, n_threads):
    """Softmax of ``x`` over its last axis (or all of it), or None when the
    call needs the general path.

    Taken when ``x`` is exactly a C-ordered, aligned, native float32/float64
    ndarray with at least one element and one dimension, ``axis`` is None,
    -1 or ``x.ndim - 1`` (an int), and ``out`` is None or exactly an aligned,
    writeable, C-ordered ndarray of the same shape and dtype that is ``x``
    itself or does not overlap it.  Small calls run the serial kernel
    through its entry point; the others go to :func:`softmax_rows`.

    The commonest small call, a 2-D ``x`` over axis -1 or 1 into a new or
    a separate ``out`` array, checks here only what the entry point's
    arguments must be (exact type, dtype, ndim; a writeable ``out``) and
    leaves the rest (shapes, C order, alignment, overlap, size) to the
    compiled kernel, which declines when they do not hold.
    """
    if type(x) is not _ndarray or n_threads < 1:
        return None
    dt = x.dtype
    # (a bigger call goes to the parallel kernels below: not allocated twice)
    limit = _SERIAL_WORK if n_threads > 1 else _ANY_SIZE
    if ((dt is _F32 or dt is _F64) and x.ndim == 2 and type(axis) is int
            and (axis == -1 or axis == 1) and x.size <= limit):
        if out is None:
            res = _empty(x.shape, dt)
        elif (type(out) is _ndarray and out.dtype is dt and out.ndim == 2 and out is not x
              and out.flags.writeable):
            res = out
        else:
            res = None
        if res is not None:
            fn = _ENTRY.get(dt)
            if fn is None:
                fn = _entry(dt)
            if not fn(x, res, log, limit):
                return res
    if dt is not _F32 and dt is not _F64:
        if dt != _F32 and dt != _F64:  # also declines byte-swapped data
            return None
        dt = _F32 if dt == _F32 else _F64
    flags = x.flags
    if not (flags.c_contiguous and flags.aligned):
        return None
    shape = x.shape
    ndim = len(shape)
    size = x.size
    if not (ndim and size):
        return None
    if axis is None:
        k = size
    elif type(axis) is int and (axis == -1 or axis == ndim - 1):
        k = shape[ndim - 1]
    else:
        return None
    if out is None:
        res = _empty(shape, dt)
    elif out is x:
        if not flags.writeable:
            return None
        res = out
    else:
        if type(out) is not np.ndarray or out.dtype != dt or out.shape != x.shape:
            return None
        oflags = out.flags
        if not (oflags.c_contiguous and oflags.aligned and oflags.writeable) \
                or np.may_share_memory(out, x):
            return None
        res = out
    if size <= _SERIAL_WORK and k <= _LONG_ROW and res is not x:
        fn = _ENTRY.get(dt)
        if fn is None:
            fn = _entry(dt)
        if ndim == 2 and axis is not None:
            done = not fn(x, res, log, size)
        else:
            done = not fn(x.reshape(-1, k), res.reshape(-1, k), log, size)
        if done:
            return res
    if ndim == 2 and axis is not None:
        _k.softmax_rows(x, res, log, n_threads)
    else:
        _k.softmax_rows(x.reshape(-1, k), res.reshape(-1, k), log, n_threads)
    return res
