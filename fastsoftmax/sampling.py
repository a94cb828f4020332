"""Candidate samplers: Walker/Vose alias tables and TensorFlow's samplers.

Every sampler draws i.i.d. class ids with a counter-based generator: draw
number ``i`` of a stream is ``splitmix64(key + (i + 1) * golden)`` turned
into an id, where ``key`` comes from the seed through
:class:`numpy.random.SeedSequence`.  Each draw therefore depends only on the
seed and its index, so draws run in parallel and a seeded call gives the same
ids whatever the thread count and the backend (``"numpy"``, ``"numba"``,
``"cython"``).

The kernels live in ``fastsoftmax/kernels/*/sampling``; this module validates
the arguments, picks the kernel module of the current backend and keeps each
sampler's stream position.
"""
import importlib
import math
import operator
import threading
from typing import NamedTuple

import numpy as np

from . import _backends
from ._validate import as_real_array

__all__ = ["AliasSampler", "UnigramSampler", "LogUniformSampler", "UniformSampler",
           "Candidates"]

#: largest number of classes a sampler takes (ids are packed in 32 bits)
MAX_CLASSES = 2**32 - 1
#: fewer draws than this run on one thread
_PARALLEL_MIN = 1 << 16

_KERNEL_MODULES = {
    "numpy": "fastsoftmax.kernels.reference.sampling",
    "numba": "fastsoftmax.kernels.numba_backend.sampling",
    "cython": "fastsoftmax.kernels.cython_backend._sampling",
}
_kernel_cache = {}


def _import_kernels(name):
    mod = _kernel_cache.get(name)
    if mod is None:
        mod = importlib.import_module(_KERNEL_MODULES[name])
        _kernel_cache[name] = mod
    return mod


def _kernels():
    """The sampling kernel module of the current backend."""
    name = _backends.get_backend()
    if name == "auto":
        for cand in _backends._AUTO_ORDER:
            try:
                _backends._load(cand)
                return _import_kernels(cand)
            except (RuntimeError, ImportError):
                continue
        return _import_kernels("numpy")
    try:
        return _import_kernels(name)
    except ImportError as exc:
        raise RuntimeError(
            f"fastsoftmax backend {name!r} has no sampling kernels: {exc}. "
            "Rebuild the extension (`python setup.py build_ext --inplace` in a "
            "checkout) or use another backend.") from exc


class Candidates(NamedTuple):
    """Result of ``sample_candidates`` (TensorFlow's candidate-sampler triple).

    Attributes
    ----------
    sampled_ids : ndarray of int64, shape (num_sampled,)
        The sampled class ids, in the order they were first drawn.
    true_expected_count : ndarray of float64, the shape of ``true_classes``
        Expected number of times each true class is in the sample.
    sampled_expected_count : ndarray of float64, shape (num_sampled,)
        Expected number of times each sampled id is in the sample.
    """

    sampled_ids: np.ndarray
    true_expected_count: np.ndarray
    sampled_expected_count: np.ndarray


def _key_from_seed(seed):
    """A 64-bit stream key from ``seed`` (None: fresh OS entropy)."""
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(0, 2**64, dtype=np.uint64))
    if isinstance(seed, np.random.SeedSequence):
        seq = seed
    else:
        if seed is not None:
            try:
                seed = operator.index(seed)
            except TypeError:
                raise TypeError("seed must be None, a non-negative int, a "
                                "numpy.random.SeedSequence or a Generator, got "
                                f"{type(seed).__name__}") from None
            if seed < 0:
                raise ValueError(f"seed must be non-negative, got {seed}")
        seq = np.random.SeedSequence(seed)
    return int(seq.generate_state(1, np.uint64)[0])


def _num_classes(num_classes):
    try:
        n = operator.index(num_classes)
    except TypeError:
        raise TypeError("num_classes must be an int, got "
                        f"{type(num_classes).__name__}") from None
    if not 1 <= n <= MAX_CLASSES:
        raise ValueError(f"num_classes must be in [1, 2**32 - 1], got {n}")
    return n


