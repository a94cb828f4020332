"""Numba plumbing shared by the kernel families: threading layer, thread
count, and kernels compiled lazily with explicit signatures.

Importing this module imports Numba (the backend package is itself imported
only on first use, so ``import fastsoftmax`` stays free of Numba).
"""
import threading

import numba
from numba import njit, types

__all__ = ["LazyKernel", "use_threads", "parallel_lock", "FLOAT_TYPES"]

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
