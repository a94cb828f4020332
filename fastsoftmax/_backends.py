"""The backend registry: which kernel module runs a call, and on how many threads.

A backend is a module implementing the kernel contract documented in
:mod:`fastsoftmax.kernels`.  Backends are imported on first use only, so
``import fastsoftmax`` never imports Numba nor loads the compiled extension.

The current backend is ``use_backend``'s value in the current context (a
:class:`contextvars.ContextVar`, so it is local to a thread or an asyncio
task) or else the process-wide default set by :func:`set_backend` (initially
``$FASTSOFTMAX_BACKEND`` or ``"auto"``).
"""
import contextlib
import contextvars
import importlib
import os
import threading
import warnings

__all__ = [
    "BACKENDS",
    "available_backends",
    "get_backend",
    "set_backend",
    "use_backend",
    "get_num_threads",
    "set_num_threads",
    "kernels_for",
]

#: name -> module implementing the kernel contract (imported lazily)
_MODULES = {
    "numba": "fastsoftmax.kernels.numba_backend",
    "cython": "fastsoftmax.kernels.cython_backend",
    "numpy": "fastsoftmax.kernels.reference",
}
_HOW_TO_GET = {
    "numba": "install Numba (`pip install numba`)",
    "cython": ("build the compiled extension: reinstall fastsoftmax from source "
               "with a C compiler available (`pip install -e .` in a checkout, "
               "or `pip install --no-binary fastsoftmax fastsoftmax`)"),
    "numpy": "this backend only needs NumPy",
}
#: every name set_backend accepts
BACKENDS = ("auto", "numba", "cython", "numpy")
#: order "auto" tries the compiled backends in
_AUTO_ORDER = ("cython", "numba")

_lock = threading.Lock()
_loaded = {}
_failed = {}
#: backend name -> the ``softmax_fast`` of the kernel module softmax runs on
#: under that name (filled by ``softmax_fast_for``)
_fast_paths = {}


def _load(name):
    """Import backend ``name`` (once) and return its module, or raise RuntimeError."""
    mod = _loaded.get(name)
    if mod is not None:
        return mod
    with _lock:
        mod = _loaded.get(name)
        if mod is not None:
            return mod
        if name in _failed:
            raise RuntimeError(_failed[name])
        try:
            mod = importlib.import_module(_MODULES[name])
        except Exception as exc:  # ImportError, or a broken install
            msg = (f"fastsoftmax backend {name!r} is not available: "
                   f"{type(exc).__name__}: {exc}. To get it, {_HOW_TO_GET[name]}.")
            _failed[name] = msg
            raise RuntimeError(msg) from exc
        _loaded[name] = mod
        return mod


def _check_name(name):
    if not isinstance(name, str) or name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return name


def available_backends():
    """Which backends can run here.

    Returns
    -------
    dict
        ``{name: True}`` for each loadable backend and ``{name: reason}``
        (a string saying why and how to get it) for the others.  Loading a
        backend imports it (Numba's import takes a fraction of a second).

    Examples
    --------
    >>> import fastsoftmax
    >>> fastsoftmax.available_backends()["numpy"]
    True
    """
    out = {}
    for name in _MODULES:
        try:
            _load(name)
            out[name] = True
        except RuntimeError as exc:
            out[name] = str(exc)
    return out


def _initial_backend():
    name = os.environ.get("FASTSOFTMAX_BACKEND", "auto").strip().lower() or "auto"
    if name not in BACKENDS:
        warnings.warn(f"FASTSOFTMAX_BACKEND={name!r} is not one of {BACKENDS}; "
                      "using 'auto'", RuntimeWarning, stacklevel=2)
        name = "auto"
    return name


_global_backend = _initial_backend()
_context_backend = contextvars.ContextVar("fastsoftmax_backend", default=None)


def get_backend():
    """The backend calls with ``backend=None`` use here (this thread or task).

    Examples
    --------
    >>> import fastsoftmax
    >>> with fastsoftmax.use_backend("numpy"):
    ...     fastsoftmax.get_backend()
    'numpy'
    """
    return _name(None)


def _name(backend):
    """The backend name a call's ``backend=`` argument stands for."""
    return backend if backend is not None else (_context_backend.get() or _global_backend)


