# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Cython kernels of the candidate samplers.

Same contract as :mod:`fastsoftmax.kernels.reference.sampling` (read it
first): Vose's alias-table build and counter-based parallel draws (OpenMP),
bit for bit the reference's results.  Unsigned 64-bit C arithmetic wraps
modulo 2**64, which is what splitmix64 needs.
"""
from cython.parallel cimport prange
from libc.math cimport exp, floor
from libc.stdint cimport int64_t, uint64_t

cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    #define FSM_PREFETCH(p) __builtin_prefetch((p), 0, 0)
    #else
    #define FSM_PREFETCH(p) ((void)0)
    #endif
    """
    void FSM_PREFETCH(const void* p) noexcept nogil

__all__ = ["alias_build", "alias_draw", "uniform_draw", "loguniform_draw", "warmup"]

cdef uint64_t GOLDEN = 0x9E3779B97F4A7C15ULL
cdef uint64_t MIX1 = 0xBF58476D1CE4E5B9ULL
cdef uint64_t MIX2 = 0x94D049BB133111EBULL
cdef uint64_t LOW32 = 0xFFFFFFFFULL
cdef enum:
    # draws per parallel work item (a fixed partition: results never depend on it)
    BLOCK = 8192
    # draws per pass inside a block (columns first, then the table loads)
    CHUNK = 512
cdef double TWO32 = 4294967296.0
cdef double INV53 = 1.0 / 9007199254740992.0


cdef inline uint64_t _splitmix(uint64_t z) noexcept nogil:
    z = (z ^ (z >> 30)) * MIX1
    z = (z ^ (z >> 27)) * MIX2
    return z ^ (z >> 31)


cdef inline uint64_t _threshold(double mass) noexcept nogil:
    cdef double t = floor(mass * TWO32 + 0.5)
    if t > TWO32 - 1.0:
        t = TWO32 - 1.0
    return <uint64_t>t


cdef void _build(double[::1] q, int64_t[::1] work, uint64_t[::1] table,
                 int64_t fallback) noexcept nogil:
    cdef Py_ssize_t n = q.shape[0]
    cdef Py_ssize_t n_small = 0, n_large = 0, i, k
    cdef int64_t s, big, j
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
        table[s] = (_threshold(q[s]) << 32) | <uint64_t>big
        q[big] = (q[big] + q[s]) - 1.0
        if q[big] < 1.0:
            n_large -= 1
            work[n_small] = big
            n_small += 1
    for k in range(n_large):
        j = work[n - 1 - k]
        table[j] = (LOW32 << 32) | <uint64_t>j
    for k in range(n_small):
        s = work[k]
        if q[s] >= 0.5:
            table[s] = (LOW32 << 32) | <uint64_t>s
        else:
            table[s] = (_threshold(q[s]) << 32) | <uint64_t>fallback


def alias_build(double[::1] scaled, int64_t[::1] work, uint64_t[::1] table, fallback):
    cdef int64_t fb = fallback
    with nogil:
        _build(scaled, work, table, fb)


cdef void _alias_block(const uint64_t* table, uint64_t n, uint64_t base,
                       int64_t* out, Py_ssize_t lo0, Py_ssize_t hi0) noexcept nogil:
    cdef uint64_t columns[CHUNK]
    cdef uint64_t fractions[CHUNK]
    cdef Py_ssize_t lo, hi, i, k, count
    cdef uint64_t r, u, column, entry, alias, keep
    lo = lo0
    while lo < hi0:
        count = hi0 - lo
        if count > CHUNK:
            count = CHUNK
        # pass 1: random column and fraction of each draw (pure arithmetic)
        for k in range(count):
            r = _splitmix(base + (<uint64_t>(lo + k) + 1) * GOLDEN)
            u = (r >> 32) * n + (((r & LOW32) * n) >> 32)
            columns[k] = u >> 32
            fractions[k] = u & LOW32
            # start the table load now: by pass 2 it is (mostly) in cache,
            # which keeps the draws fast when other processes crowd the L3
            FSM_PREFETCH(&table[u >> 32])
        # pass 2: independent table loads, many in flight, branch-free select
        for k in range(count):
            column = columns[k]
            entry = table[column]
            keep = <uint64_t>(fractions[k] < (entry >> 32))
            alias = entry & LOW32
            out[lo + k] = <int64_t>(alias ^ ((column ^ alias) & (<uint64_t>0 - keep)))
        lo += count


def alias_draw(const uint64_t[::1] table, key, start, int64_t[::1] out, int n_threads=1):
    cdef Py_ssize_t m = out.shape[0]
    cdef uint64_t n = table.shape[0]
    cdef uint64_t base = <uint64_t>key + <uint64_t>start * GOLDEN
    cdef Py_ssize_t n_blocks = (m + BLOCK - 1) // BLOCK, b
    cdef const uint64_t* table_ptr = &table[0]
    cdef int64_t* out_ptr = &out[0]
    if m == 0:
        return
    if n_threads < 1:
        n_threads = 1
    if n_threads == 1 or n_blocks == 1:
        with nogil:
            _alias_block(table_ptr, n, base, out_ptr, 0, m)
        return
    for b in prange(n_blocks, nogil=True, num_threads=n_threads, schedule="static"):
        _alias_block(table_ptr, n, base, out_ptr, b * BLOCK, min((b + 1) * BLOCK, m))


def uniform_draw(num_classes, key, start, int64_t[::1] out, int n_threads=1):
    cdef Py_ssize_t m = out.shape[0], i
    cdef uint64_t n = num_classes
    cdef uint64_t base = <uint64_t>key + <uint64_t>start * GOLDEN
    cdef uint64_t r, u
    if n_threads < 1:
        n_threads = 1
    for i in prange(m, nogil=True, num_threads=n_threads, schedule="static",
                    chunksize=BLOCK):
        r = _splitmix(base + (<uint64_t>i + 1) * GOLDEN)
        u = (r >> 32) * n + (((r & LOW32) * n) >> 32)
        out[i] = <int64_t>(u >> 32)


def loguniform_draw(num_classes, double log_range, key, start, int64_t[::1] out,
                    int n_threads=1):
    cdef Py_ssize_t m = out.shape[0], i
    cdef int64_t last = <int64_t>num_classes - 1
    cdef uint64_t base = <uint64_t>key + <uint64_t>start * GOLDEN
    cdef uint64_t r
    cdef int64_t k
    cdef double x
    if n_threads < 1:
        n_threads = 1
    for i in prange(m, nogil=True, num_threads=n_threads, schedule="static",
                    chunksize=BLOCK):
        r = _splitmix(base + (<uint64_t>i + 1) * GOLDEN)
        x = <double>(r >> 11) * INV53
        k = <int64_t>exp(x * log_range) - 1
        if k > last:
            k = last
        if k < 0:
            k = 0
        out[i] = k


def warmup():
    """Nothing to compile."""
