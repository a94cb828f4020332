/*
 * fsm_kernels.h -- the C core of fastsoftmax's Cython backend.
 *
 * Layout of the sources:
 *   fsm_kernels.h  this file: configuration, ISA selection, public entry points
 *   fsm_isa.h      per instruction set: vector types, exp, streaming stores;
 *                  includes fsm_body.h once per float type
 *   fsm_body.h     the kernels, generic over the float type (T) and the
 *                  vector width
 *
 * The kernels are compiled once per instruction set (baseline x86-64 SSE2,
 * AVX2+FMA, AVX-512F) with `#pragma GCC target` sections, and the entry
 * points dispatch on the CPU at run time (fsm_init).  Same idea as GCC's
 * target_clones, but done by hand so that each version can also use its own
 * vector width and streaming-store instruction.  Other compilers (clang,
 * non-x86) get the baseline version only.
 *
 * Everything is plain arithmetic on GCC vector extensions: no -ffast-math,
 * NaN and infinities keep their IEEE meaning, subnormals are produced.
 */
#ifndef FSM_KERNELS_H
#define FSM_KERNELS_H

#include <stdint.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define FSM_MULTI_ISA 1
#endif
#if defined(__SSE2__) || defined(FSM_MULTI_ISA)
#include <immintrin.h>
#define FSM_X86 1
#endif

#if defined(__GNUC__) && !defined(__clang__)
/* the vector helpers are always inlined: no ABI is ever crossed */
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

#define FSM_CAT_(a, b) a##b
#define FSM_CAT(a, b) FSM_CAT_(a, b)
#define FSM_INLINE static inline __attribute__((always_inline))

/* ------------------------------------------------------------------------ */
/* Tuning knobs (runtime variables so that they can be explored from tests   */
/* and benchmarks; results never depend on the ones marked "speed only").   */
typedef struct {
    /* rows longer than this many bytes use the two-read "long row"
       algorithm (chunk partials); shorter ones are kept in cache.  Changes
       results in the last bits: fixed, never depends on the thread count. */
    ptrdiff_t long_row_bytes;
    /* fixed chunk length (elements) of the long-row algorithm */
    ptrdiff_t chunk;
    /* speed only: below this many elements in a call, no OpenMP region */
    ptrdiff_t par_min_elems;
    /* speed only: streaming stores when the output has at least this many
       bytes (0 = never) */
    ptrdiff_t nt_min_bytes;
    /* speed only: softmax rows of at least this many bytes go through a
       per-thread scratch row (kept in cache) instead of `out` */
    ptrdiff_t scratch_min_bytes;
    /* speed only: column kernel block width (elements, a multiple of 16)
       and row-group height */
    ptrdiff_t col_block;
    ptrdiff_t col_group;
    /* speed only: softmax and log_softmax rows of at most this many bytes
       (and at least FSM_SM_PIPE_K elements) go through a pipeline over rows
       (rows_sm_piped, rows_log_piped; 0 = never) */
    ptrdiff_t sm_pipe_bytes;
} fsm_config_t;

static fsm_config_t fsm_cfg = {
    1 << 20,        /* long_row_bytes */
    1 << 14,        /* chunk */
    1 << 15,        /* par_min_elems */
    (ptrdiff_t)16 << 20, /* nt_min_bytes */
    4096,           /* scratch_min_bytes */
    2048,           /* col_block (at most; see softmax_cols) */
    8,              /* col_group */
    256 << 10,      /* sm_pipe_bytes */
};

#define FSM_MAX_COL_BLOCK 2048
#define FSM_MAX_COL_GROUP 8

/* instruction-set levels */
#define FSM_ISA_BASE 0
#define FSM_ISA_AVX2 1
#define FSM_ISA_AVX512 2
static int fsm_isa_level = FSM_ISA_BASE;
static int fsm_isa_max = FSM_ISA_BASE;

static void fsm_init(void)
{
#ifdef FSM_MULTI_ISA
    __builtin_cpu_init();
    int lvl = FSM_ISA_BASE;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        lvl = FSM_ISA_AVX2;
    if (lvl == FSM_ISA_AVX2 && __builtin_cpu_supports("avx512f"))
        lvl = FSM_ISA_AVX512;
    fsm_isa_max = lvl;
    fsm_isa_level = lvl;
#endif
}

/* Set the level (for tests); returns the level in use. */
static int fsm_set_isa(int level)
{
    if (level >= FSM_ISA_BASE && level <= fsm_isa_max)
        fsm_isa_level = level;
    return fsm_isa_level;
}