def _shape(size):
    if size is None:
        return None
    if isinstance(size, (tuple, list)):
        dims = tuple(size)
    else:
        dims = (size,)
    out = []
    for d in dims:
        try:
            d = operator.index(d)
        except TypeError:
            raise TypeError("size must be an int or a tuple of ints, got "
                            f"{size!r}") from None
        if d < 0:
            raise ValueError(f"size must be non-negative, got {size!r}")
        out.append(d)
    return tuple(out)


def _class_ids(ids, num_classes, name):
    """``ids`` as an int64 array, every entry in ``[0, num_classes)``."""
    arr = np.asarray(ids)
    if arr.dtype.kind not in "iu":
        if arr.size == 0 and arr.dtype.kind in "fb":
            arr = arr.astype(np.int64)
        else:
            raise ValueError(f"{name} must hold integer class ids, got dtype {arr.dtype}")
    if arr.size:
        bad = (arr < 0) | (arr >= num_classes)
        if bad.any():
            pos = np.unravel_index(int(np.argmax(bad)), arr.shape)
            raise IndexError(f"{name}[{', '.join(map(str, pos))}] = {arr[pos]} is out "
                             f"of range for {num_classes} classes")
    return arr.astype(np.int64, copy=False)


def _check_weights(weights, name):
    """Validated float64 1-D copy of sampler weights."""
    arr = as_real_array(weights, name)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if arr.size > MAX_CLASSES:
        raise ValueError(f"{name} has {arr.size} classes; at most 2**32 - 1 are supported")
    w = arr.astype(np.float64)
    if np.isnan(w).any():
        raise ValueError(f"{name} holds NaN (first at index {int(np.argmax(np.isnan(w)))})")
    if np.isinf(w).any():
        raise ValueError(f"{name} holds an infinite value (first at index "
                         f"{int(np.argmax(np.isinf(w)))})")
    if (w < 0).any():
        raise ValueError(f"{name} must be non-negative (first negative at index "
                         f"{int(np.argmax(w < 0))})")
    if not (w > 0).any():
        raise ValueError(f"{name} are all zero: nothing can be drawn")
    return w


