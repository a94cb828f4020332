"""Numba fused softmax cross-entropy kernels (loss and gradient in one kernel).

See :mod:`fastsoftmax.kernels` ("Cross-entropy family") for the contract and
formulas.  Per row of logits ``z``:

1. ``m = max(z)`` (the row comes from memory once, here);
2. ``e = exp(z - m)`` into a scratch row and ``s = sum(e)``, with the next
   row prefetched (as softmax's rows: ``softmax._row``), and
   ``lse = m + log(s)`` in float64 (a row without a finite max: ``m``
   replaced by 0, nothing stored);
3. the loss in float64 (the label-smoothing sum ``sum_c w[c]*(lse - z[c])``
   in a float64 pass, only when ``label_smoothing > 0``, as torch does);
4. the gradient, written once: ``grad[j] = p[j]*gs*A - gs*B*w[j]`` with
   ``p = e/s`` (no second exponential), then the target's entry corrected.  ``z[y]`` is read
   before the gradient pass, so ``grad`` may be ``logits`` itself (in-place
   kernels take one buffer, which LLVM then vectorises).

Probability targets read the target row twice (a float64 pass for the loss
and ``sum w*t``, then the gradient pass, from cache).  A row whose target is
``ignore_index`` gets loss 0 and a zero gradient whatever its logits hold.
Rows are processed in parallel (``prange`` over groups of rows); each row is computed the same
way whatever the thread count, so results do not depend on it.
"""
import numpy as np
from numba import njit, prange, types

from ._exp import fexp, like
from ._runtime import LazyKernel, arr, check_layer, flat, parallel_lock, use_threads, view
from .softmax import (_AFFINE, _AFFINE_W, _FM, _FM_SUM, _INLINE, _exp_prefetch, _finite, _groups, _map,
                      _max_lanes, _nt_out, _redo64, _stream_fence, _sum64, _sum_exp_np)

__all__ = ["cross_entropy_index_rows", "cross_entropy_prob_rows"]

#: below this many logits a call runs serially
SERIAL_WORK = 1 << 15


# ------------------------------------------------------------ row pieces
@njit(fastmath=_FM_SUM, cache=True)
def _smooth_sum(zr, w64, lse, has_w):
    """``sum_c w[c] * (lse - z[c])`` in float64."""
    acc = 0.0
    if has_w:
        for j in range(zr.shape[0]):
            acc += w64[j] * (lse - np.float64(zr[j]))
    else:
        for j in range(zr.shape[0]):
            acc += lse - np.float64(zr[j])
    return acc


@njit(**_INLINE)
def _zero(gr):
    for j in range(gr.shape[0]):
        gr[j] = 0


@njit(**_INLINE)
def _lse_stored(zr, e, nf, nb):
    """(lse in float64, shift, scale, stored): ``p[j] = exp(z[j] - shift) *
    scale``.  A row with a finite max has ``e = exp(z - max)`` stored
    (``stored``: the gradient pass reads them instead of computing them
    again) and summed in one pass with the next row (``nf[nb:]``)
    prefetched, as softmax's rows (``softmax._row``; float32: a sum below
    ``_REDO_BELOW`` redone in float64).  A +inf, NaN or all -inf row sums
    ``exp(z)`` and takes ``p = exp(z - lse)``, as the reference does."""
    k = zr.shape[0]
    m = _max_lanes(zr, k)
    if not _finite(m):
        lse = np.log(_sum_exp_np(zr, like(0.0, m), 0, k, False, 0.0))
        return lse, like(lse, m), like(1.0, m), False
    s = _exp_prefetch(zr, e, m, nf, nb)
    if _redo64(s, e):
        s = _sum64(e, 0, k)
    return np.float64(m) + np.log(s), m, like(1.0 / s, m), True


