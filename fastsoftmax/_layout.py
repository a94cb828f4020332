"""Turn any (shape, axes, strides) into the layouts the kernels take.

Kernels see only two layouts (see :mod:`fastsoftmax.kernels`):

* **rows** ``(n, k)``: the reduction runs along the last axis, whose stride is
  one element; the row stride is arbitrary (negative included).
* **columns** ``(outer, k, inner)``: the reduction runs along axis 1; the last
  axis has a stride of one element, the other two are arbitrary.

A view into one of these layouts is made without copying whenever the
strides allow it; otherwise the input is copied once into C order, and the
output is computed into a scratch array and copied into place.
"""
import numpy as np

__all__ = ["merged_view", "split_for_reduction", "RowsOrCols"]


def _mergeable(shape, strides):
    """True when the dims can be merged into one dim without a copy."""
    last_stride = None
    for size, stride in zip(shape, strides):
        if size == 1:
            continue
        if last_stride is not None and last_stride != stride * size:
            return False
        last_stride = stride
    return True


def merged_view(a, start, stop):
    """View of ``a`` as ``(outer, k, inner)`` with ``k`` the product of the
    dims ``start:stop``; ``None`` when the strides forbid a view or when the
    innermost dim of the result is not unit-stride (k for inner == 1)."""
    shape, strides = a.shape, a.strides
    outer = 1
    for s in shape[:start]:
        outer *= s
    k = 1
    for s in shape[start:stop]:
        k *= s
    inner = 1
    for s in shape[stop:]:
        inner *= s
    if not (_mergeable(shape[:start], strides[:start])
            and _mergeable(shape[start:stop], strides[start:stop])
            and _mergeable(shape[stop:], strides[stop:])):
        return None
    item = a.itemsize
    # stride of the innermost merged dim of each group (or item for size-1 groups)
    if inner == 1:
        if k > 1 and _innermost_stride(shape[start:stop], strides[start:stop]) != item:
            return None
    elif _innermost_stride(shape[stop:], strides[stop:]) != item:
        return None
    view = a.reshape(outer, k, inner)
    return view


def _innermost_stride(shape, strides):
    for size, stride in zip(reversed(shape), reversed(strides)):
        if size != 1:
            return stride
    return None


class RowsOrCols:
    """The reduction problem of an array over a set of axes, ready for a kernel.

    Attributes
    ----------
    x3, out3 : ndarray
        ``(outer, k, inner)`` views (or copies) of input and output.
    result : ndarray
        The array the caller returns (``out`` when it could be written in
        place, else a fresh C-ordered array in the original shape).
    scratch : bool
        True when ``out3`` is a scratch array that must be copied into
        ``result`` after the kernel (see :meth:`finish`).
    """

    __slots__ = ("x3", "out3", "result", "_result_view", "scratch")

    def finish(self):
        if self.scratch:
            np.copyto(self._result_view, self.out3.reshape(self._result_view.shape))
        return self.result


def split_for_reduction(x, axes, out=None):
    """Lay out ``x`` (and ``out``, or a new result) for a reduction over ``axes``.

    ``x`` must be a native-endian float array with ``x.size > 0``; ``axes`` a
    sorted tuple of distinct axes; ``out`` (optional) an array of the same
    shape and dtype that may be ``x`` itself but does not otherwise overlap it.
    """
    p = RowsOrCols()
    ndim = x.ndim
    result = out if out is not None else np.empty(x.shape, dtype=x.dtype)
    p.result = result
    if ndim == 0:
        x = x.reshape(1)
        result_view = result.reshape(1)
        axes = (0,)
    else:
        result_view = result
    if axes and axes[-1] - axes[0] + 1 != len(axes):
        # Non-consecutive axes: bring them together at the end.
        keep = [i for i in range(ndim) if i not in axes]
        perm = keep + list(axes)
        x = x.transpose(perm)
        result_view = result_view.transpose(perm)
        axes = tuple(range(len(keep), ndim))
    if not axes:  # axis=() : each element is its own slice
        start = stop = x.ndim
    else:
        start, stop = axes[0], axes[-1] + 1
    x3 = merged_view(x, start, stop)
    if x3 is None:
        x3 = merged_view(np.ascontiguousarray(x), start, stop)
    o3 = merged_view(result_view, start, stop)
    if o3 is not None and not np.may_share_memory(o3, result):
        o3 = None  # reshape copied: never write into a copy
    if o3 is None:
        o3 = np.empty(x3.shape, dtype=x3.dtype)
        p.scratch = True
    else:
        p.scratch = False
    p.x3, p.out3, p._result_view = x3, o3, result_view
    return p