class _Sampler:
    """Shared machinery: stream position, ``sample`` and ``sample_candidates``."""

    #: ``unique=True`` gives up after this many draws per requested id (a
    #: class of tiny probability can make the search endless)
    _MAX_TRIES_PER_ID = 100_000

    def __init__(self, num_classes, seed):
        self._n = num_classes
        self._key = _key_from_seed(seed)
        self._position = 0
        self._lock = threading.Lock()

    def __getstate__(self):  # picklable (for multiprocessing): drop the lock
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # -- to be provided by each sampler ---------------------------------
    def _draw(self, kernels, key, start, out):  # pragma: no cover - abstract
        raise NotImplementedError

    def _probs_of(self, ids):  # pragma: no cover - abstract
        """float64 probabilities of valid int64 ``ids``."""
        raise NotImplementedError

    def _support(self):
        """Number of classes of nonzero probability."""
        return self._n

    # -- public interface -----------------------------------------------
    @property
    def num_classes(self):
        """Number of classes: ids are in ``[0, num_classes)``."""
        return self._n

    def __repr__(self):
        return f"{type(self).__name__}(num_classes={self._n})"

    def log_prob(self, ids):
        """Log-probability of each class id in ``ids`` (``-inf`` where ``p == 0``).

        An id outside ``[0, num_classes)`` raises ``IndexError``.
        """
        ids = _class_ids(ids, self._n, "ids")
        with np.errstate(divide="ignore"):
            return np.log(self._probs_of(ids.ravel())).reshape(ids.shape)

    def _stream(self, seed, count):
        """``(key, start)`` for ``count`` draws: the sampler's own stream
        (advanced) when ``seed`` is None, else a fresh stream of ``seed``."""
        if seed is None:
            with self._lock:
                start = self._position
                self._position += count
            return self._key, start % 2**64
        return _key_from_seed(seed), 0

    def _fill(self, key, start, out):
        if out.size:
            self._draw(_kernels(), key, start, out)
        return out

    @staticmethod
    def _threads_for(count):
        # waking a thread team costs more than ~64k draws (and far more on a
        # busy machine): small calls run on the calling thread
        return _backends.get_num_threads() if count >= _PARALLEL_MIN else 1

    def sample(self, size=None, *, seed=None):
        """Draw i.i.d. class ids.

        Parameters
        ----------
        size : int or tuple of ints, optional
            Output shape; ``None`` draws one id and returns a scalar.
        seed : None, int, SeedSequence or Generator, optional
            ``None`` continues the sampler's own stream (successive calls give
            new draws); a seed gives a fresh, reproducible stream and leaves
            the sampler's stream alone.

        Returns
        -------
        ndarray of int64
            Ids in ``[0, num_classes)``; the same for a given seed whatever
            the backend and thread count.
        """
        shape = _shape(size)
        count = 1 if shape is None else math.prod(shape)
        key, start = self._stream(seed, count)
        out = self._fill(key, start, np.empty(count, dtype=np.int64))
        return out[0] if shape is None else out.reshape(shape)

    def sample_candidates(self, num_sampled, true_classes, *, unique=True, seed=None):
        """Sample candidate classes with TensorFlow's candidate-sampler semantics.

        Parameters
        ----------
        num_sampled : int
            Number of ids to return (``>= 1``).
        true_classes : array_like of int
            True class ids, usually ``(batch, num_true)``; any shape is
            accepted.  Out-of-range ids raise ``IndexError``.
        unique : bool, default True
            ``True``: draw with replacement until ``num_sampled`` distinct
            ids are found, in ``num_tries`` draws, and return them in the
            order they were first drawn; ``num_sampled`` above the number of
            classes of nonzero probability raises ``ValueError``.
            ``False``: ``num_sampled`` i.i.d. draws (``num_tries ==
            num_sampled``).
        seed : None, int, SeedSequence or Generator, optional
            As in :meth:`sample`.

        Returns
        -------
        Candidates
            ``(sampled_ids, true_expected_count, sampled_expected_count)``.
            An expected count is ``num_sampled * p`` when ``num_tries ==
            num_sampled`` and ``-expm1(num_tries * log1p(-p))`` otherwise
            (the probability to appear in ``num_tries`` draws).  They are
            float64 (TensorFlow returns float32).
        """
        try:
            num_sampled = operator.index(num_sampled)
        except TypeError:
            raise TypeError(f"num_sampled must be an int, got {type(num_sampled).__name__}") from None
        if num_sampled < 1:
            raise ValueError(f"num_sampled must be >= 1, got {num_sampled}")
        true = _class_ids(true_classes, self._n, "true_classes")
        if unique:
            support = self._support()
            if num_sampled > support:
                raise ValueError(
                    f"num_sampled={num_sampled} distinct ids requested with unique=True, "
                    f"but only {support} classes have nonzero probability")
            sampled, num_tries = self._unique_draws(num_sampled, seed)
        else:
            sampled = self.sample(num_sampled, seed=seed)
            num_tries = num_sampled
        return Candidates(sampled,
                          self._expected_count(true, num_sampled, num_tries),
                          self._expected_count(sampled, num_sampled, num_tries))

    def _expected_count(self, ids, num_sampled, num_tries):
        p = self._probs_of(ids.ravel()).reshape(ids.shape)
        if num_tries == num_sampled:
            return num_sampled * p
        return -np.expm1(num_tries * np.log1p(-p))

    def _unique_draws(self, num_sampled, seed):
        """First ``num_sampled`` distinct ids of a stream and the draws it took."""
        kernels = _kernels()
        if seed is None:
            with self._lock:  # reserve the stream for this call alone
                key, start = self._key, self._position
                draws, num_tries = self._search(kernels, key, start, num_sampled)
                self._position += num_tries
        else:
            draws, num_tries = self._search(kernels, _key_from_seed(seed), 0, num_sampled)
        return draws, num_tries

    def _first_occurrences(self, stream):
        """Positions of the first occurrence of each distinct id of ``stream``,
        in increasing order."""
        size = stream.size
        bits = max(size - 1, 1).bit_length()         # positions take the low bits
        if self._n << bits >= 2**62:  # (never in practice) the keys would overflow
            _, first = np.unique(stream, return_index=True)
            first.sort()
            return first
        # one sort of distinct keys (id, position): an unstable sort gives the
        # same order as a stable one and is several times faster than the
        # stable argsort of np.unique(return_index=True)
        keys = stream << bits
        keys |= np.arange(size)
        keys.sort()
        ids = keys >> bits
        new = np.empty(size, dtype=bool)
        new[0] = True
        np.not_equal(ids[1:], ids[:-1], out=new[1:])
        first = keys[new] & ((1 << bits) - 1)
        first.sort()
        return first

    def _search(self, kernels, key, start, num_sampled):
        chunks = []
        drawn = 0
        batch = max(2 * num_sampled, 64)
        limit = self._MAX_TRIES_PER_ID * num_sampled + 10_000_000
        while True:
            chunk = np.empty(batch, dtype=np.int64)
            self._draw(kernels, key, (start + drawn) % 2**64, chunk)
            chunks.append(chunk)
            drawn += batch
            stream = np.concatenate(chunks) if len(chunks) > 1 else chunk
            first = self._first_occurrences(stream)
            if first.size >= num_sampled:
                first = first[:num_sampled]
                return stream[first], int(first[-1]) + 1
            if drawn > limit:
                raise RuntimeError(
                    f"found only {first.size} distinct ids in {drawn} draws; the "
                    "remaining classes are too improbable for unique sampling")
            # draws needed grow with what is missing; never less than doubling
            batch = max(batch, drawn)