@njit(**_INLINE)
def _grad_stored(e, gr, factor, wg, coef, has_w, nt):
    """``gr[j] = e[j] * factor - coef * w[j]`` (``e``: the stored
    exponentials); ``nt``: with streaming stores, as softmax's output (the
    caller fences).  (4096, 32000) float32, 2 threads, time / copy: 1.87 (an
    exponential per element in each of two passes) -> 1.54 (stored
    exponentials) -> 0.94 (streaming stores)."""
    if has_w:
        _map(e, wg, e, gr, factor, coef, _AFFINE_W, nt)
    else:
        _map(e, e, e, gr, factor, coef, _AFFINE, nt)


@njit(**_INLINE)
def _grad_loop(zr, gr, shift, factor, wg, coef, has_w):
    """``gr[j] = exp(z[j] - shift) * factor - coef * w[j]`` (rows without a
    finite max, whose exponentials are not stored)."""
    k = zr.shape[0]
    if has_w:
        for j in range(k):
            gr[j] = fexp(zr[j] - shift) * factor - coef * wg[j]
    else:
        for j in range(k):
            gr[j] = fexp(zr[j] - shift) * factor - coef


@njit(**_INLINE)
def _index_row(zr, gr, want_grad, y, w64, wg, has_w, w_total, ignore_index, eps, gs, e, nf, nb, nt):
    """Loss of one row (returned, float64); gradient into ``gr`` if wanted
    (``e``: a scratch row; ``nf[nb:]``: the next row, prefetched)."""
    k = zr.shape[0]
    if y == ignore_index:
        if want_grad:
            _zero(gr)
        return 0.0
    lse, shift, scale, stored = _lse_stored(zr, e, nf, nb)
    zy = np.float64(zr[y])                 # read before gr (maybe zr) is written
    wy = w64[y] if has_w else 1.0
    loss = (1.0 - eps) * wy * (lse - zy)
    if eps > 0:
        loss += eps / k * _smooth_sum(zr, w64, lse, has_w)
    if want_grad:
        a = (1.0 - eps) * wy + eps / k * w_total
        b = eps / k
        factor = like(np.float64(scale) * gs * a, scale)
        if stored:
            _grad_stored(e, gr, factor, wg, like(gs * b, scale), has_w, nt)
        else:
            _grad_loop(zr, gr, shift, factor, wg, like(gs * b, scale), has_w)
        p_y = np.exp(zy - lse)
        gr[y] = like(gs * (p_y * a - b * wy - (1.0 - eps) * wy), scale)
    return loss


@njit(fastmath=_FM_SUM, cache=True)
def _prob_sums(zr, tr, w64, has_w, lse, eps):
    """(sum_c w t, sum_c w t (lse - z)) in float64, ``t`` smoothed."""
    k = zr.shape[0]
    keep = 1.0 - eps
    add = eps / k
    total = 0.0
    loss = 0.0
    if has_w:
        for j in range(k):
            wt = w64[j] * (np.float64(tr[j]) * keep + add)
            total += wt
            loss += wt * (lse - np.float64(zr[j]))
    else:
        for j in range(k):
            wt = np.float64(tr[j]) * keep + add
            total += wt
            loss += wt * (lse - np.float64(zr[j]))
    return total, loss


@njit(**_INLINE)
def _prob_row(zr, tr, gr, want_grad, w64, wg, has_w, eps, gs, e, nf, nb):
    k = zr.shape[0]
    lse, shift, scale, stored = _lse_stored(zr, e, nf, nb)
    total, loss = _prob_sums(zr, tr, w64, has_w, lse, eps)
    if want_grad:
        factor = like(np.float64(scale) * gs * total, scale)
        keep = like(1.0 - eps, scale)
        add = like(eps / k, scale)
        g = like(gs, scale)
        if stored:
            if has_w:
                for j in range(k):
                    gr[j] = e[j] * factor - g * wg[j] * (tr[j] * keep + add)
            else:
                for j in range(k):
                    gr[j] = e[j] * factor - g * (tr[j] * keep + add)
        elif has_w:
            for j in range(k):
                gr[j] = fexp(zr[j] - shift) * factor - g * wg[j] * (tr[j] * keep + add)
        else:
            for j in range(k):
                gr[j] = fexp(zr[j] - shift) * factor - g * (tr[j] * keep + add)
    return loss


