"""Numba softmax / log_softmax kernels (rows and columns layouts).

See :mod:`fastsoftmax.kernels` for the contract.  Numerics, identical for
every thread count:

* **Rows** of ``k <= LONG_ROW`` elements: pass 1 finds the row maximum
  ``m``; pass 2 computes ``exp(x - m)`` (storing it for softmax) and its sum
  while the row is in cache; pass 3 scales by ``1/sum`` (softmax) or writes
  ``(x - m) - log(sum)`` (log_softmax, ``m`` replaced by 0 when not finite).
* **Long rows** (``k > LONG_ROW``) are cut into fixed chunks of ``CHUNK``
  elements (a partition that does not depend on the thread count).  Each
  chunk yields a ``(max, sum of exp(x - max))`` partial from one read; the
  partials are combined in chunk order (a chunk without a finite maximum is
  never rescaled, so an all ``-inf`` chunk cannot make a NaN); a final pass
  writes the result.  Chunks run in parallel when there are few rows.
* **Columns** ``(outer, k, inner)``: blocks of ``COL_BLOCK`` contiguous inner
  columns keep a running maximum and sum (an "online" softmax needing one
  ``exp`` per element: ``e = exp(-|v - m|)``), then a second pass writes the
  result.  Columns holding non-finite values are redone by an exact
  three-pass loop, so special values behave as in SciPy.

Small problems run a serial kernel (no parallel-region start-up); larger
ones a ``prange`` kernel; in-place calls (``out`` is ``x``) run kernels that
take a single array, so that LLVM sees the aliasing and still vectorises.
"""
import numpy as np
from numba import njit, prange, types

from ._exp import fexp, fmax, like
from ._runtime import LazyKernel, arr, check_layer, parallel_lock, use_threads

__all__ = ["softmax_rows", "softmax_cols"]

#: rows longer than this use the chunked (long-row) algorithm
LONG_ROW = 1 << 16
#: chunk length of the long-row algorithm (elements)
CHUNK = 1 << 14
#: inner columns per block of the column kernel
COL_BLOCK = 512
#: below this many elements a call runs serially
SERIAL_WORK = 1 << 15

# Floating-point flags.  Never 'nnan'/'ninf' (special values are part of
# the contract).  Only the sum loops get 'reassoc' (LLVM needs it to
# vectorise a sum): they are separate functions, so their flags stay on their
# own instructions after LLVM inlines them (a Numba-level inline would give
# them the caller's flags), and nothing else is reassociated: e.g.
# ``(x - m) - lse`` must not become ``x - (m + lse)``.  The exp functions
# likewise keep their own strict flags.
_FM = {"contract"}
_FM_SUM = {"reassoc", "nsz", "contract"}
_INLINE = dict(inline="always", fastmath=_FM)


# ------------------------------------------------------------ row pieces
@njit(**_INLINE)
def _max(xr, start, stop):
    m = xr[start]
    for j in range(start + 1, stop):
        m = fmax(m, xr[j])
    return m


@njit(fastmath=_FM_SUM, cache=True)
def _sum_exp(xr, shift, start, stop):
    s = like(0.0, shift)
    for j in range(start, stop):
        s += fexp(xr[j] - shift)
    return s


@njit(fastmath=_FM_SUM, cache=True)
def _exp_store_sum(xr, outr, shift, start, stop):
    s = like(0.0, shift)
    for j in range(start, stop):
        e = fexp(xr[j] - shift)
        outr[j] = e
        s += e
    return s


@njit(**_INLINE)
def _scale(outr, factor, start, stop):
    for j in range(start, stop):
        outr[j] = outr[j] * factor


@njit(**_INLINE)
def _write(xr, outr, shift, scale, log, start, stop):
    if log:
        for j in range(start, stop):
            outr[j] = (xr[j] - shift) - scale
    else:
        for j in range(start, stop):
            outr[j] = fexp(xr[j] - shift) * scale


@njit(**_INLINE)
def _finite(v):
    return v - v == 0