class AliasSampler(_Sampler):
    """Draw class ids with probabilities proportional to ``weights``.

    Walker's alias method, with the table built by Vose's O(n) algorithm in
    float64: each draw costs O(1) (one random number, one memory access)
    whatever the number of classes.  Draws run in parallel on the compiled
    backends and are reproducible for a seed whatever the thread count.

    Parameters
    ----------
    weights : array_like, shape (num_classes,)
        Non-negative finite weights, not all zero; they need not sum to 1.
        Ratios as extreme as 1e-300 to 1e300 are handled (the weights are
        scaled by their maximum first); a weight below ``1e-308`` times the
        maximum rounds to probability 0.  Classes of weight 0 are never
        drawn.  At most ``2**32 - 1`` classes.
    seed : None, int, SeedSequence or Generator, optional
        Seed of the sampler's own stream; ``None`` takes fresh OS entropy.

    Attributes
    ----------
    num_classes : int
    probs : ndarray of float64
        The normalised weights (they sum to 1).

    Notes
    -----
    The table stores each column as one 64-bit word (a 32-bit acceptance
    threshold and a 32-bit alias), so the sampled law matches ``probs`` up
    to ``2**-32 / num_classes`` per class.

    Examples
    --------
    >>> import numpy as np
    >>> from fastsoftmax import AliasSampler
    >>> sampler = AliasSampler([1.0, 0.0, 3.0], seed=0)
    >>> sampler.probs
    array([0.25, 0.  , 0.75])
    >>> draws = sampler.sample(100_000)
    >>> draws.dtype, bool((draws != 1).all())
    (dtype('int64'), True)
    >>> np.round(np.bincount(draws, minlength=3) / draws.size, 2)
    array([0.25, 0.  , 0.75])
    >>> np.array_equal(sampler.sample(5, seed=42), sampler.sample(5, seed=42))
    True
    """

    def __init__(self, weights, *, seed=None):
        w = _check_weights(weights, "weights")
        self._init_table(w, seed)

    def _init_table(self, w, seed):
        n = w.shape[0]
        super().__init__(n, seed)
        top = int(np.argmax(w))
        with np.errstate(under="ignore"):
            scaled = w / w[top]  # in [0, 1]: no overflow in the sum below
            probs = scaled / math.fsum(scaled)
        probs.flags.writeable = False
        self._probs = probs
        self._n_positive = int(np.count_nonzero(probs))
        self._table = np.empty(n, dtype=np.uint64)
        _kernels().alias_build(probs * n, np.empty(n, dtype=np.int64), self._table, top)

    @property
    def probs(self):
        return self._probs

    def _support(self):
        return self._n_positive

    def _probs_of(self, ids):
        return self._probs[ids]

    def _draw(self, kernels, key, start, out):
        kernels.alias_draw(self._table, key, start, out, self._threads_for(out.size))


