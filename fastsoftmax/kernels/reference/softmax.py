"""Reference softmax / log_softmax, exactly SciPy's formulas."""
import numpy as np

__all__ = ["softmax_axis", "softmax_rows", "softmax_cols"]


def softmax_axis(x, out, axis, log):
    """Softmax or log-softmax of ``x`` along ``axis`` into ``out``.

    Works for any float dtype (``long double`` included) and any layout; ``out``
    may be ``x`` itself.
    """
    # sums accumulate in at least float64: NumPy's float32 sum along a strided
    # axis is a plain running sum whose error grows with the slice length
    acc = np.promote_types(x.dtype, np.float64)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore", under="ignore"):
        x_max = np.max(x, axis=axis, keepdims=True)
        if log:
            x_max[~np.isfinite(x_max)] = 0
            shifted = x - x_max
            log_sum = np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True, dtype=acc))
            np.subtract(shifted, log_sum, out=out, casting="unsafe")
        else:
            exp_shifted = np.exp(x - x_max)
            total = np.sum(exp_shifted, axis=axis, keepdims=True, dtype=acc)
            np.divide(exp_shifted, total, out=out, casting="unsafe")


def softmax_rows(x, out, log, n_threads=1):
    softmax_axis(x, out, 1, log)


def softmax_cols(x, out, log, n_threads=1):
    softmax_axis(x, out, 1, log)