@njit(**_INLINE)
def _row(xr, outr, log):
    """Softmax of one row of at most LONG_ROW elements."""
    k = xr.shape[0]
    m = _max(xr, 0, k)
    if log:
        if not _finite(m):
            m = like(0.0, m)
        s = _sum_exp(xr, m, 0, k)
        _write(xr, outr, m, np.log(s), True, 0, k)
    else:
        s = _exp_store_sum(xr, outr, m, 0, k)
        _scale(outr, like(1.0, m) / s, 0, k)


# -------------------------------------------------------- long-row pieces
@njit(**_INLINE)
def _chunk_partial(xr, c, mpart, spart):
    """(max, sum of exp(x - shift)) of chunk ``c``; shift = max, or 0 if not finite."""
    start = c * CHUNK
    stop = min(start + CHUNK, xr.shape[0])
    m = _max(xr, start, stop)
    shift = m if _finite(m) else like(0.0, m)
    mpart[c] = m
    spart[c] = _sum_exp(xr, shift, start, stop)


@njit(**_INLINE)
def _combine(mpart, spart, log):
    """(shift, scale) of a long row from its chunk partials, in chunk order."""
    nch = mpart.shape[0]
    m = mpart[0]
    for c in range(1, nch):
        m = fmax(m, mpart[c])
    ref = m if (_finite(m) or not log) else like(0.0, m)
    total = 0.0
    for c in range(nch):
        mc = mpart[c]
        if mc == -np.inf:
            total += spart[c]          # 0, or NaN when the chunk holds a NaN
        else:
            shift_c = mc if _finite(mc) else like(0.0, mc)
            total += spart[c] * np.exp(np.float64(shift_c) - np.float64(ref))
    if log:
        return ref, like(np.log(total), m)
    if not _finite(m):
        return m, like(np.nan, m)      # a +inf or all -inf row: NaN (SciPy)
    return m, like(1.0 / total, m)


@njit(**_INLINE)
def _long_row(xr, outr, log, mpart, spart):
    nch = mpart.shape[0]
    for c in range(nch):
        _chunk_partial(xr, c, mpart, spart)
    shift, scale = _combine(mpart, spart, log)
    _write(xr, outr, shift, scale, log, 0, xr.shape[0])


# ------------------------------------------------------------- kernels
def _rows_serial(x, out, log):
    for i in range(x.shape[0]):
        _row(x[i], out[i], log)


def _rows_parallel(x, out, log):
    for i in prange(x.shape[0]):
        _row(x[i], out[i], log)


def _rows_serial_inplace(buf, log):
    for i in range(buf.shape[0]):
        _row(buf[i], buf[i], log)


def _rows_parallel_inplace(buf, log):
    for i in prange(buf.shape[0]):
        _row(buf[i], buf[i], log)


def _long_rows_parallel(x, out, log):
    """Many long rows: one row per task, chunked serially within the row."""
    n, k = x.shape
    nch = (k + CHUNK - 1) // CHUNK
    for i in prange(n):
        mpart = np.empty(nch, dtype=x.dtype)
        spart = np.empty(nch, dtype=np.float64)
        _long_row(x[i], out[i], log, mpart, spart)


def _long_rows_parallel_inplace(buf, log):
    n, k = buf.shape
    nch = (k + CHUNK - 1) // CHUNK
    for i in prange(n):
        mpart = np.empty(nch, dtype=buf.dtype)
        spart = np.empty(nch, dtype=np.float64)
        _long_row(buf[i], buf[i], log, mpart, spart)


def _long_partials(x, mpart, spart):
    """Few long rows: every (row, chunk) partial in parallel."""
    nch = mpart.shape[1]
    for t in prange(x.shape[0] * nch):
        i = t // nch
        _chunk_partial(x[i], t - i * nch, mpart[i], spart[i])


def _long_finish(x, out, log, mpart, spart):
    n, k = x.shape
    nch = mpart.shape[1]
    shift = np.empty(n, dtype=x.dtype)
    scale = np.empty(n, dtype=x.dtype)
    for i in range(n):
        shift[i], scale[i] = _combine(mpart[i], spart[i], log)
    for t in prange(n * nch):
        i = t // nch
        start = (t - i * nch) * CHUNK
        _write(x[i], out[i], shift[i], scale[i], log, start, min(start + CHUNK, k))


