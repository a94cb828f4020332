"""Numba plumbing shared by the kernel families: threading layer, thread
count, and kernels compiled lazily with explicit signatures.

Importing this module imports Numba (the backend package is itself imported
only on first use, so ``import fastsoftmax`` stays free of Numba).
"""
import threading

import numba
from numba import njit, types

__all__ = ["LazyKernel", "keep_alive", "use_threads", "parallel_lock", "FLOAT_TYPES", "prefetch_intrinsic",
           "stack_array"]

# --------------------------------------------------------------- threading
# Numba's default 'workqueue' layer is not thread-safe: two Python threads
# launching parallel kernels at once abort the process.  Ask for a
# thread-safe layer (TBB or OpenMP, whichever loads; the wheel ships OpenMP)
# unless the user chose one explicitly.  This must happen before the first
# parallel kernel is launched.
if numba.config.THREADING_LAYER == "default":
    numba.config.THREADING_LAYER = "threadsafe"

_MAX_THREADS = numba.config.NUMBA_NUM_THREADS
_tls = threading.local()
# Taken around parallel launches only when the layer turned out to be
# 'workqueue' (the user forced it): concurrent launches are then serialised.
_launch_lock = threading.Lock()
_layer_checked = False
_need_lock = False


class _NoLock:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


_NO_LOCK = _NoLock()


def parallel_lock():
    """Context manager to hold around a parallel kernel launch."""
    return _launch_lock if _need_lock else _NO_LOCK


def check_layer():
    """Call after the first parallel launch: serialise launches if needed."""
    global _layer_checked, _need_lock
    if _layer_checked:
        return
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel kernel launched yet
        return
    _need_lock = layer == "workqueue"
    _layer_checked = True


def use_threads(n_threads):
    """Make the calling thread's next parallel kernel use ``n_threads``.

    ``numba.set_num_threads`` is per calling thread; it is only called when
    the value changes (the last value is kept in a thread-local).
    """
    n = n_threads if n_threads < _MAX_THREADS else _MAX_THREADS
    if n < 1:
        n = 1
    if getattr(_tls, "n", 0) != n:
        numba.set_num_threads(n)
        _tls.n = n
    return n


# ----------------------------------------------------------- lazy kernels
FLOAT_TYPES = {"f": types.float32, "d": types.float64}
_compile_lock = threading.RLock()


class LazyKernel:
    """A Numba kernel compiled per dtype on first use, with explicit signatures.

    ``signatures(ft)`` returns the signatures for float type ``ft``.  Explicit
    signatures keep the number of compiled variants small: a C-contiguous or
    writeable array converts to the ``'A'``-layout, read-only signature at
    call time instead of triggering a new compilation.  Each dtype gets its
    own dispatcher (compiled, then closed to further compilation), loaded
    from Numba's on-disk cache when possible.
    """

    def __init__(self, pyfunc, signatures, **options):
        self.pyfunc = pyfunc
        self.signatures = signatures
        self.options = dict(cache=True, **options)
        self.dispatchers = {}

    def __getitem__(self, char):
        disp = self.dispatchers.get(char)
        if disp is None:
            disp = self._compile(char)
        return disp

    def _compile(self, char):
        with _compile_lock:
            disp = self.dispatchers.get(char)
            if disp is None:
                sigs = self.signatures(FLOAT_TYPES[char])
                disp = njit(sigs, **self.options)(self.pyfunc)
                self.dispatchers[char] = disp
            return disp


def arr(ft, ndim, layout="A", readonly=False):
    """Numba array type shorthand."""
    return types.Array(ft, ndim, layout, readonly=readonly)


# ------------------------------------------------------------ flat views
_as_strided = None


