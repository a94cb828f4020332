"""The Numba backend: parallel, vectorised kernels compiled on first use.

Implements the kernel contract of :mod:`fastsoftmax.kernels`.  Importing
this package imports Numba (about 0.2-0.5 s) but compiles nothing: each
kernel is compiled (or loaded from Numba's on-disk cache) for a dtype the
first time it runs on that dtype.  :func:`warmup` compiles everything ahead
of time.

Parallel kernels use a thread-safe Numba threading layer (OpenMP or TBB,
see :mod:`._runtime`) so that several Python threads may call them at once.
"""
from .softmax import softmax_cols, softmax_rows
from .cross_entropy import cross_entropy_index_rows, cross_entropy_prob_rows
from ._fast import softmax_fast

NAME = "numba"

__all__ = ["NAME", "softmax_rows", "softmax_cols", "cross_entropy_index_rows",
           "cross_entropy_prob_rows", "softmax_fast", "warmup"]


def warmup():
    """Compile (or load from cache) every kernel for float32 and float64.

    Returns
    -------
    float
        Seconds spent.
    """
    import time

    from . import cross_entropy, softmax

    t0 = time.perf_counter()
    for kernels in (softmax.ALL_KERNELS, cross_entropy.ALL_KERNELS):
        for kernel in kernels:
            for char in ("f", "d"):
                kernel[char]
    return time.perf_counter() - t0
