"""Reference fused softmax cross-entropy kernels: the contract's formulas in NumPy.

Both kernels follow :mod:`fastsoftmax.kernels` ("Cross-entropy family")
exactly.  They work through blocks of rows so that their temporaries stay
small whatever ``n`` is (``grad=logits`` then needs no ``n x C`` buffer, even
on this backend), and compute each block in float64 (or ``long double`` for
``long double`` logits) before rounding the gradient to the logits' dtype.

Choices the contract leaves open, made here as torch makes them:

* With ``label_smoothing == 0`` the smoothing term is not evaluated at all,
  so a ``-inf`` logit at a class other than the target leaves the loss finite
  (``0 * inf`` would otherwise give NaN).
* A row whose target is ``ignore_index`` gets ``loss = 0`` and a zero
  gradient row whatever its logits hold (NaN included).
"""
import numpy as np

__all__ = ["cross_entropy_index_rows", "cross_entropy_prob_rows"]

#: rows per block are chosen so that a block holds about this many elements
_BLOCK_ELEMENTS = 1 << 13


def _blocks(n, n_classes):
    rows = max(1, _BLOCK_ELEMENTS // max(1, n_classes))
    for start in range(0, n, rows):
        yield start, min(n, start + rows)


def _work_dtype(dtype):
    return np.promote_types(dtype, np.float64)


def _neg_log_softmax(z):
    """``lse - z`` for each row of ``z`` (``-log_softmax(z)``), as SciPy computes it."""
    row_max = np.max(z, axis=1, keepdims=True)
    row_max[~np.isfinite(row_max)] = 0
    log_sum_exp = row_max + np.log(np.sum(np.exp(z - row_max), axis=1, keepdims=True))
    return log_sum_exp - z


def cross_entropy_index_rows(logits, target, weight, ignore_index, label_smoothing,
                             grad_scale, loss, grad, n_threads=1):
    """Cross-entropy of rows of ``logits`` against class indices ``target``.

    See :mod:`fastsoftmax.kernels` for the preconditions and formulas;
    ``n_threads`` is ignored.
    """
    n, n_classes = logits.shape
    work = _work_dtype(logits.dtype)
    eps = float(label_smoothing)
    w = np.ones(n_classes, dtype=work) if weight is None else weight.astype(work)
    w_total = w.sum()
    with np.errstate(all="ignore"):
        for start, stop in _blocks(n, n_classes):
            z = logits[start:stop].astype(work)          # a copy: grad may be logits
            y = target[start:stop]
            ignored = y == ignore_index
            y_safe = np.where(ignored, 0, y)
            rows = np.arange(stop - start)
            w_y = w[y_safe]

            neg_log_p = _neg_log_softmax(z)
            row_loss = (1 - eps) * w_y * neg_log_p[rows, y_safe]
            if eps > 0:
                row_loss += eps / n_classes * np.sum(w * neg_log_p, axis=1)
            row_loss[ignored] = 0
            loss[start:stop] = row_loss

            if grad is not None:
                p = np.exp(-neg_log_p)
                g = p * ((1 - eps) * w_y + eps / n_classes * w_total)[:, None]
                if eps > 0:
                    g -= eps / n_classes * w
                g[rows, y_safe] -= (1 - eps) * w_y
                g *= grad_scale
                g[ignored] = 0
                grad[start:stop] = g


def cross_entropy_prob_rows(logits, target, weight, label_smoothing, grad_scale,
                            loss, grad, n_threads=1):
    """Cross-entropy of rows of ``logits`` against class probabilities ``target``.

    See :mod:`fastsoftmax.kernels` for the preconditions and formulas;
    ``n_threads`` is ignored.
    """
    n, n_classes = logits.shape
    work = _work_dtype(logits.dtype)
    eps = float(label_smoothing)
    w = np.ones(n_classes, dtype=work) if weight is None else weight.astype(work)
    with np.errstate(all="ignore"):
        for start, stop in _blocks(n, n_classes):
            z = logits[start:stop].astype(work)          # a copy: grad may be logits
            t = target[start:stop].astype(work)
            if eps > 0:
                t = t * (1 - eps) + eps / n_classes
            weighted_t = w * t

            neg_log_p = _neg_log_softmax(z)
            loss[start:stop] = np.sum(weighted_t * neg_log_p, axis=1)

            if grad is not None:
                p = np.exp(-neg_log_p)
                g = p * np.sum(weighted_t, axis=1, keepdims=True) - weighted_t
                g *= grad_scale
                grad[start:stop] = g
