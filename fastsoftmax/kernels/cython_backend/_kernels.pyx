# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled kernels of the Cython backend (see fastsoftmax.kernels for the contract).

The hot loops are plain C in ``fsm_*.h`` (vectorised with GCC vector
extensions, compiled for several instruction sets and picked at import);
this module only unpacks the NumPy arrays, checks the layout cheaply (a
kernel never reads or writes out of bounds, whatever it is given) and
releases the GIL around large calls.
"""
cimport numpy as cnp
from cpython.pycapsule cimport PyCapsule_CheckExact, PyCapsule_GetName, PyCapsule_GetPointer
from libc.stdint cimport int64_t

import numpy as np

cnp.import_array()

cdef extern from "fsm_kernels.h" nogil:
    ctypedef struct fsm_config_t:
        Py_ssize_t long_row_bytes
        Py_ssize_t chunk
        Py_ssize_t par_min_elems
        Py_ssize_t nt_min_bytes
        Py_ssize_t scratch_min_bytes
        Py_ssize_t col_block
        Py_ssize_t col_group
        Py_ssize_t sm_pipe_bytes
    fsm_config_t fsm_cfg
    int fsm_isa_level
    int fsm_isa_max
    void fsm_init()
    int fsm_set_isa(int level)
    int fsm_softmax_rows_f32(const char *x, Py_ssize_t xs, char *out, Py_ssize_t os,
                             Py_ssize_t n, Py_ssize_t k, int is_log, int n_threads)
    int fsm_softmax_rows_f64(const char *x, Py_ssize_t xs, char *out, Py_ssize_t os,
                             Py_ssize_t n, Py_ssize_t k, int is_log, int n_threads)
    int fsm_softmax_cols_f32(const char *x, Py_ssize_t xs0, Py_ssize_t xs1, char *out,
                             Py_ssize_t os0, Py_ssize_t os1, Py_ssize_t outer,
                             Py_ssize_t k, Py_ssize_t inner, int is_log, int n_threads)
    int fsm_softmax_cols_f64(const char *x, Py_ssize_t xs0, Py_ssize_t xs1, char *out,
                             Py_ssize_t os0, Py_ssize_t os1, Py_ssize_t outer,
                             Py_ssize_t k, Py_ssize_t inner, int is_log, int n_threads)
    void fsm_exp_f32(const float *x, float *out, Py_ssize_t n, int nonpos)
    void fsm_exp_f64(const double *x, double *out, Py_ssize_t n, int nonpos)
    int fsm_ce_index_rows_f32(const char *z, Py_ssize_t zs, Py_ssize_t n, Py_ssize_t C,
                              const int64_t *target, const double *w, int64_t ignore_index,
                              double eps, double grad_scale, double *loss,
                              char *grad, Py_ssize_t gs, int n_threads)
    int fsm_ce_index_rows_f64(const char *z, Py_ssize_t zs, Py_ssize_t n, Py_ssize_t C,
                              const int64_t *target, const double *w, int64_t ignore_index,
                              double eps, double grad_scale, double *loss,
                              char *grad, Py_ssize_t gs, int n_threads)
    int fsm_ce_prob_rows_f32(const char *z, Py_ssize_t zs, Py_ssize_t n, Py_ssize_t C,
                             const char *t, Py_ssize_t ts, const double *w, double eps,
                             double grad_scale, double *loss, char *grad, Py_ssize_t gs,
                             int n_threads)
    int fsm_ce_prob_rows_f64(const char *z, Py_ssize_t zs, Py_ssize_t n, Py_ssize_t C,
                             const char *t, Py_ssize_t ts, const double *w, double eps,
                             double grad_scale, double *loss, char *grad, Py_ssize_t gs,
                             int n_threads)

cdef extern from "fsm_sampled.h" nogil:
    ctypedef struct fsm_sampled_args:
        void *gemm
        Py_ssize_t batch, num_true, num_sampled, dim
        const char *w
        Py_ssize_t ws
        const int64_t *sampled
        void *w_aug
        const void *x
        void *x_aug
        const int64_t *true_ids
        const void *bias_true
        const int64_t *hit_rows
        const int64_t *hit_cols
        Py_ssize_t n_hits
        void *logits
        const int64_t *ce_index
        const void *ce_prob
        double grad_scale
        double *row_loss
        void *grad_x
        const int64_t *fold_rows
        const int64_t *fold_t
        const int64_t *fold_cols
        Py_ssize_t n_fold
        const int64_t *rest_pos
        Py_ssize_t n_rest
        void *rest_out
        void *cand
        void *shares
        const int64_t *row_bounds
        Py_ssize_t n_rows
    ctypedef struct fsm_sampled_state:
        Py_ssize_t n_gather, n_items
        Py_ssize_t next, gathered, done
        int err
    void fsm_sampled_work_f32(const fsm_sampled_args *a, fsm_sampled_state *st)
    void fsm_sampled_work_f64(const fsm_sampled_args *a, fsm_sampled_state *st)
    void fsm_sampled_wait(fsm_sampled_state *st)

fsm_init()

# Calls with fewer elements than this keep the GIL (releasing it costs more
# than the work).
DEF NOGIL_MIN = 8192
_ISA_NAMES = ("base", "avx2", "avx512")


cdef inline int _float_type(cnp.ndarray a, str name) except -1:
    """NPY_FLOAT or NPY_DOUBLE of a native-endian float32/float64 array."""
    cdef int typ = cnp.PyArray_TYPE(a)
    if (typ != cnp.NPY_FLOAT and typ != cnp.NPY_DOUBLE) or not cnp.PyArray_ISNOTSWAPPED(a):
        raise TypeError(f"{name} must be a native float32 or float64 array, got {a.dtype}")
    return typ


cdef inline int _check_same(cnp.ndarray x, cnp.ndarray out, int ndim, str what) except -1:
    cdef int i
    if cnp.PyArray_NDIM(x) != ndim or cnp.PyArray_NDIM(out) != ndim:
        raise ValueError(f"{what}: x and out must be {ndim}-D, got {x.ndim}-D and {out.ndim}-D")
    for i in range(ndim):
        if cnp.PyArray_DIMS(x)[i] != cnp.PyArray_DIMS(out)[i]:
            raise ValueError(f"{what}: x has shape {(<object>x).shape}, out has shape {(<object>out).shape}")
    if cnp.PyArray_TYPE(x) != cnp.PyArray_TYPE(out):
        raise TypeError(f"{what}: x is {x.dtype}, out is {out.dtype}")
    if not cnp.PyArray_ISWRITEABLE(out):
        raise ValueError(f"{what}: out is read-only")
    return 0


cdef inline int _check_unit_stride(cnp.ndarray a, int axis, str name) except -1:
    if (cnp.PyArray_DIMS(a)[axis] > 1 and cnp.PyArray_SIZE(a) > 0
            and cnp.PyArray_STRIDES(a)[axis] != cnp.PyArray_ITEMSIZE(a)):
        raise ValueError(f"{name}: axis {axis} must have a stride of one element, "
                         f"got strides {(<object>a).strides}")
    return 0


cdef inline int _check_threads(int n_threads) except -1:
    if n_threads < 1:
        raise ValueError(f"n_threads must be >= 1, got {n_threads}")
    return 0


cdef int _rows_call(int typ, const char *xp, Py_ssize_t xs, char *op, Py_ssize_t os,
                    Py_ssize_t n, Py_ssize_t k, bint log, int n_threads) except -1:
    """The C row kernel for typ, without the GIL for calls big enough to pay."""
    cdef int rc
    if n * k < NOGIL_MIN:
        if typ == cnp.NPY_FLOAT:
            rc = fsm_softmax_rows_f32(xp, xs, op, os, n, k, log, n_threads)
        else:
            rc = fsm_softmax_rows_f64(xp, xs, op, os, n, k, log, n_threads)
    else:
        with nogil:
            if typ == cnp.NPY_FLOAT:
                rc = fsm_softmax_rows_f32(xp, xs, op, os, n, k, log, n_threads)
            else:
                rc = fsm_softmax_rows_f64(xp, xs, op, os, n, k, log, n_threads)
    if rc != 0:
        raise MemoryError("softmax: out of memory for the per-chunk partial sums")
    return 0


def softmax_rows(cnp.ndarray x not None, cnp.ndarray out not None, bint log, int n_threads):
    """Softmax (``log=False``) or log-softmax of each row of 2-D ``x`` into ``out``.

    See :mod:`fastsoftmax.kernels` for the contract.
    """
    cdef int typ = _float_type(x, "x")
    _check_same(x, out, 2, "softmax_rows")
    _check_unit_stride(x, 1, "x")
    _check_unit_stride(out, 1, "out")
    _check_threads(n_threads)
    cdef Py_ssize_t n = cnp.PyArray_DIMS(x)[0], k = cnp.PyArray_DIMS(x)[1]
    if n == 0 or k == 0:
        return
    if not (cnp.PyArray_ISALIGNED(x) and cnp.PyArray_ISALIGNED(out)):
        tmp = np.empty((n, k), dtype=x.dtype)
        softmax_rows(np.array(x, copy=True), tmp, log, n_threads)
        out[...] = tmp
        return
    cdef const char *xp = cnp.PyArray_BYTES(x)
    cdef char *op = cnp.PyArray_BYTES(out)
    cdef Py_ssize_t xs = cnp.PyArray_STRIDES(x)[0], os = cnp.PyArray_STRIDES(out)[0]
    _rows_call(typ, xp, xs, op, os, n, k, log, n_threads)


def softmax_fast(object x, object axis, object out, bint log, int n_threads):
    """The public softmax's fast path, all in C: returns the result, or None
    when the call needs the general path.

    Taken when ``x`` is exactly a C-ordered, aligned, native float32/float64
    ndarray with at least one element and one dimension, ``axis`` is None,
    -1 or ``x.ndim - 1`` (an int), and ``out`` is None or exactly an aligned,
    writeable, C-ordered ndarray of the same shape and dtype that is ``x``
    itself or does not overlap it.  Saves the front end's Python checks
    (about half a microsecond, most of a small call).
    """
    if type(x) is not np.ndarray or n_threads < 1:
        return None
    cdef cnp.ndarray a = <cnp.ndarray>x
    cdef int nd = cnp.PyArray_NDIM(a)
    cdef int typ = cnp.PyArray_TYPE(a)
    if (nd == 0 or (typ != cnp.NPY_FLOAT and typ != cnp.NPY_DOUBLE)
            or not cnp.PyArray_ISNOTSWAPPED(a) or not cnp.PyArray_IS_C_CONTIGUOUS(a)
            or not cnp.PyArray_ISALIGNED(a)):
        return None
    cdef Py_ssize_t size = cnp.PyArray_SIZE(a)
    if size == 0:
        return None
    cdef long ax
    cdef Py_ssize_t k
    if axis is None:
        k = size
    elif type(axis) is int:
        ax = axis
        if ax != -1 and ax != nd - 1:
            return None
        k = cnp.PyArray_DIMS(a)[nd - 1]
    else:
        return None
    cdef cnp.ndarray res
    cdef int i
    cdef char *ap = cnp.PyArray_BYTES(a)
    cdef char *rp
    cdef Py_ssize_t nbytes = size * cnp.PyArray_ITEMSIZE(a)
    if out is None:
        res = cnp.PyArray_EMPTY(nd, cnp.PyArray_DIMS(a), typ, 0)
    else:
        if type(out) is not np.ndarray:
            return None
        res = <cnp.ndarray>out
        if (cnp.PyArray_NDIM(res) != nd or cnp.PyArray_TYPE(res) != typ
                or not cnp.PyArray_ISNOTSWAPPED(res) or not cnp.PyArray_IS_C_CONTIGUOUS(res)
                or not cnp.PyArray_ISALIGNED(res) or not cnp.PyArray_ISWRITEABLE(res)):
            return None
        for i in range(nd):
            if cnp.PyArray_DIMS(res)[i] != cnp.PyArray_DIMS(a)[i]:
                return None
        rp = cnp.PyArray_BYTES(res)
        if rp != ap and rp < ap + nbytes and ap < rp + nbytes:
            return None   # partial overlap: the general path copies
    rp = cnp.PyArray_BYTES(res)
    cdef Py_ssize_t st = k * cnp.PyArray_ITEMSIZE(a)
    _rows_call(typ, ap, st, rp, st, size // k, k, log, n_threads)
    return res


def softmax_cols(cnp.ndarray x not None, cnp.ndarray out not None, bint log, int n_threads):
    """Softmax or log-softmax over axis 1 of 3-D ``(outer, k, inner)`` ``x`` into ``out``.

    See :mod:`fastsoftmax.kernels` for the contract.
    """
    cdef int typ = _float_type(x, "x")
    _check_same(x, out, 3, "softmax_cols")
    _check_unit_stride(x, 2, "x")
    _check_unit_stride(out, 2, "out")
    _check_threads(n_threads)
    cdef Py_ssize_t outer = cnp.PyArray_DIMS(x)[0], k = cnp.PyArray_DIMS(x)[1]
    cdef Py_ssize_t inner = cnp.PyArray_DIMS(x)[2]
    if outer == 0 or k == 0 or inner == 0:
        return
    if not (cnp.PyArray_ISALIGNED(x) and cnp.PyArray_ISALIGNED(out)):
        tmp = np.empty((outer, k, inner), dtype=x.dtype)
        softmax_cols(np.array(x, copy=True), tmp, log, n_threads)
        out[...] = tmp
        return
    cdef const char *xp = cnp.PyArray_BYTES(x)
    cdef char *op = cnp.PyArray_BYTES(out)
    cdef Py_ssize_t xs0 = cnp.PyArray_STRIDES(x)[0], xs1 = cnp.PyArray_STRIDES(x)[1]
    cdef Py_ssize_t os0 = cnp.PyArray_STRIDES(out)[0], os1 = cnp.PyArray_STRIDES(out)[1]
    cdef int rc
    with nogil:
        if typ == cnp.NPY_FLOAT:
            rc = fsm_softmax_cols_f32(xp, xs0, xs1, op, os0, os1, outer, k, inner, log, n_threads)
        else:
            rc = fsm_softmax_cols_f64(xp, xs0, xs1, op, os0, os1, outer, k, inner, log, n_threads)
    if rc != 0:
        raise MemoryError("softmax_cols: out of memory")


cdef inline const double *_weight_ptr(object weight, Py_ssize_t C) except? NULL:
    cdef cnp.ndarray w
    if weight is None:
        return NULL
    w = <cnp.ndarray?>weight
    if (cnp.PyArray_TYPE(w) != cnp.NPY_DOUBLE or not cnp.PyArray_ISNOTSWAPPED(w)
            or cnp.PyArray_NDIM(w) != 1 or cnp.PyArray_DIMS(w)[0] != C
            or not cnp.PyArray_IS_C_CONTIGUOUS(w) or not cnp.PyArray_ISALIGNED(w)):
        raise ValueError(f"weight must be a contiguous float64 array of shape ({C},)")
    return <const double *>cnp.PyArray_DATA(w)


cdef inline double *_loss_ptr(cnp.ndarray loss, Py_ssize_t n) except NULL:
    if (cnp.PyArray_TYPE(loss) != cnp.NPY_DOUBLE or not cnp.PyArray_ISNOTSWAPPED(loss)
            or cnp.PyArray_NDIM(loss) != 1 or cnp.PyArray_DIMS(loss)[0] != n
            or not cnp.PyArray_IS_C_CONTIGUOUS(loss) or not cnp.PyArray_ISALIGNED(loss)
            or not cnp.PyArray_ISWRITEABLE(loss)):
        raise ValueError(f"loss must be a writeable contiguous float64 array of shape ({n},)")
    return <double *>cnp.PyArray_DATA(loss)


cdef inline int _check_grad(cnp.ndarray logits, object grad) except -1:
    if grad is None:
        return 0
    _check_same(logits, <cnp.ndarray?>grad, 2, "cross-entropy")
    _check_unit_stride(<cnp.ndarray>grad, 1, "grad")
    return 0


def _ce_rc(int rc):
    if rc == -1:
        raise MemoryError("cross-entropy kernel: out of memory for a scratch row")
    if rc == -3:
        raise IndexError("target holds a class index outside [0, C) that is not ignore_index")
    if rc != 0:
        raise RuntimeError(f"cross-entropy kernel failed ({rc})")


cdef int _ce_index_call(int typ, const char *zp, Py_ssize_t zs, Py_ssize_t n, Py_ssize_t C,
                        const int64_t *tp, const double *wp, int64_t ign, double eps,
                        double grad_scale, double *lp, char *gp, Py_ssize_t gs,
                        int n_threads) except -1:
    """The C class-index cross-entropy kernel for typ, without the GIL for
    calls big enough to pay."""
    cdef int rc
    if n * C < NOGIL_MIN:
        if typ == cnp.NPY_FLOAT:
            rc = fsm_ce_index_rows_f32(zp, zs, n, C, tp, wp, ign, eps, grad_scale, lp, gp, gs,
                                       n_threads)
        else:
            rc = fsm_ce_index_rows_f64(zp, zs, n, C, tp, wp, ign, eps, grad_scale, lp, gp, gs,
                                       n_threads)
    else:
        with nogil:
            if typ == cnp.NPY_FLOAT:
                rc = fsm_ce_index_rows_f32(zp, zs, n, C, tp, wp, ign, eps, grad_scale, lp, gp,
                                           gs, n_threads)
            else:
                rc = fsm_ce_index_rows_f64(zp, zs, n, C, tp, wp, ign, eps, grad_scale, lp, gp,
                                           gs, n_threads)
    _ce_rc(rc)
    return 0


def cross_entropy_index_rows(cnp.ndarray logits not None, cnp.ndarray target not None,
                             weight, ignore_index, double label_smoothing, double grad_scale,
                             cnp.ndarray loss not None, grad, int n_threads):
    """Fused softmax cross-entropy against class indices (loss and optional gradient).

    See :mod:`fastsoftmax.kernels` for the contract.
    """
    cdef int typ = _float_type(logits, "logits")
    if cnp.PyArray_NDIM(logits) != 2:
        raise ValueError(f"logits must be 2-D, got {logits.ndim}-D")
    _check_unit_stride(logits, 1, "logits")
    _check_threads(n_threads)
    cdef Py_ssize_t n = cnp.PyArray_DIMS(logits)[0], C = cnp.PyArray_DIMS(logits)[1]
    if (cnp.PyArray_TYPE(target) != cnp.NPY_INT64 or not cnp.PyArray_ISNOTSWAPPED(target)
            or cnp.PyArray_NDIM(target) != 1 or cnp.PyArray_DIMS(target)[0] != n
            or not cnp.PyArray_IS_C_CONTIGUOUS(target) or not cnp.PyArray_ISALIGNED(target)):
        raise ValueError(f"target must be a contiguous int64 array of shape ({n},)")
    cdef const double *wp = _weight_ptr(weight, C)
    cdef double *lp = _loss_ptr(loss, n)
    _check_grad(logits, grad)
    if n == 0:
        return
    if C == 0:
        raise ValueError("logits has no classes")
    if not cnp.PyArray_ISALIGNED(logits) or (grad is not None and not cnp.PyArray_ISALIGNED(grad)):
        tmp = None if grad is None else np.empty((n, C), dtype=logits.dtype)
        cross_entropy_index_rows(np.array(logits, copy=True), target, weight, ignore_index,
                                 label_smoothing, grad_scale, loss, tmp, n_threads)
        if grad is not None:
            grad[...] = tmp
        return
    cdef int64_t ign = ignore_index
    cdef const int64_t *tp = <const int64_t *>cnp.PyArray_DATA(target)
    cdef const char *zp = cnp.PyArray_BYTES(logits)
    cdef Py_ssize_t zs = cnp.PyArray_STRIDES(logits)[0], gs = 0
    cdef char *gp = NULL
    if grad is not None:
        gp = cnp.PyArray_BYTES(<cnp.ndarray>grad)
        gs = cnp.PyArray_STRIDES(<cnp.ndarray>grad)[0]
    _ce_index_call(typ, zp, zs, n, C, tp, wp, ign, label_smoothing, grad_scale, lp, gp, gs,
                   n_threads)


cdef inline bint _disjoint(cnp.ndarray a, cnp.ndarray b):
    """Whether the memory of two C-contiguous arrays does not overlap."""
    cdef char *pa = cnp.PyArray_BYTES(a)
    cdef char *pb = cnp.PyArray_BYTES(b)
    cdef Py_ssize_t na = cnp.PyArray_NBYTES(a), nb = cnp.PyArray_NBYTES(b)
    return pa + na <= pb or pb + nb <= pa


cdef inline bint _simple_array(object a, int typ, int nd):
    """a is exactly an aligned, native, C-ordered ndarray of type typ and nd dims."""
    if type(a) is not np.ndarray:
        return False
    cdef cnp.ndarray arr = <cnp.ndarray>a
    return (cnp.PyArray_NDIM(arr) == nd and cnp.PyArray_TYPE(arr) == typ
            and cnp.PyArray_ISNOTSWAPPED(arr) and cnp.PyArray_IS_C_CONTIGUOUS(arr)
            and cnp.PyArray_ISALIGNED(arr))


def cross_entropy_fast(object logits, object target, object axis, object weight,
                       object ignore_index, object reduction, object label_smoothing,
                       bint want_grad, object grad_out, int n_threads):
    """The public cross-entropy's commonest case, checks included, in C:
    returns ``(loss, grad)`` (``grad`` None unless ``want_grad``), or None
    when the call needs the general path.

    Taken when ``logits`` is exactly an aligned, C-ordered, native float32 or
    float64 ndarray of shape ``(n, C)`` with ``n, C >= 1``, ``axis`` is -1 or
    1 (an int), ``weight`` is None, ``ignore_index`` an int, ``reduction`` one
    of the three names, ``label_smoothing`` a float or int in [0, 1],
    ``target`` exactly an aligned C-ordered int64 ndarray of shape ``(n,)``
    whose entries are all in ``[0, C)`` or ``ignore_index``, and
    ``grad_out`` None, ``logits`` itself, or an aligned, writeable, C-ordered
    ndarray like ``logits`` that overlaps neither input.  Anything else
    (including a bad class index: the general path names its position)
    returns None.  Results are those of the general path.
    """
    if type(logits) is not np.ndarray or weight is not None or n_threads < 1:
        return None
    cdef cnp.ndarray z = <cnp.ndarray>logits
    cdef int typ = cnp.PyArray_TYPE(z)
    if typ != cnp.NPY_FLOAT and typ != cnp.NPY_DOUBLE:
        return None
    if not _simple_array(z, typ, 2):
        return None
    cdef Py_ssize_t n = cnp.PyArray_DIMS(z)[0], C = cnp.PyArray_DIMS(z)[1]
    if n == 0 or C == 0:
        return None
    if type(axis) is not int or (axis != -1 and axis != 1):
        return None
    if type(ignore_index) is not int or not (-(2 ** 63) <= ignore_index < 2 ** 63):
        return None
    cdef int red
    if type(reduction) is not str:
        return None
    if reduction == "mean":
        red = 0
    elif reduction == "sum":
        red = 1
    elif reduction == "none":
        red = 2
    else:
        return None
    if type(label_smoothing) is not float and type(label_smoothing) is not int:
        return None
    cdef double eps = label_smoothing
    if not (0.0 <= eps <= 1.0):
        return None
    if not _simple_array(target, cnp.NPY_INT64, 1):
        return None
    cdef cnp.ndarray t = <cnp.ndarray>target
    if cnp.PyArray_DIMS(t)[0] != n:
        return None
    cdef cnp.ndarray g = None
    if want_grad:
        if grad_out is None:
            g = cnp.PyArray_EMPTY(2, cnp.PyArray_DIMS(z), typ, 0)
        elif grad_out is logits:
            g = z
        else:
            if not _simple_array(grad_out, typ, 2):
                return None
            g = <cnp.ndarray>grad_out
            if (cnp.PyArray_DIMS(g)[0] != n or cnp.PyArray_DIMS(g)[1] != C
                    or not cnp.PyArray_ISWRITEABLE(g) or not _disjoint(g, z)
                    or not _disjoint(g, t)):
                return None
        if not _disjoint(g, t):     # in place over logits that overlap the target
            return None
    # class indices in range, and the "mean" denominator (counted targets)
    cdef int64_t ign = ignore_index
    cdef const int64_t *tp = <const int64_t *>cnp.PyArray_DATA(t)
    cdef Py_ssize_t i, counted = 0
    cdef int64_t v
    for i in range(n):
        v = tp[i]
        if v == ign:
            continue
        if v < 0 or v >= C:
            return None
        counted += 1
    cdef double grad_scale = 1.0
    if red == 0:
        grad_scale = 1.0 / counted if counted else float("nan")
    cdef cnp.npy_intp dims[1]
    dims[0] = n
    cdef cnp.ndarray loss = cnp.PyArray_EMPTY(1, dims, cnp.NPY_DOUBLE, 0)
    cdef double *lp = <double *>cnp.PyArray_DATA(loss)
    cdef const char *zp = cnp.PyArray_BYTES(z)
    cdef char *gp = NULL if g is None else cnp.PyArray_BYTES(g)
    cdef Py_ssize_t st = C * cnp.PyArray_ITEMSIZE(z)
    _ce_index_call(typ, zp, st, n, C, tp, NULL, ign, eps, grad_scale, lp, gp, st, n_threads)
    if red == 2:
        res = loss if typ == cnp.NPY_DOUBLE else loss.astype(np.float32)
    else:
        total = float(loss.sum())
        if red == 1:
            res = total
        else:
            res = total / counted if counted else float("nan")
    return res, g


def cross_entropy_prob_rows(cnp.ndarray logits not None, cnp.ndarray target not None,
                            weight, double label_smoothing, double grad_scale,
                            cnp.ndarray loss not None, grad, int n_threads):
    """Fused softmax cross-entropy against class probabilities (loss and optional gradient).

    See :mod:`fastsoftmax.kernels` for the contract.
    """
    cdef int typ = _float_type(logits, "logits")
    if cnp.PyArray_NDIM(logits) != 2 or cnp.PyArray_NDIM(target) != 2:
        raise ValueError("logits and target must be 2-D")
    if (cnp.PyArray_DIMS(logits)[0] != cnp.PyArray_DIMS(target)[0]
            or cnp.PyArray_DIMS(logits)[1] != cnp.PyArray_DIMS(target)[1]
            or cnp.PyArray_TYPE(target) != typ or not cnp.PyArray_ISNOTSWAPPED(target)):
        raise ValueError(f"target must have the shape and dtype of logits "
                         f"({(<object>logits).shape}, {logits.dtype})")
    _check_unit_stride(logits, 1, "logits")
    _check_unit_stride(target, 1, "target")
    _check_threads(n_threads)
    cdef Py_ssize_t n = cnp.PyArray_DIMS(logits)[0], C = cnp.PyArray_DIMS(logits)[1]
    cdef const double *wp = _weight_ptr(weight, C)
    cdef double *lp = _loss_ptr(loss, n)
    _check_grad(logits, grad)
    if n == 0:
        return
    if C == 0:
        raise ValueError("logits has no classes")
    if (not cnp.PyArray_ISALIGNED(logits) or not cnp.PyArray_ISALIGNED(target)
            or (grad is not None and not cnp.PyArray_ISALIGNED(grad))):
        tmp = None if grad is None else np.empty((n, C), dtype=logits.dtype)
        cross_entropy_prob_rows(np.array(logits, copy=True), np.array(target, copy=True),
                                weight, label_smoothing, grad_scale, loss, tmp, n_threads)
        if grad is not None:
            grad[...] = tmp
        return
    cdef const char *zp = cnp.PyArray_BYTES(logits)
    cdef const char *tq = cnp.PyArray_BYTES(target)
    cdef Py_ssize_t zs = cnp.PyArray_STRIDES(logits)[0], ts = cnp.PyArray_STRIDES(target)[0]
    cdef Py_ssize_t gs = 0
    cdef char *gp = NULL
    if grad is not None:
        gp = cnp.PyArray_BYTES(<cnp.ndarray>grad)
        gs = cnp.PyArray_STRIDES(<cnp.ndarray>grad)[0]
    cdef int rc
    with nogil:
        if typ == cnp.NPY_FLOAT:
            rc = fsm_ce_prob_rows_f32(zp, zs, n, C, tq, ts, wp, label_smoothing,
                                      grad_scale, lp, gp, gs, n_threads)
        else:
            rc = fsm_ce_prob_rows_f64(zp, zs, n, C, tq, ts, wp, label_smoothing,
                                      grad_scale, lp, gp, gs, n_threads)
    _ce_rc(rc)


# ---------------------------------------------------------------- test hooks

cdef void *_buf(cnp.ndarray a, int typ, Py_ssize_t n0, Py_ssize_t n1, str name) except? NULL:
    """Data of a native, aligned, C-contiguous array of type typ and shape
    (n0,) (n1 < 0) or (n0, n1); n0 < 0 accepts any first dimension."""
    cdef int nd = 1 if n1 < 0 else 2
    if (cnp.PyArray_TYPE(a) != typ or not cnp.PyArray_ISNOTSWAPPED(a)
            or cnp.PyArray_NDIM(a) != nd or not cnp.PyArray_IS_C_CONTIGUOUS(a)
            or not cnp.PyArray_ISALIGNED(a)
            or (n0 >= 0 and cnp.PyArray_DIMS(a)[0] != n0)
            or (nd == 2 and cnp.PyArray_DIMS(a)[1] != n1)):
        want = np.dtype(np.float32 if typ == cnp.NPY_FLOAT else
                        np.float64 if typ == cnp.NPY_DOUBLE else np.int64)
        dims = ("n" if n0 < 0 else str(n0)) + ("," if nd == 1 else f", {n1}")
        raise ValueError(f"{name} must be a C-contiguous {want} array of shape ({dims}), "
                         f"got {a.dtype} {(<object>a).shape}")
    return cnp.PyArray_DATA(a)


cdef int _check_ids(cnp.ndarray a, int64_t lo, int64_t hi, bint ascending, str name) except -1:
    """Every entry of the int64 vector a in [lo, hi), nondecreasing if asked."""
    cdef const int64_t *p = <const int64_t *>cnp.PyArray_DATA(a)
    cdef Py_ssize_t i, n = cnp.PyArray_DIMS(a)[0]
    for i in range(n):
        if p[i] < lo or p[i] >= hi or (ascending and i > 0 and p[i] < p[i - 1]):
            raise ValueError(f"{name}[{i}] = {p[i]} is out of range [{lo}, {hi})"
                             + (" or out of order" if ascending else ""))
    return 0


cdef void *_gemm_ptr(object gemm, int typ) except NULL:
    """The function pointer of a SciPy cython_blas ?gemm capsule for typ."""
    cdef const char *name
    if not PyCapsule_CheckExact(gemm):
        raise TypeError("gemm must be the PyCapsule of scipy.linalg.cython_blas' sgemm or dgemm")
    name = PyCapsule_GetName(gemm)
    text = (<bytes>name).decode() if name != NULL else ""
    scalar = "cython_blas_s *" if typ == cnp.NPY_FLOAT else "cython_blas_d *"
    if (not text.startswith("void (char *, char *, int *, int *, int *, ")
            or text.count(scalar) != 5 or text.count("int *") != 6):
        raise TypeError(f"gemm has the signature {text!r}, not that of a Fortran "
                        f"{'s' if typ == cnp.NPY_FLOAT else 'd'}gemm")
    return PyCapsule_GetPointer(gemm, name)


cdef class SampledStep:
    """The chunked step of a sampled softmax loss with gradients, in C
    (fsm_sampled.h lists the steps; fastsoftmax.sampled prepares the
    arguments): ``n_gather`` parts of the gather of the candidates' rows of
    weights, then one item per chunk of rows.  Every thread that calls
    ``work()`` takes items until none is left, without the GIL; ``wait()``
    returns once every item is done (raising a kernel error).  A thread that
    calls ``work()`` late finds nothing to do.  Use an object once.

    ``gemm`` is the PyCapsule of SciPy's ``cython_blas`` ``sgemm`` (float32)
    or ``dgemm`` (float64), which the caller keeps on one thread.  Shapes:
    ``w`` (num_classes, dim) with unit inner stride, ``sampled`` (S,),
    ``w_aug`` (S, dim + 1) with its last column set, ``x`` (B, dim),
    ``x_aug`` (B, dim + 1), ``true_ids`` and ``bias_true`` (B, num_true),
    ``hit_rows``/``hit_cols`` (H,) sorted by row, ``logits`` (B, num_true + S),
    ``ce_target`` int64 zeros (B,) for num_true == 1, else target
    probabilities like ``logits``, ``row_loss`` float64 (B,), ``grad_x``
    (B, dim), ``fold_rows``/``fold_t``/``fold_cols`` (F,) sorted by row,
    ``rest_pos`` (N,) ascending, ``rest_out`` (>= N, dim + 1), ``cand``
    (S, dim + 1), ``shares`` (n_rows - 1, S, dim + 1), ``row_bounds``
    (n_rows + 1,) from 0 to B.  Every index the C code follows is checked
    here; the float arrays share one type.  The object keeps the arrays.
    """
    cdef fsm_sampled_args a
    cdef fsm_sampled_state st
    cdef int typ
    cdef object arrays

    def __init__(self, object gemm, cnp.ndarray w not None, cnp.ndarray sampled not None,
                 cnp.ndarray w_aug not None, cnp.ndarray x not None,
                 cnp.ndarray x_aug not None, cnp.ndarray true_ids not None,
                 cnp.ndarray bias_true not None, cnp.ndarray hit_rows not None,
                 cnp.ndarray hit_cols not None, cnp.ndarray logits not None,
                 cnp.ndarray ce_target not None, double grad_scale,
                 cnp.ndarray row_loss not None, cnp.ndarray grad_x not None,
                 cnp.ndarray fold_rows not None, cnp.ndarray fold_t not None,
                 cnp.ndarray fold_cols not None, cnp.ndarray rest_pos not None,
                 cnp.ndarray rest_out not None, cnp.ndarray cand not None,
                 cnp.ndarray shares not None, cnp.ndarray row_bounds not None,
                 Py_ssize_t n_gather):
        cdef int typ = _float_type(logits, "logits")
        cdef int I64 = cnp.NPY_INT64
        cdef fsm_sampled_args a
        if cnp.PyArray_NDIM(w) != 2 or cnp.PyArray_NDIM(true_ids) != 2:
            raise ValueError("w and true_ids must be 2-D")
        if (cnp.PyArray_TYPE(w) != typ or not cnp.PyArray_ISNOTSWAPPED(w)
                or not cnp.PyArray_ISALIGNED(w) or cnp.PyArray_STRIDES(w)[0] < 0
                or cnp.PyArray_STRIDES(w)[1] != cnp.PyArray_ITEMSIZE(w)):
            raise ValueError("w must be an aligned array of the logits' type with unit inner "
                             "stride and a nonnegative row stride")
        cdef Py_ssize_t C = cnp.PyArray_DIMS(w)[0], D = cnp.PyArray_DIMS(w)[1]
        cdef Py_ssize_t B = cnp.PyArray_DIMS(true_ids)[0], nt = cnp.PyArray_DIMS(true_ids)[1]
        cdef Py_ssize_t S = cnp.PyArray_DIMS(sampled)[0] if cnp.PyArray_NDIM(sampled) == 1 else -1
        cdef Py_ssize_t n_rows = cnp.PyArray_DIMS(row_bounds)[0] - 1
        if D < 1 or nt < 1 or S < 1 or n_rows < 1:
            raise ValueError("dim, num_true, num_sampled and the chunks must be at least 1")
        if max(B, S + nt, D + 1) > 2**31 - 1:
            raise ValueError("dimensions too large for a 32-bit BLAS")
        a.gemm = _gemm_ptr(gemm, typ)
        a.batch, a.num_true, a.num_sampled, a.dim = B, nt, S, D
        a.w = cnp.PyArray_BYTES(w)
        a.ws = cnp.PyArray_STRIDES(w)[0]
        a.sampled = <const int64_t *>_buf(sampled, I64, S, -1, "sampled")
        a.w_aug = _buf(w_aug, typ, S, D + 1, "w_aug")
        a.x = _buf(x, typ, B, D, "x")
        a.x_aug = _buf(x_aug, typ, B, D + 1, "x_aug")
        a.true_ids = <const int64_t *>_buf(true_ids, I64, B, nt, "true_ids")
        a.bias_true = _buf(bias_true, typ, B, nt, "bias_true")
        a.hit_rows = <const int64_t *>_buf(hit_rows, I64, -1, -1, "hit_rows")
        a.n_hits = cnp.PyArray_DIMS(hit_rows)[0]
        a.hit_cols = <const int64_t *>_buf(hit_cols, I64, a.n_hits, -1, "hit_cols")
        a.logits = _buf(logits, typ, B, nt + S, "logits")
        if nt == 1:
            a.ce_index = <const int64_t *>_buf(ce_target, I64, B, -1, "ce_target")
            a.ce_prob = NULL
        else:
            a.ce_index = NULL
            a.ce_prob = _buf(ce_target, typ, B, nt + S, "ce_target")
        a.grad_scale = grad_scale
        a.row_loss = <double *>_buf(row_loss, cnp.NPY_DOUBLE, B, -1, "row_loss")
        a.grad_x = _buf(grad_x, typ, B, D, "grad_x")
        a.fold_rows = <const int64_t *>_buf(fold_rows, I64, -1, -1, "fold_rows")
        a.n_fold = cnp.PyArray_DIMS(fold_rows)[0]
        a.fold_t = <const int64_t *>_buf(fold_t, I64, a.n_fold, -1, "fold_t")
        a.fold_cols = <const int64_t *>_buf(fold_cols, I64, a.n_fold, -1, "fold_cols")
        a.rest_pos = <const int64_t *>_buf(rest_pos, I64, -1, -1, "rest_pos")
        a.n_rest = cnp.PyArray_DIMS(rest_pos)[0]
        a.rest_out = _buf(rest_out, typ, -1, D + 1, "rest_out")
        if cnp.PyArray_DIMS(rest_out)[0] < a.n_rest:
            raise ValueError(f"rest_out has {cnp.PyArray_DIMS(rest_out)[0]} rows, fewer than the "
                             f"{a.n_rest} of rest_pos")
        a.cand = _buf(cand, typ, S, D + 1, "cand")
        if (cnp.PyArray_NDIM(shares) != 3 or cnp.PyArray_DIMS(shares)[0] != n_rows - 1
                or cnp.PyArray_DIMS(shares)[1] != S or cnp.PyArray_DIMS(shares)[2] != D + 1
                or cnp.PyArray_TYPE(shares) != typ or not cnp.PyArray_ISNOTSWAPPED(shares)
                or not cnp.PyArray_IS_C_CONTIGUOUS(shares) or not cnp.PyArray_ISALIGNED(shares)):
            raise ValueError(f"shares must be a C-contiguous array of the logits' type of "
                             f"shape ({n_rows - 1}, {S}, {D + 1})")
        a.shares = cnp.PyArray_DATA(shares)
        a.row_bounds = <const int64_t *>_buf(row_bounds, I64, n_rows + 1, -1, "row_bounds")
        a.n_rows = n_rows
        # every index the C code follows, checked here
        _check_ids(sampled, 0, C, False, "sampled")
        _check_ids(true_ids.reshape(-1), 0, C, False, "true_ids")
        _check_ids(hit_rows, 0, B, True, "hit_rows")
        _check_ids(hit_cols, 0, S, False, "hit_cols")
        _check_ids(fold_rows, 0, B, True, "fold_rows")
        _check_ids(fold_t, 0, nt, False, "fold_t")
        _check_ids(fold_cols, nt, nt + S, False, "fold_cols")
        _check_ids(rest_pos, 0, B * nt, True, "rest_pos")
        _check_ids(row_bounds, 0, B + 1, True, "row_bounds")
        if a.row_bounds[0] != 0 or a.row_bounds[n_rows] != B:
            raise ValueError(f"row_bounds must run from 0 to {B}")
        if n_gather < 1 or n_gather > S:
            raise ValueError(f"n_gather must be in [1, {S}], got {n_gather}")
        self.a = a
        self.st.n_gather = n_gather
        self.st.n_items = n_gather + n_rows
        self.st.next = self.st.gathered = self.st.done = 0
        self.st.err = 0
        self.typ = typ
        self.arrays = (gemm, w, sampled, w_aug, x, x_aug, true_ids, bias_true, hit_rows, hit_cols,
                       logits, ce_target, row_loss, grad_x, fold_rows, fold_t, fold_cols,
                       rest_pos, rest_out, cand, shares, row_bounds)

    def work(self):
        """Take and run items until none is left (without the GIL)."""
        with nogil:
            if self.typ == cnp.NPY_FLOAT:
                fsm_sampled_work_f32(&self.a, &self.st)
            else:
                fsm_sampled_work_f64(&self.a, &self.st)

    def wait(self):
        """Return once every item is done; raise the error of a chunk."""
        with nogil:
            fsm_sampled_wait(&self.st)
        _ce_rc(self.st.err)


def _exp(x, bint nonpositive=False):
    """The kernels' vectorised exp applied to a float32/float64 array (tests only).

    ``nonpositive=True`` uses the branch-free exp the kernels call on
    ``x - max``, valid only for arguments <= 0, -inf or NaN.
    """
    cdef cnp.ndarray a = np.ascontiguousarray(x)
    cdef int typ = _float_type(a, "x")
    cdef cnp.ndarray res = np.empty_like(a)
    cdef Py_ssize_t n = a.size
    if nonpositive and np.any(a > 0):
        raise ValueError("nonpositive=True needs arguments <= 0")
    if typ == cnp.NPY_FLOAT:
        fsm_exp_f32(<const float *>cnp.PyArray_DATA(a), <float *>cnp.PyArray_DATA(res), n, nonpositive)
    else:
        fsm_exp_f64(<const double *>cnp.PyArray_DATA(a), <double *>cnp.PyArray_DATA(res), n, nonpositive)
    return res


def _isa():
    """Name of the instruction set the kernels use now."""
    return _ISA_NAMES[fsm_isa_level]


def _isa_available():
    """Instruction sets this CPU can run, from the baseline up."""
    return list(_ISA_NAMES[:fsm_isa_max + 1])


def _set_isa(name):
    """Use the kernels compiled for ``name`` (tests and benchmarks); returns the previous."""
    prev = _ISA_NAMES[fsm_isa_level]
    if name not in _ISA_NAMES[:fsm_isa_max + 1]:
        raise ValueError(f"instruction set {name!r} not available here; "
                         f"choose from {_isa_available()}")
    fsm_set_isa(_ISA_NAMES.index(name))
    return prev


_CONFIG_KEYS = ("long_row_bytes", "chunk", "par_min_elems", "nt_min_bytes",
                "scratch_min_bytes", "col_block", "col_group", "sm_pipe_bytes")


def _get_config():
    """The tuning knobs of the C kernels, as a dict (tests and benchmarks)."""
    return {"long_row_bytes": fsm_cfg.long_row_bytes, "chunk": fsm_cfg.chunk,
            "par_min_elems": fsm_cfg.par_min_elems, "nt_min_bytes": fsm_cfg.nt_min_bytes,
            "scratch_min_bytes": fsm_cfg.scratch_min_bytes,
            "col_block": fsm_cfg.col_block, "col_group": fsm_cfg.col_group,
            "sm_pipe_bytes": fsm_cfg.sm_pipe_bytes}


def _set_config(**knobs):
    """Change tuning knobs (see fsm_kernels.h); returns the previous config."""
    prev = _get_config()
    for key, value in knobs.items():
        if key not in _CONFIG_KEYS:
            raise ValueError(f"unknown knob {key!r}")
        value = int(value)
        if key in ("chunk", "col_block", "col_group") and value < 1:
            raise ValueError(f"{key} must be >= 1")
        if key == "chunk" and value % 64:
            raise ValueError("chunk must be a multiple of 64")
    for key, value in knobs.items():
        value = int(value)
        if key == "long_row_bytes": fsm_cfg.long_row_bytes = value
        elif key == "chunk": fsm_cfg.chunk = value
        elif key == "par_min_elems": fsm_cfg.par_min_elems = value
        elif key == "nt_min_bytes": fsm_cfg.nt_min_bytes = value
        elif key == "scratch_min_bytes": fsm_cfg.scratch_min_bytes = value
        elif key == "col_block": fsm_cfg.col_block = value
        elif key == "col_group": fsm_cfg.col_group = value
        elif key == "sm_pipe_bytes": fsm_cfg.sm_pipe_bytes = value
    return prev