def _long_finish_inplace(buf, log, mpart, spart):
    n, k = buf.shape
    nch = mpart.shape[1]
    shift = np.empty(n, dtype=buf.dtype)
    scale = np.empty(n, dtype=buf.dtype)
    for i in range(n):
        shift[i], scale[i] = _combine(mpart[i], spart[i], log)
    for t in prange(n * nch):
        i = t // nch
        start = (t - i * nch) * CHUNK
        _write(buf[i], buf[i], shift[i], scale[i], log, start, min(start + CHUNK, k))


# ------------------------------------------------------------- columns
@njit(**_INLINE)
def _col_exact(xo, col, log):
    """Exact SciPy semantics for one (strided) column: (shift, scale)."""
    k = xo.shape[0]
    m = xo[0, col]
    for r in range(1, k):
        m = fmax(m, xo[r, col])
    shift = m if (_finite(m) or not log) else like(0.0, m)
    total = 0.0
    for r in range(k):
        total += fexp(xo[r, col] - shift)
    if log:
        return shift, like(np.log(total), m)
    return shift, like(1.0 / total, m)


@njit(**_INLINE)
def _col_block(xo, oo, log, c0, w, m, s, shift, scale):
    """Softmax over axis 0 of the columns c0:c0+w of the 2-D (k, inner) xo."""
    k = xo.shape[0]
    x0 = xo[0]
    for c in range(w):
        m[c] = x0[c0 + c]
        s[c] = 1.0
    for r in range(1, k):
        xr = xo[r]
        for c in range(w):
            v = xr[c0 + c]
            mc = m[c]
            sc = s[c]
            e = fexp(-abs(v - mc))
            s[c] = sc * e + 1.0 if v > mc else sc + e
            m[c] = fmax(mc, v)
    for c in range(w):
        mc = m[c]
        sc = s[c]
        if _finite(mc) and _finite(sc):
            shift[c] = mc
            scale[c] = like(np.log(sc), mc) if log else like(1.0 / sc, mc)
        else:  # NaN, +inf, or several -inf: redo this column exactly
            shift[c], scale[c] = _col_exact(xo, c0 + c, log)
    for r in range(k):
        xr = xo[r]
        orow = oo[r]
        if log:
            for c in range(w):
                orow[c0 + c] = (xr[c0 + c] - shift[c]) - scale[c]
        else:
            for c in range(w):
                orow[c0 + c] = fexp(xr[c0 + c] - shift[c]) * scale[c]


@njit(**_INLINE)
def _col_tasks(x, out, log, g, ngroups):
    outer, k, inner = x.shape
    nb = (inner + COL_BLOCK - 1) // COL_BLOCK
    ntasks = outer * nb
    lo = g * ntasks // ngroups
    hi = (g + 1) * ntasks // ngroups
    bw = min(COL_BLOCK, inner)
    m = np.empty(bw, dtype=x.dtype)
    s = np.empty(bw, dtype=np.float64)
    shift = np.empty(bw, dtype=x.dtype)
    scale = np.empty(bw, dtype=x.dtype)
    for t in range(lo, hi):
        o = t // nb
        c0 = (t - o * nb) * COL_BLOCK
        _col_block(x[o], out[o], log, c0, min(COL_BLOCK, inner - c0), m, s, shift, scale)


def _cols_kernel(x, out, log, ngroups):
    for g in prange(ngroups):
        _col_tasks(x, out, log, g, ngroups)


def _cols_kernel_inplace(buf, log, ngroups):
    for g in prange(ngroups):
        _col_tasks(buf, buf, log, g, ngroups)


# ------------------------------------------------------ compiled variants
def _sig_rows(ft):
    return [types.void(arr(ft, 2, readonly=True), arr(ft, 2), types.boolean)]


def _sig_rows_ip(ft):
    return [types.void(arr(ft, 2), types.boolean)]


def _sig_partials(ft):
    return [types.void(arr(ft, 2, readonly=True), arr(ft, 2, "C"), arr(types.float64, 2, "C"))]


def _sig_finish(ft):
    return [types.void(arr(ft, 2, readonly=True), arr(ft, 2), types.boolean,
                       arr(ft, 2, "C"), arr(types.float64, 2, "C"))]


