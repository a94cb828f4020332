"""The pure-NumPy reference backend: the math, written to be read.

Every other backend is tested against this one.  It implements the kernel
contract of :mod:`fastsoftmax.kernels` with plain NumPy expressions (and
temporaries); ``n_threads`` is accepted and ignored.
"""
from .softmax import softmax_rows, softmax_cols, softmax_axis  # noqa: F401
from .cross_entropy import *  # noqa: F401,F403

NAME = "numpy"


def warmup():
    """Nothing to compile."""
