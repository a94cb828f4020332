"""fastsoftmax: parallel CPU kernels for the softmax family.

Row-wise numerically stable :func:`softmax` / :func:`log_softmax` (drop-ins
for SciPy's), a fused softmax cross-entropy with its gradient, candidate
samplers and a sampled softmax loss, on Numba, Cython and NumPy backends.

``import fastsoftmax`` is light: Numba and the compiled extension are loaded
only when a kernel first needs them.
"""
from ._version import __version__
from ._backends import (
    available_backends,
    get_backend,
    get_num_threads,
    set_backend,
    set_num_threads,
    use_backend,
)
from .softmax import log_softmax, softmax
from .cross_entropy import cross_entropy, cross_entropy_grad
from .sampling import (
    AliasSampler,
    Candidates,
    LogUniformSampler,
    UniformSampler,
    UnigramSampler,
)
from .sampled import SampledSoftmaxGrad, sampled_softmax_loss

__all__ = [
    "__version__",
    "softmax",
    "log_softmax",
    "cross_entropy",
    "cross_entropy_grad",
    "AliasSampler",
    "UnigramSampler",
    "LogUniformSampler",
    "UniformSampler",
    "Candidates",
    "sampled_softmax_loss",
    "SampledSoftmaxGrad",
    "available_backends",
    "get_backend",
    "set_backend",
    "use_backend",
    "get_num_threads",
    "set_num_threads",
]