def flat(a):
    """``a`` (2-D or 3-D, last stride = itemsize) as a flat C-contiguous 1-D
    buffer spanning all its elements, with the offset of ``a[0, 0(, 0)]`` and
    the strides of the leading axes, in elements.

    Returns ``(buf, offset, stride0, stride1)`` (``stride1`` is 0 for 2-D),
    or ``(None, 0, 0, 0)`` when a stride is not a multiple of the item size
    or the data is not aligned (the caller then copies).  Negative and zero
    strides are fine: the buffer starts at the lowest address ``a`` touches.
    """
    global _as_strided
    item = a.itemsize
    if a.flags.c_contiguous:
        if a.ndim == 2:
            return a.reshape(-1), 0, a.shape[1], 0
        return a.reshape(-1), 0, a.shape[1] * a.shape[2], a.shape[2]
    if not a.flags.aligned:
        return None, 0, 0, 0
    strides = a.strides[:-1]
    if any(s % item for s in strides):
        return None, 0, 0, 0
    elem = [s // item for s in strides]
    offset = 0
    span = a.shape[-1]
    corner = []
    for size, st in zip(a.shape[:-1], elem):
        if st < 0:
            offset -= st * (size - 1)
            corner.append(size - 1)
        else:
            corner.append(0)
        span += abs(st) * (size - 1)
    if _as_strided is None:
        from numpy.lib.stride_tricks import as_strided as _as_strided_fn
        _as_strided = _as_strided_fn
    start = a[tuple(corner)]  # 1-D view at the lowest address
    buf = _as_strided(start, shape=(span,), strides=(item,))
    return buf, offset, elem[0], (elem[1] if len(elem) > 1 else 0)




# ------------------------------------------------------------ row views
from numba.core import cgutils  # noqa: E402
from numba.extending import intrinsic  # noqa: E402


@intrinsic
def view(typingctx, buf, start, length):
    """``buf.flat[start:start + length]`` as an unmanaged C-contiguous 1-D array
    (``buf`` is 1-D, or C-contiguous of any dimension).

    Used inside kernels instead of slicing: the view carries no reference
    (its meminfo is NULL), so creating it costs no atomic reference-count
    update, and its indices are known to be non-negative and unit-stride, so
    LLVM vectorises loops over it (a flat ``buf[offset + j]`` index defeats
    the vectoriser: Numba wraps negative indices).  The caller guarantees
    that ``buf`` outlives the view and that the range is in bounds.
    """
    if not (isinstance(buf, types.Array) and (buf.ndim == 1 or buf.layout == "C")
            and isinstance(start, types.Integer) and isinstance(length, types.Integer)):
        return None
    result = buf.copy(ndim=1, layout="C")
    sig = result(buf, start, length)

    def codegen(context, builder, signature, args):
        size = context.cast(builder, args[2], signature.args[2], types.intp)
        return _unmanaged_1d(context, builder, result,
                             element_pointer(context, builder, signature, args), size)

    return sig, codegen


@intrinsic
def keep_alive(typingctx, a, b):
    """A use of arrays ``a`` and ``b`` that does nothing.  Numba frees a
    local array after its last use in the code, and a ``view`` of it holds
    no reference: call this after the last use of views of arrays that the
    function allocated, unless a loop around those uses keeps them alive
    (``_rows_scratch_piped``'s last row, written from a view of a scratch
    row whose last use was the view's creation, read freed memory)."""
    if not (isinstance(a, types.Array) and isinstance(b, types.Array)):
        return None

    def codegen(context, builder, signature, args):
        return context.get_dummy_value()

    return types.none(a, b), codegen


def _unmanaged_1d(context, builder, result, data, size):
    """The value of a C-contiguous 1-D array of type ``result`` over ``size``
    elements at ``data``, with no owner (no meminfo, no parent)."""
    dst = context.make_array(result)(context, builder)
    itemsize = context.get_constant(
        types.intp, context.get_abi_sizeof(context.get_data_type(result.dtype)))
    context.populate_array(
        dst,
        data=data,
        shape=cgutils.pack_array(builder, [size]),
        strides=cgutils.pack_array(builder, [itemsize]),
        itemsize=itemsize,
        meminfo=None,
        parent=None,
    )
    return dst._getvalue()


@intrinsic
def stack_array(typingctx, ref, length):
    """An unmanaged C-contiguous 1-D array of ``length`` elements (a
    compile-time constant) of ``ref``'s float type (``ref``: a float, or an
    array of floats), on the stack of the calling function: allocated once,
    in its entry block (no allocator call, no reference count), valid until
    that function returns.  Its contents start undefined."""
    ft = ref.dtype if isinstance(ref, types.Array) else ref
    if not (ft in (types.float32, types.float64) and isinstance(length, types.IntegerLiteral)
            and length.literal_value > 0):
        return None
    n = length.literal_value
    result = types.Array(ft, 1, "C")
    sig = result(ref, length)

    def codegen(context, builder, signature, args):
        data = cgutils.alloca_once(builder, context.get_data_type(ft), size=n)
        return _unmanaged_1d(context, builder, result, data, context.get_constant(types.intp, n))

    return sig, codegen


def _view_aliases(lhs, args, alias_map, arg_aliases):
    # Tell Numba's dead-code elimination that a view aliases its buffer;
    # without this, a parfor (prange) body drops stores into a view that are
    # not followed by a read, e.g. ``grad_row[target] = value``.
    from numba.core.ir_utils import _add_alias
    _add_alias(lhs, args[0].name, alias_map, arg_aliases)


def _register_view_aliases():
    from numba.core import ir_utils
    ir_utils.alias_func_extensions[("view", __name__)] = _view_aliases


_register_view_aliases()


# ------------------------------------------------------------- prefetch
from llvmlite import ir  # noqa: E402


def element_pointer(context, builder, signature, args, pos=0):
    """Codegen helper of intrinsics: the pointer to ``buf[index]``, where
    ``buf`` (an array) and ``index`` (an integer) are arguments ``pos`` and
    ``pos + 1``."""
    ary = context.make_array(signature.args[pos])(context, builder, value=args[pos])
    i = context.cast(builder, args[pos + 1], signature.args[pos + 1], types.intp)
    return builder.gep(ary.data, [i])


def prefetch_intrinsic(locality, doc):
    """An intrinsic ``f(buf, index)`` hinting the CPU to load ``buf[index]``'s
    cache line (``llvm.prefetch``, read, data cache, the given locality 0-3),
    documented by ``doc``."""
    def impl(typingctx, buf, index):
        if not (isinstance(buf, types.Array) and isinstance(index, types.Integer)):
            return None

        def codegen(context, builder, signature, args):
            ptr = builder.bitcast(element_pointer(context, builder, signature, args),
                                  ir.IntType(8).as_pointer())
            i32 = ir.IntType(32)
            fn = builder.module.declare_intrinsic(
                "llvm.prefetch", [ptr.type],
                ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32]))
            builder.call(fn, [ptr, ir.Constant(i32, 0), ir.Constant(i32, locality), ir.Constant(i32, 1)])
            return context.get_dummy_value()

        return types.none(buf, index), codegen

    impl.__doc__ = doc
    return intrinsic(impl)
