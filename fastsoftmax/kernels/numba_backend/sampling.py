"""Numba kernels of the candidate samplers.

Same contract as :mod:`fastsoftmax.kernels.reference.sampling` (read it
first): Vose's alias-table build and counter-based parallel draws, bit for
bit the reference's results.  All integer arithmetic is done on ``uint64``
with explicit ``np.uint64`` constants (mixing ``uint64`` with a signed
integer would promote to float64 in Numba).
"""
import math

import numba
import numpy as np
from numba import njit, prange

from ._runtime import prefetch_intrinsic

__all__ = ["alias_build", "alias_draw", "uniform_draw", "loguniform_draw", "warmup"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_LOW32 = np.uint64(0xFFFFFFFF)
_S11 = np.uint64(11)
_S27 = np.uint64(27)
_S30 = np.uint64(30)
_S31 = np.uint64(31)
_S32 = np.uint64(32)
_ONE = np.uint64(1)
_ZERO = np.uint64(0)
#: draws per parallel work item (a fixed partition: results never depend on it)
_BLOCK = 8192
#: draws per pass inside a block (columns first, then the table loads)
_CHUNK = 512
_TWO32 = 4294967296.0
#: prefetch locality hint (0: non-temporal; the columns are uniform, no reuse)
_LOCALITY = 0
_INV53 = 1.0 / 9007199254740992.0

_OPTS = dict(nogil=True, cache=True, error_model="numpy", boundscheck=False)


_prefetch = prefetch_intrinsic(_LOCALITY, """Hint the CPU to start loading ``array[index]``
    (LLVM's prefetch, read, locality ``_LOCALITY``).""")


@njit(inline="always")
def _splitmix(z):
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@njit(inline="always")
def _threshold(mass):
    t = math.floor(mass * _TWO32 + 0.5)
    if t > _TWO32 - 1.0:
        t = _TWO32 - 1.0
    return np.uint64(t)


@njit(**_OPTS)
def _alias_build(q, work, table, fallback):
    n = q.shape[0]
    n_small = 0
    n_large = 0
    for i in range(n):
        if q[i] < 1.0:
            work[n_small] = i
            n_small += 1
        else:
            n_large += 1
            work[n - n_large] = i
    while n_small > 0 and n_large > 0:
        n_small -= 1
        s = work[n_small]
        big = work[n - n_large]
        table[s] = (_threshold(q[s]) << _S32) | np.uint64(big)
        q[big] = (q[big] + q[s]) - 1.0
        if q[big] < 1.0:
            n_large -= 1
            work[n_small] = big
            n_small += 1
    for k in range(n_large):
        j = work[n - 1 - k]
        table[j] = (_LOW32 << _S32) | np.uint64(j)
    for k in range(n_small):
        s = work[k]
        if q[s] >= 0.5:
            table[s] = (_LOW32 << _S32) | np.uint64(s)
        else:
            table[s] = (_threshold(q[s]) << _S32) | np.uint64(fallback)


@njit(**_OPTS)
def _alias_range(table, base, out, lo, hi, columns, fractions):
    """Draws ``lo .. hi-1`` into ``out``, in chunks of ``_CHUNK``."""
    n = np.uint64(table.shape[0])
    for chunk_lo in range(lo, hi, _CHUNK):
        chunk_hi = min(chunk_lo + _CHUNK, hi)
        # pass 1: random column and fraction of each draw (pure arithmetic)
        for i in range(chunk_lo, chunk_hi):
            r = _splitmix(base + (np.uint64(i) + _ONE) * _GOLDEN)
            u = (r >> _S32) * n + (((r & _LOW32) * n) >> _S32)
            columns[i - chunk_lo] = u >> _S32
            fractions[i - chunk_lo] = u & _LOW32
            # start the table load now: by pass 2 it is (mostly) in cache,
            # which keeps the draws fast when other processes crowd the L3
            _prefetch(table, u >> _S32)
        # pass 2: independent table loads, many in flight at once, and a
        # branch-free select (a mispredicted branch would flush the loads in
        # flight and serialise the memory latency)
        for i in range(chunk_lo, chunk_hi):
            column = columns[i - chunk_lo]
            entry = table[column]
            keep = np.uint64(fractions[i - chunk_lo] < (entry >> _S32))
            alias = entry & _LOW32
            out[i] = np.int64(alias ^ ((column ^ alias) & (_ZERO - keep)))


@njit(parallel=True, **_OPTS)
def _alias_draw_parallel(table, key, start, out):
    m = out.shape[0]
    base = key + start * _GOLDEN
    n_blocks = (m + _BLOCK - 1) // _BLOCK
    for b in prange(n_blocks):
        columns = np.empty(_CHUNK, np.uint64)
        fractions = np.empty(_CHUNK, np.uint64)
        _alias_range(table, base, out, b * _BLOCK, min((b + 1) * _BLOCK, m),
                     columns, fractions)


@njit(**_OPTS)
def _alias_draw_serial(table, key, start, out):
    columns = np.empty(_CHUNK, np.uint64)
    fractions = np.empty(_CHUNK, np.uint64)
    _alias_range(table, key + start * _GOLDEN, out, 0, out.shape[0], columns, fractions)


@njit(**_OPTS)
def _uniform_range(n, base, out, lo, hi):
    for i in range(lo, hi):
        r = _splitmix(base + (np.uint64(i) + _ONE) * _GOLDEN)
        u = (r >> _S32) * n + (((r & _LOW32) * n) >> _S32)
        out[i] = np.int64(u >> _S32)


@njit(parallel=True, **_OPTS)
def _uniform_draw_parallel(num_classes, key, start, out):
    m = out.shape[0]
    base = key + start * _GOLDEN
    n_blocks = (m + _BLOCK - 1) // _BLOCK
    for b in prange(n_blocks):
        _uniform_range(np.uint64(num_classes), base, out, b * _BLOCK, min((b + 1) * _BLOCK, m))


@njit(**_OPTS)
def _uniform_draw_serial(num_classes, key, start, out):
    _uniform_range(np.uint64(num_classes), key + start * _GOLDEN, out, 0, out.shape[0])


@njit(**_OPTS)
def _loguniform_range(num_classes, log_range, base, out, lo, hi):
    last = num_classes - 1
    for i in range(lo, hi):
        r = _splitmix(base + (np.uint64(i) + _ONE) * _GOLDEN)
        x = np.float64(r >> _S11) * _INV53
        k = np.int64(math.exp(x * log_range)) - 1
        if k > last:
            k = last
        if k < 0:
            k = 0
        out[i] = k


@njit(parallel=True, **_OPTS)
def _loguniform_draw_parallel(num_classes, log_range, key, start, out):
    m = out.shape[0]
    base = key + start * _GOLDEN
    n_blocks = (m + _BLOCK - 1) // _BLOCK
    for b in prange(n_blocks):
        _loguniform_range(num_classes, log_range, base, out, b * _BLOCK, min((b + 1) * _BLOCK, m))


@njit(**_OPTS)
def _loguniform_draw_serial(num_classes, log_range, key, start, out):
    _loguniform_range(num_classes, log_range, key + start * _GOLDEN, out, 0, out.shape[0])


def _threads(n_threads):
    """Thread count for this call, applied to Numba (a per-calling-thread setting)."""
    n = max(1, min(int(n_threads), numba.config.NUMBA_NUM_THREADS))
    if n > 1:
        numba.set_num_threads(n)
    return n


def alias_build(scaled, work, table, fallback):
    _alias_build(scaled, work, table, np.int64(fallback))


def alias_draw(table, key, start, out, n_threads=1):
    kernel = _alias_draw_parallel if _threads(n_threads) > 1 else _alias_draw_serial
    kernel(table, np.uint64(key), np.uint64(start), out)


def uniform_draw(num_classes, key, start, out, n_threads=1):
    kernel = _uniform_draw_parallel if _threads(n_threads) > 1 else _uniform_draw_serial
    kernel(np.int64(num_classes), np.uint64(key), np.uint64(start), out)


def loguniform_draw(num_classes, log_range, key, start, out, n_threads=1):
    kernel = _loguniform_draw_parallel if _threads(n_threads) > 1 else _loguniform_draw_serial
    kernel(np.int64(num_classes), np.float64(log_range), np.uint64(key),
           np.uint64(start), out)


def warmup():
    """Compile every sampling kernel (for benchmarks that time runs only)."""
    q = np.array([0.5, 1.5])
    table = np.empty(2, dtype=np.uint64)
    alias_build(q, np.empty(2, dtype=np.int64), table, 1)
    out = np.empty(3, dtype=np.int64)
    for n_threads in (1, 2):
        alias_draw(table, 1, 0, out, n_threads)
        uniform_draw(2, 1, 0, out, n_threads)
        loguniform_draw(2, math.log(3.0), 1, 0, out, n_threads)