def _sig_finish_ip(ft):
    return [types.void(arr(ft, 2), types.boolean, arr(ft, 2, "C"), arr(types.float64, 2, "C"))]


def _sig_cols(ft):
    return [types.void(arr(ft, 3, readonly=True), arr(ft, 3), types.boolean, types.intp)]


def _sig_cols_ip(ft):
    return [types.void(arr(ft, 3), types.boolean, types.intp)]


_P = dict(parallel=True, fastmath=_FM)
_S = dict(fastmath=_FM)
K_ROWS = LazyKernel(_rows_serial, _sig_rows, **_S)
K_ROWS_PAR = LazyKernel(_rows_parallel, _sig_rows, **_P)
K_ROWS_IP = LazyKernel(_rows_serial_inplace, _sig_rows_ip, **_S)
K_ROWS_IP_PAR = LazyKernel(_rows_parallel_inplace, _sig_rows_ip, **_P)
K_LONG = LazyKernel(_long_rows_parallel, _sig_rows, **_P)
K_LONG_IP = LazyKernel(_long_rows_parallel_inplace, _sig_rows_ip, **_P)
K_PARTIALS = LazyKernel(_long_partials, _sig_partials, **_P)
K_FINISH = LazyKernel(_long_finish, _sig_finish, **_P)
K_FINISH_IP = LazyKernel(_long_finish_inplace, _sig_finish_ip, **_P)
K_COLS = LazyKernel(_cols_kernel, _sig_cols, **_P)
K_COLS_IP = LazyKernel(_cols_kernel_inplace, _sig_cols_ip, **_P)

ALL_KERNELS = (K_ROWS, K_ROWS_PAR, K_ROWS_IP, K_ROWS_IP_PAR, K_LONG, K_LONG_IP,
               K_PARTIALS, K_FINISH, K_FINISH_IP, K_COLS, K_COLS_IP)


# ------------------------------------------------------------- wrappers
def _same(a, b):
    return (a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
            and a.strides == b.strides)


def _launch(kernel, *args):
    with parallel_lock():
        kernel(*args)
    check_layer()


def softmax_rows(x, out, log, n_threads):
    """Softmax (or log-softmax) of each row of ``x`` into ``out`` (rows layout)."""
    n, k = x.shape
    char = x.dtype.char
    inplace = _same(x, out)
    if k > LONG_ROW:
        use_threads(n_threads)
        nch = (k + CHUNK - 1) // CHUNK
        if n >= 2 * n_threads:
            if inplace:
                _launch(K_LONG_IP[char], out, log)
            else:
                _launch(K_LONG[char], x, out, log)
            return
        mpart = np.empty((n, nch), dtype=x.dtype)
        spart = np.empty((n, nch), dtype=np.float64)
        _launch(K_PARTIALS[char], x, mpart, spart)
        if inplace:
            _launch(K_FINISH_IP[char], out, log, mpart, spart)
        else:
            _launch(K_FINISH[char], x, out, log, mpart, spart)
        return
    if n_threads == 1 or n * k <= SERIAL_WORK or n == 1:
        if inplace:
            K_ROWS_IP[char](out, log)
        else:
            K_ROWS[char](x, out, log)
        return
    use_threads(n_threads)
    if inplace:
        _launch(K_ROWS_IP_PAR[char], out, log)
    else:
        _launch(K_ROWS_PAR[char], x, out, log)


def softmax_cols(x, out, log, n_threads):
    """Softmax (or log-softmax) over axis 1 of 3-D ``(outer, k, inner)`` arrays."""
    outer, k, inner = x.shape
    char = x.dtype.char
    nb = (inner + COL_BLOCK - 1) // COL_BLOCK
    ntasks = outer * nb
    if n_threads == 1 or x.size <= SERIAL_WORK:
        ngroups = 1
    else:
        ngroups = min(ntasks, 8 * use_threads(n_threads))
    if _same(x, out):
        _launch(K_COLS_IP[char], out, log, ngroups)
    else:
        _launch(K_COLS[char], x, out, log, ngroups)