static int fsm_num_threads_for(int n_threads, ptrdiff_t units, ptrdiff_t elems)
{
#ifdef _OPENMP
    if (n_threads <= 1 || units <= 1 || elems < fsm_cfg.par_min_elems)
        return 1;
    return n_threads < units ? n_threads : (int)units;
#else
    (void)units; (void)elems; (void)n_threads;
    return 1;
#endif
}

#ifdef _OPENMP
/* this thread's rows [*i0, *i1) of n in a parallel region: the partition of
   omp for schedule(static) */
static inline void fsm_static_rows(ptrdiff_t n, ptrdiff_t *i0, ptrdiff_t *i1)
{
    const ptrdiff_t t = omp_get_thread_num(), nt = omp_get_num_threads();
    const ptrdiff_t q = n / nt, r = n % nt;
    *i0 = t * q + (t < r ? t : r);
    *i1 = *i0 + q + (t < r);
}
#endif

/* ------------------------------------------------------------------------ */
/* Per-ISA instantiation                                                     */

#define FSM_ISA base
#ifdef FSM_X86
#define FSM_VB 16
#else
#define FSM_VB 32
#endif
#include "fsm_isa.h"
#undef FSM_ISA
#undef FSM_VB

#ifdef FSM_MULTI_ISA
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define FSM_ISA avx2
#define FSM_VB 32
#include "fsm_isa.h"
#undef FSM_ISA
#undef FSM_VB
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")
#define FSM_ISA avx512
#define FSM_VB 64
#include "fsm_isa.h"
#undef FSM_ISA
#undef FSM_VB
#pragma GCC pop_options
#endif

/* ------------------------------------------------------------------------ */
/* Public entry points: dispatch on the instruction set.                     */

#ifdef FSM_MULTI_ISA
#define FSM_DISPATCH(name, sfx, args)                                        \
    switch (fsm_isa_level) {                                                 \
    case FSM_ISA_AVX512: return name##_##sfx##_avx512 args;                  \
    case FSM_ISA_AVX2: return name##_##sfx##_avx2 args;                      \
    default: return name##_##sfx##_base args;                                \
    }
#else
#define FSM_DISPATCH(name, sfx, args) return name##_##sfx##_base args;
#endif

#define FSM_ENTRY_POINTS(sfx, T)                                              \
static int fsm_softmax_rows_##sfx(const char *x, ptrdiff_t xs, char *out,     \
        ptrdiff_t os, ptrdiff_t n, ptrdiff_t k, int is_log, int n_threads)    \
{ FSM_DISPATCH(softmax_rows, sfx, (x, xs, out, os, n, k, is_log, n_threads)) } \
static int fsm_softmax_cols_##sfx(const char *x, ptrdiff_t xs0,               \
        ptrdiff_t xs1, char *out, ptrdiff_t os0, ptrdiff_t os1,               \
        ptrdiff_t outer, ptrdiff_t k, ptrdiff_t inner, int is_log,            \
        int n_threads)                                                        \
{ FSM_DISPATCH(softmax_cols, sfx, (x, xs0, xs1, out, os0, os1, outer, k,      \
                                   inner, is_log, n_threads)) }               \
static void fsm_exp_##sfx(const T *x, T *out, ptrdiff_t n, int np)            \
{ FSM_DISPATCH(exp_array, sfx, (x, out, n, np)) }                             \
static int fsm_ce_index_rows_##sfx(const char *z, ptrdiff_t zs,               \
        ptrdiff_t n, ptrdiff_t C, const int64_t *target, const double *w,     \
        int64_t ignore_index, double eps, double grad_scale, double *loss,    \
        char *grad, ptrdiff_t gs, int n_threads)                              \
{ FSM_DISPATCH(ce_index_rows, sfx, (z, zs, n, C, target, w, ignore_index,     \
                                    eps, grad_scale, loss, grad, gs,          \
                                    n_threads)) }                             \
static int fsm_ce_prob_rows_##sfx(const char *z, ptrdiff_t zs,                \
        ptrdiff_t n, ptrdiff_t C, const char *t, ptrdiff_t ts,                \
        const double *w, double eps, double grad_scale, double *loss,         \
        char *grad, ptrdiff_t gs, int n_threads)                              \
{ FSM_DISPATCH(ce_prob_rows, sfx, (z, zs, n, C, t, ts, w, eps, grad_scale,    \
                                   loss, grad, gs, n_threads)) }

FSM_ENTRY_POINTS(f32, float)
FSM_ENTRY_POINTS(f64, double)

#endif /* FSM_KERNELS_H */
