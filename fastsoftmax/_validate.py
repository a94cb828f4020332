"""Input validation: every user-facing error of fastsoftmax is raised here.

The functions turn ``array_like`` arguments into checked ``ndarray`` objects,
normalise axes and dtypes, and check ``out=`` arrays.  Kernels only ever see
what passed through this module.
"""
import operator

import numpy as np

try:  # NumPy >= 1.25
    from numpy.exceptions import AxisError
except ImportError:  # pragma: no cover - old NumPy
    AxisError = np.AxisError

__all__ = [
    "AxisError",
    "as_real_array",
    "float_dtypes",
    "normalize_axes",
    "check_out",
    "check_writeable",
]

_F2 = np.dtype(np.float16)
_F4 = np.dtype(np.float32)
_F8 = np.dtype(np.float64)


def as_real_array(x, name="x"):
    """``np.asarray(x)``, refusing complex, object, string and other non-real dtypes."""
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be array_like of real numbers: {exc}") from None
    kind = arr.dtype.kind
    if kind in "biuf":
        return arr
    if kind == "c":
        raise TypeError(
            f"{name} is complex ({arr.dtype}); fastsoftmax works on real "
            "numbers only. Pass x.real (or np.abs(x)) explicitly."
        )
    raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")


def float_dtypes(in_dtype, dtype=None, name="dtype"):
    """Return ``(compute_dtype, result_dtype)`` for an input dtype.

    float32/float64 keep their dtype, float16 is computed in float32 and
    returned as float16, integers and bools compute in float64 (as SciPy
    does), and ``long double`` is computed in ``long double``.  ``dtype``
    (when given) overrides the input dtype and must be a real float type.
    """
    if dtype is not None:
        try:
            want = np.dtype(dtype)
        except TypeError as exc:
            raise TypeError(f"{name}: not a NumPy dtype: {dtype!r} ({exc})") from None
        if want.kind != "f":
            raise TypeError(f"{name} must be a floating dtype (float16, float32, "
                            f"float64), got {want}")
        want = want.newbyteorder("=")
    else:
        want = in_dtype
        if want.kind in "biu":
            return _F8, _F8
        want = want.newbyteorder("=")
    if want == _F2:
        return _F4, _F2
    return want, want


def normalize_axes(axis, ndim, name="axis"):
    """Return a sorted tuple of distinct non-negative axes.

    ``None`` means every axis (for a 0-d array, the single element).  A bad axis
    raises :class:`numpy.exceptions.AxisError`; a repeated one, ``ValueError``.
    """
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, tuple):
        items = axis
    elif isinstance(axis, list):
        items = tuple(axis)
    else:
        items = (axis,)
    out = []
    for a in items:
        try:
            a = operator.index(a)
        except TypeError:
            raise TypeError(f"{name} must be an int, a tuple of ints or None, "
                            f"got {type(a).__name__}") from None
        if not -ndim <= a < ndim:
            raise AxisError(a, ndim)
        out.append(a % ndim if ndim else a)
    if len(set(out)) != len(out):
        raise ValueError(f"repeated axis in {name}={axis!r}")
    return tuple(sorted(out))


def check_writeable(arr, name):
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(arr).__name__}")
    if not arr.flags.writeable:
        raise ValueError(f"{name} is read-only")


def check_out(out, shape, dtype, name="out"):
    """Check an ``out=`` array: an ndarray of exactly ``shape`` and ``dtype``, writeable."""
    check_writeable(out, name)
    if out.shape != tuple(shape):
        raise ValueError(f"{name} has shape {out.shape}, the result has shape {tuple(shape)}")
    if out.dtype != dtype:
        raise ValueError(f"{name} has dtype {out.dtype}, the result has dtype {dtype}")
    return out