# ------------------------------------------------------------- kernels
# zf/zo/zs: logits flat buffer, offset, row stride (elements); gf/go/gs_:
# the same for grad (ignored unless want_grad); n rows of k classes.  Rows
# go in groups (``softmax._groups``), each with its scratch row.
@njit(**_INLINE)
def _index_range(zf, zo, zs, gf, go, gs_, r0, r1, n, k, target, w64, wg, has_w, w_total,
                 ignore_index, eps, grad_scale, loss, want_grad, nt):
    e = np.empty(k, dtype=zf.dtype)
    for i in range(r0, r1):
        nxt = zo + (i + 1) * zs if i + 1 < n else zo + i * zs
        loss[i] = _index_row(view(zf, zo + i * zs, k), view(gf, go + i * gs_, k), want_grad,
                             target[i], w64, wg, has_w, w_total, ignore_index, eps, grad_scale,
                             e, zf, nxt, nt)
    if nt:
        _stream_fence()


@njit(**_INLINE)
def _prob_range(zf, zo, zs, tf, to, ts, gf, go, gs_, r0, r1, n, k, w64, wg, has_w, eps,
                grad_scale, loss, want_grad):
    e = np.empty(k, dtype=zf.dtype)
    for i in range(r0, r1):
        nxt = zo + (i + 1) * zs if i + 1 < n else zo + i * zs
        loss[i] = _prob_row(view(zf, zo + i * zs, k), view(tf, to + i * ts, k),
                            view(gf, go + i * gs_, k), want_grad, w64, wg, has_w, eps, grad_scale,
                            e, zf, nxt)


def _index_body(zf, zo, zs, gf, go, gs_, n, k, target, w64, wg, has_w, w_total,
                ignore_index, eps, grad_scale, loss, want_grad, nt):
    groups = _groups(n)
    for g in prange(groups):
        _index_range(zf, zo, zs, gf, go, gs_, g * n // groups, (g + 1) * n // groups, n, k, target,
                     w64, wg, has_w, w_total, ignore_index, eps, grad_scale, loss, want_grad, nt)


def _index_serial(zf, zo, zs, gf, go, gs_, n, k, target, w64, wg, has_w, w_total,
                  ignore_index, eps, grad_scale, loss, want_grad, nt):
    _index_range(zf, zo, zs, gf, go, gs_, 0, n, n, k, target, w64, wg, has_w, w_total,
                 ignore_index, eps, grad_scale, loss, want_grad, nt)


def _index_inplace(bf, bo, bs, n, k, target, w64, wg, has_w, w_total,
                   ignore_index, eps, grad_scale, loss, nt):
    groups = _groups(n)
    for g in prange(groups):
        _index_range(bf, bo, bs, bf, bo, bs, g * n // groups, (g + 1) * n // groups, n, k, target,
                     w64, wg, has_w, w_total, ignore_index, eps, grad_scale, loss, True, nt)


def _index_inplace_serial(bf, bo, bs, n, k, target, w64, wg, has_w, w_total,
                          ignore_index, eps, grad_scale, loss, nt):
    _index_range(bf, bo, bs, bf, bo, bs, 0, n, n, k, target, w64, wg, has_w, w_total,
                 ignore_index, eps, grad_scale, loss, True, nt)


def _prob_body(zf, zo, zs, tf, to, ts, gf, go, gs_, n, k, w64, wg, has_w, eps,
               grad_scale, loss, want_grad):
    groups = _groups(n)
    for g in prange(groups):
        _prob_range(zf, zo, zs, tf, to, ts, gf, go, gs_, g * n // groups, (g + 1) * n // groups, n, k,
                    w64, wg, has_w, eps, grad_scale, loss, want_grad)