class UnigramSampler(AliasSampler):
    """Alias sampler over ``counts ** distortion`` (word2vec's unigram law).

    Parameters
    ----------
    counts : array_like, shape (num_classes,)
        Non-negative finite class counts (frequencies), not all zero.
    distortion : float, default 1.0
        Exponent applied to the counts; word2vec uses 0.75.  ``0`` gives the
        uniform law (NumPy's ``0 ** 0 == 1``, as TensorFlow's
        ``fixed_unigram_candidate_sampler``).
    seed : None, int, SeedSequence or Generator, optional

    Examples
    --------
    >>> from fastsoftmax import UnigramSampler
    >>> UnigramSampler([1, 4, 16], distortion=0.5).probs
    array([0.14285714, 0.28571429, 0.57142857])
    """

    def __init__(self, counts, *, distortion=1.0, seed=None):
        counts = _check_weights(counts, "counts")
        try:
            distortion = float(distortion)
        except (TypeError, ValueError):
            raise TypeError(f"distortion must be a real number, got {distortion!r}") from None
        if not math.isfinite(distortion):
            raise ValueError(f"distortion must be finite, got {distortion}")
        with np.errstate(over="ignore", divide="ignore", under="ignore"):
            # scale by the max first: large counts ** distortion would overflow
            w = np.power(counts / counts.max(), distortion)
        self.distortion = distortion
        self._init_table(_check_weights(w, "counts ** distortion"), seed)


class UniformSampler(_Sampler):
    """Uniform class ids in ``[0, num_classes)``.

    Parameters
    ----------
    num_classes : int
        ``1 <= num_classes <= 2**32 - 1``.
    seed : None, int, SeedSequence or Generator, optional

    Examples
    --------
    >>> from fastsoftmax import UniformSampler
    >>> s = UniformSampler(10)
    >>> s.log_prob([0, 9]).round(4)
    array([-2.3026, -2.3026])
    >>> c = s.sample_candidates(4, [[1], [2]], seed=7)
    >>> len(set(c.sampled_ids.tolist()))
    4
    """

    def __init__(self, num_classes, *, seed=None):
        super().__init__(_num_classes(num_classes), seed)

    @property
    def probs(self):
        return np.full(self._n, 1.0 / self._n)

    def _probs_of(self, ids):
        return np.full(ids.shape, 1.0 / self._n)

    def _draw(self, kernels, key, start, out):
        kernels.uniform_draw(self._n, key, start, out, self._threads_for(out.size))


class LogUniformSampler(_Sampler):
    """TensorFlow's log-uniform (Zipfian) sampler.

    ``P(k) = (log(k + 2) - log(k + 1)) / log(num_classes + 1)``: small ids are
    likely, as when classes are sorted by decreasing frequency.  Draws use
    the closed-form inverse CDF ``floor(exp(u * log(num_classes + 1))) - 1``
    (as TensorFlow does), so no table is stored.

    Parameters
    ----------
    num_classes : int
        ``1 <= num_classes <= 2**32 - 1``.
    seed : None, int, SeedSequence or Generator, optional

    Examples
    --------
    >>> import numpy as np
    >>> from fastsoftmax import LogUniformSampler
    >>> s = LogUniformSampler(3)
    >>> s.probs.round(4)
    array([0.5   , 0.2925, 0.2075])
    >>> bool(np.isclose(np.exp(s.log_prob([0])), 0.5).all())
    True
    """

    def __init__(self, num_classes, *, seed=None):
        super().__init__(_num_classes(num_classes), seed)
        self._log_range = math.log(self._n + 1.0)

    @property
    def probs(self):
        return self._probs_of(np.arange(self._n, dtype=np.int64))

    def _probs_of(self, ids):
        # log(k+2) - log(k+1) = log1p(1/(k+1)), accurate for large k
        return np.log1p(1.0 / (ids.astype(np.float64) + 1.0)) / self._log_range

    def _draw(self, kernels, key, start, out):
        kernels.loguniform_draw(self._n, self._log_range, key, start, out,
                                self._threads_for(out.size))