def set_backend(name):
    """Set the process-wide default backend.

    Parameters
    ----------
    name : {"auto", "numba", "cython", "numpy"}
        ``"auto"`` picks the fastest available backend per call.  Naming a
        backend that cannot load raises ``RuntimeError`` saying why.

    Notes
    -----
    A :func:`use_backend` block in effect in the current thread or task
    still takes precedence.

    Examples
    --------
    >>> import fastsoftmax
    >>> fastsoftmax.set_backend("numpy")
    >>> fastsoftmax.get_backend()
    'numpy'
    >>> fastsoftmax.set_backend("auto")
    """
    global _global_backend
    _check_name(name)
    if name != "auto":
        _load(name)
    _global_backend = name


@contextlib.contextmanager
def use_backend(name):
    """Context manager: use backend ``name`` inside the ``with`` block.

    The choice is local to the current thread and asyncio task (it lives in
    a :class:`contextvars.ContextVar`); other threads keep their backend.

    Examples
    --------
    >>> import fastsoftmax
    >>> with fastsoftmax.use_backend("numpy"):
    ...     fastsoftmax.softmax([1.2, 0.3]).round(2)
    array([0.71, 0.29])
    """
    _check_name(name)
    if name != "auto":
        _load(name)
    token = _context_backend.set(name)
    try:
        yield name
    finally:
        _context_backend.reset(token)


def _default_threads():
    env = os.environ.get("FASTSOFTMAX_NUM_THREADS")
    if env:
        try:
            n = int(env)
            if n >= 1:
                return n
        except ValueError:
            pass
        warnings.warn(f"ignoring FASTSOFTMAX_NUM_THREADS={env!r}: not a positive integer",
                      RuntimeWarning, stacklevel=2)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


_num_threads = _default_threads()


def get_num_threads():
    """Number of threads the compiled kernels use (Numba and Cython alike).

    The starting value is ``$FASTSOFTMAX_NUM_THREADS``, else the number of CPUs
    this process may run on.

    Examples
    --------
    >>> import fastsoftmax
    >>> fastsoftmax.get_num_threads() >= 1
    True
    """
    return _num_threads


def set_num_threads(n):
    """Set the number of threads of the compiled kernels (a positive int).

    Applies to every thread of the process; the Numba backend cannot use more
    than ``numba.config.NUMBA_NUM_THREADS`` threads and clamps to that.

    Examples
    --------
    >>> import fastsoftmax
    >>> old = fastsoftmax.get_num_threads()
    >>> fastsoftmax.set_num_threads(1)
    >>> fastsoftmax.get_num_threads()
    1
    >>> fastsoftmax.set_num_threads(old)
    """
    global _num_threads
    try:
        import operator
        n = operator.index(n)
    except TypeError:
        raise TypeError(f"n must be an int, got {type(n).__name__}") from None
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    _num_threads = n


_auto_cache = {}


def _auto(op):
    mod = _auto_cache.get(op)
    if mod is None:
        mod = _auto_cache[op] = _auto_pick(op)
    return mod


def _auto_pick(op):
    for name in _AUTO_ORDER:
        if name in _loaded:
            mod = _loaded[name]
            if hasattr(mod, op):
                return mod
            continue
        if name in _failed:
            continue
        try:
            mod = _load(name)
        except RuntimeError:
            continue
        if hasattr(mod, op):
            return mod
    return _load("numpy")


def kernels_for(backend, op):
    """Kernel module for a call: ``backend`` is the ``backend=`` argument.

    ``op`` names the contract function the call needs; ``"auto"`` skips
    backends that lack it.
    """
    name = _name(backend)
    if name == "auto":
        return _auto(op)
    mod = _loaded.get(name)
    if mod is None:
        _check_name(name)
        mod = _load(name)
    return mod


def softmax_fast_for(backend):
    """``(fast, kernels)`` for a softmax call's ``backend=``: ``fast`` the
    kernel module's ``softmax_fast`` (optional in the kernel contract) or
    None, ``kernels`` the module where ``fast`` is None (else maybe None).

    The public softmax's small calls: once found, ``fast`` comes from one
    dict lookup by name (``kernels_for`` and an attribute lookup cost ~0.1
    us); the module a name stands for never changes once loaded, nor does
    "auto"'s pick.
    """
    name = _name(backend)
    try:
        fast = _fast_paths.get(name)
    except TypeError:  # unhashable: kernels_for says what is wrong
        fast = None
    if fast is not None:
        return fast, None
    kernels = kernels_for(backend, "softmax_rows")
    # (a module's __dict__: a missing attribute costs getattr half a us)
    fast = kernels.__dict__.get("softmax_fast")
    if fast is not None:
        _fast_paths[name] = fast
    return fast, kernels
