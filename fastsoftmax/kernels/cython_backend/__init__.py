"""The Cython backend: compiled C kernels, vectorised and parallel (OpenMP).

Importing this package loads the compiled extension ``_kernels``; when it
was not built, the import fails with ImportError and the backend registry
reports how to get it.  The kernels implement the contract documented in
:mod:`fastsoftmax.kernels`.
"""
from ._kernels import (  # noqa: F401
    cross_entropy_fast,
    cross_entropy_index_rows,
    cross_entropy_prob_rows,
    SampledStep,
    softmax_cols,
    softmax_fast,
    softmax_rows,
)

NAME = "cython"

__all__ = ["NAME", "softmax_rows", "softmax_cols", "cross_entropy_index_rows",
           "cross_entropy_prob_rows", "SampledStep", "warmup"]


def warmup():
    """Nothing to compile: the extension is compiled ahead of time."""
