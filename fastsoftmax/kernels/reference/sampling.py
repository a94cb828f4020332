"""Reference (NumPy) kernels of the candidate samplers: the spec for the others.

Sampling kernel contract
------------------------
The compiled twins (``numba_backend/sampling.py``,
``cython_backend/_sampling.pyx``) export the same names and signatures and
must give bit-identical results (the draws are pure integer arithmetic, except
``loguniform_draw`` which calls ``exp`` and may differ where ``exp`` rounds
across an integer).  :mod:`fastsoftmax.sampling` validates everything first.

``alias_build(scaled, work, table, fallback)``
    Vose's O(n) construction of Walker's alias table.  ``scaled`` float64
    ``(n,)`` contiguous, ``scaled[i] = n * p[i]`` (mean 1), finite and >= 0,
    overwritten (it is the working copy of the column masses); ``work``
    int64 ``(n,)`` contiguous scratch; ``table`` uint64 ``(n,)`` contiguous,
    written; ``fallback`` an index with ``p > 0``.  ``1 <= n < 2**32``.

    Each entry packs a column in one 64-bit word:
    ``table[j] = threshold << 32 | alias`` with ``threshold =
    round(scaled[j] * 2**32)`` clipped to ``2**32 - 1``; a full column
    (mass 1) is ``0xFFFFFFFF << 32 | j`` (its alias is itself).  A class with
    ``p == 0`` gets threshold 0 and is never anyone's alias, so it is never
    drawn.

    The order is fixed: classes are pushed on the small / large stacks in
    index order and popped last-in first-out; the mass left in a large column
    is updated as ``(q[l] + q[s]) - 1`` (the better-conditioned form).
    Columns still on a stack at the end (rounding) are full, except a column
    whose mass is below 1/2, which keeps its threshold and aliases to
    ``fallback`` (it cannot occur unless the rounding error were ~1/2).

``alias_draw(table, key, start, out, n_threads)``
    ``out`` int64 ``(m,)`` contiguous, written with draws ``start ..
    start+m-1`` of the stream ``key`` (``key``, ``start`` uint64).
``uniform_draw(num_classes, key, start, out, n_threads)``
    Uniform ids in ``[0, num_classes)``, ``1 <= num_classes < 2**32``.
``loguniform_draw(num_classes, log_range, key, start, out, n_threads)``
    TensorFlow's log-uniform (Zipfian) law by inverse CDF,
    ``log_range = log(num_classes + 1)``.

Random numbers: draw ``i`` uses ``r = splitmix64(key + (start + i + 1) *
0x9E3779B97F4A7C15)`` (the ``i``-th output of the splitmix64 generator
seeded with ``key + start * golden``), so it depends only on the key and its
index: results do not depend on the thread count or on how ``out`` is split.
From ``r = rh * 2**32 + rl`` and ``n`` classes, ``u = rh * n + (rl * n >>
32)`` is exact in 64 bits; ``column = u >> 32`` is ``floor(r * n / 2**64)``
(uniform up to a bias of ``n / 2**64``) and ``fraction = u & 0xFFFFFFFF``
holds the next 32 random bits, compared with the column's threshold.  The
log-uniform draw uses ``x = (r >> 11) * 2**-53`` in ``[0, 1)`` and
``k = int(exp(x * log_range)) - 1`` clipped to ``[0, num_classes)``.
"""
import numpy as np

__all__ = ["alias_build", "alias_draw", "uniform_draw", "loguniform_draw"]

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
MIX1 = np.uint64(0xBF58476D1CE4E5B9)
MIX2 = np.uint64(0x94D049BB133111EB)
LOW32 = np.uint64(0xFFFFFFFF)
FULL = np.uint64(0xFFFFFFFF)
TWO32 = 4294967296.0


def alias_build(scaled, work, table, fallback):
    """Vose's algorithm, written out as the compiled kernels run it."""
    n = scaled.shape[0]
    q = scaled
    n_small = 0
    n_large = 0
    for i in range(n):  # small stack grows from the front, large from the back
        if q[i] < 1.0:
            work[n_small] = i
            n_small += 1
        else:
            n_large += 1
            work[n - n_large] = i
    thresholds = np.zeros(n, dtype=np.float64)
    aliases = np.arange(n, dtype=np.int64)
    full = np.zeros(n, dtype=bool)
    while n_small > 0 and n_large > 0:
        n_small -= 1
        s = work[n_small]
        big = work[n - n_large]
        thresholds[s] = q[s]
        aliases[s] = big
        q[big] = (q[big] + q[s]) - 1.0
        if q[big] < 1.0:
            n_large -= 1
            work[n_small] = big
            n_small += 1
    for k in range(n_large):
        full[work[n - 1 - k]] = True
    for k in range(n_small):
        s = work[k]
        if q[s] >= 0.5:
            full[s] = True
        else:
            thresholds[s] = q[s]
            aliases[s] = fallback
    thr = np.minimum(np.floor(thresholds * TWO32 + 0.5), TWO32 - 1.0).astype(np.uint64)
    thr[full] = FULL
    aliases[full] = np.nonzero(full)[0]
    table[:] = (thr << np.uint64(32)) | aliases.astype(np.uint64)


def _random_bits(key, start, m):
    """splitmix64 outputs ``start .. start+m-1`` of stream ``key`` (uint64 array)."""
    idx = np.arange(1, m + 1, dtype=np.uint64) + np.uint64(start)
    z = np.uint64(key) + idx * GOLDEN
    z = (z ^ (z >> np.uint64(30))) * MIX1
    z = (z ^ (z >> np.uint64(27))) * MIX2
    return z ^ (z >> np.uint64(31))


def _scale(r, n):
    """``(column, fraction)`` of ``r * n / 2**64`` for ``n < 2**32``."""
    n = np.uint64(n)
    u = (r >> np.uint64(32)) * n + (((r & LOW32) * n) >> np.uint64(32))
    return u >> np.uint64(32), u & LOW32


def alias_draw(table, key, start, out, n_threads=1):
    r = _random_bits(key, start, out.shape[0])
    column, fraction = _scale(r, table.shape[0])
    entry = table[column]
    out[:] = np.where(fraction < (entry >> np.uint64(32)), column, entry & LOW32)


def uniform_draw(num_classes, key, start, out, n_threads=1):
    r = _random_bits(key, start, out.shape[0])
    out[:] = _scale(r, num_classes)[0]


def loguniform_draw(num_classes, log_range, key, start, out, n_threads=1):
    r = _random_bits(key, start, out.shape[0])
    x = (r >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)
    k = np.exp(x * log_range).astype(np.int64) - 1
    np.clip(k, 0, num_classes - 1, out=out)