def _prob_serial(zf, zo, zs, tf, to, ts, gf, go, gs_, n, k, w64, wg, has_w, eps,
                 grad_scale, loss, want_grad):
    _prob_range(zf, zo, zs, tf, to, ts, gf, go, gs_, 0, n, n, k, w64, wg, has_w, eps, grad_scale,
                loss, want_grad)


def _prob_inplace(bf, bo, bs, tf, to, ts, n, k, w64, wg, has_w, eps, grad_scale, loss):
    groups = _groups(n)
    for g in prange(groups):
        _prob_range(bf, bo, bs, tf, to, ts, bf, bo, bs, g * n // groups, (g + 1) * n // groups, n, k,
                    w64, wg, has_w, eps, grad_scale, loss, True)


def _prob_inplace_serial(bf, bo, bs, tf, to, ts, n, k, w64, wg, has_w, eps, grad_scale, loss):
    _prob_range(bf, bo, bs, tf, to, ts, bf, bo, bs, 0, n, n, k, w64, wg, has_w, eps, grad_scale,
                loss, True)


_I = types.intp
_B = types.boolean
_F = types.float64
_I64 = types.int64


def _ro(ft):
    return arr(ft, 1, "C", readonly=True)


def _rw(ft):
    return arr(ft, 1, "C")


def _sig_index(ft):
    return [types.void(_ro(ft), _I, _I, _rw(ft), _I, _I, _I, _I, _ro(_I64), _ro(_F), _ro(ft),
                       _B, _F, _I64, _F, _F, _rw(_F), _B, _B)]


def _sig_index_ip(ft):
    return [types.void(_rw(ft), _I, _I, _I, _I, _ro(_I64), _ro(_F), _ro(ft),
                       _B, _F, _I64, _F, _F, _rw(_F), _B)]


def _sig_prob(ft):
    return [types.void(_ro(ft), _I, _I, _ro(ft), _I, _I, _rw(ft), _I, _I, _I, _I,
                       _ro(_F), _ro(ft), _B, _F, _F, _rw(_F), _B)]


def _sig_prob_ip(ft):
    return [types.void(_rw(ft), _I, _I, _ro(ft), _I, _I, _I, _I,
                       _ro(_F), _ro(ft), _B, _F, _F, _rw(_F))]


_P = dict(parallel=True, fastmath=_FM)
_S = dict(fastmath=_FM)
K_INDEX = LazyKernel(_index_body, _sig_index, **_P)
K_INDEX_S = LazyKernel(_index_serial, _sig_index, **_S)
K_INDEX_IP = LazyKernel(_index_inplace, _sig_index_ip, **_P)
K_INDEX_IP_S = LazyKernel(_index_inplace_serial, _sig_index_ip, **_S)
K_PROB = LazyKernel(_prob_body, _sig_prob, **_P)
K_PROB_S = LazyKernel(_prob_serial, _sig_prob, **_S)
K_PROB_IP = LazyKernel(_prob_inplace, _sig_prob_ip, **_P)
K_PROB_IP_S = LazyKernel(_prob_inplace_serial, _sig_prob_ip, **_S)

ALL_KERNELS = (K_INDEX, K_INDEX_S, K_INDEX_IP, K_INDEX_IP_S,
               K_PROB, K_PROB_S, K_PROB_IP, K_PROB_IP_S)


# ------------------------------------------------------------- wrappers
_ONE64 = np.ones(1)


def _rows(a):
    """Flat view of a rows-layout array, copying when the strides forbid one."""
    f = flat(a)
    if f[0] is None:
        a = np.ascontiguousarray(a)
        f = flat(a)
    return a, f[0], f[1], f[2]


def _weights(weight, dtype, n_classes):
    if weight is None:
        return _ONE64, np.ones(1, dtype=dtype), False, float(n_classes)
    w64 = np.ascontiguousarray(weight, dtype=np.float64)
    return w64, w64.astype(dtype), True, float(np.sum(w64))


def _pick(parallel, serial, n, k, n_threads):
    if n_threads == 1 or n == 1 or n * k <= SERIAL_WORK:
        return serial, False
    use_threads(n_threads)
    return parallel, True


def _run(kernel, is_parallel, *args):
    if is_parallel:
        with parallel_lock():
            kernel(*args)
        check_layer()
    else:
        kernel(*args)


def _grad_target(grad, logits):
    """(grad rows to write, scratch or None): a scratch array when ``grad``
    cannot be viewed flat (then copied into ``grad`` afterwards)."""
    f = flat(grad)
    if f[0] is None:
        tmp = np.empty(grad.shape, dtype=grad.dtype)
        return tmp, tmp
    return grad, None


def cross_entropy_index_rows(logits, target, weight, ignore_index, label_smoothing,
                             grad_scale, loss, grad, n_threads):
    """Fused cross-entropy against class indices; see :mod:`fastsoftmax.kernels`."""
    n, k = logits.shape
    char = logits.dtype.char
    w64, wg, has_w, w_total = _weights(weight, logits.dtype, k)
    target = np.ascontiguousarray(target, dtype=np.int64)
    eps = float(label_smoothing)
    gs = float(grad_scale)
    ii = int(ignore_index)
    if grad is not None and np.may_share_memory(logits, grad):   # in place
        zf, zo, zs, _ = flat(grad)
        if zf is not None:
            kernel, par = _pick(K_INDEX_IP, K_INDEX_IP_S, n, k, n_threads)
            _run(kernel[char], par, zf, zo, zs, n, k, target, w64, wg, has_w, w_total,
                 ii, eps, gs, loss, _nt_out(grad))
            return
        logits = logits.copy()
    logits, zf, zo, zs = _rows(logits)
    want_grad = grad is not None
    scratch = None
    if want_grad:
        grad_rows, scratch = _grad_target(grad, logits)
        gf, go, gs_, _ = flat(grad_rows)
    else:
        gf, go, gs_ = zf[:0].copy(), 0, 0
    kernel, par = _pick(K_INDEX, K_INDEX_S, n, k, n_threads)
    _run(kernel[char], par, zf, zo, zs, gf, go, gs_, n, k, target, w64, wg, has_w, w_total,
         ii, eps, gs, loss, want_grad, want_grad and _nt_out(grad_rows))
    if scratch is not None:
        np.copyto(grad, scratch)


def cross_entropy_prob_rows(logits, target, weight, label_smoothing, grad_scale,
                            loss, grad, n_threads):
    """Fused cross-entropy against class probabilities; see :mod:`fastsoftmax.kernels`."""
    n, k = logits.shape
    char = logits.dtype.char
    w64, wg, has_w, _ = _weights(weight, logits.dtype, k)
    eps = float(label_smoothing)
    gs = float(grad_scale)
    target, tf, to, ts = _rows(target)
    if grad is not None and np.may_share_memory(logits, grad):   # in place
        zf, zo, zs, _ = flat(grad)
        if zf is not None:
            kernel, par = _pick(K_PROB_IP, K_PROB_IP_S, n, k, n_threads)
            _run(kernel[char], par, zf, zo, zs, tf, to, ts, n, k, w64, wg, has_w, eps, gs, loss)
            return
        logits = logits.copy()
    logits, zf, zo, zs = _rows(logits)
    want_grad = grad is not None
    scratch = None
    if want_grad:
        grad_rows, scratch = _grad_target(grad, logits)
        gf, go, gs_, _ = flat(grad_rows)
    else:
        gf, go, gs_ = zf[:0].copy(), 0, 0
    kernel, par = _pick(K_PROB, K_PROB_S, n, k, n_threads)
    _run(kernel[char], par, zf, zo, zs, tf, to, ts, gf, go, gs_, n, k, w64, wg, has_w, eps,
         gs, loss, want_grad)
    if scratch is not None:
        np.copyto(grad, scratch)
