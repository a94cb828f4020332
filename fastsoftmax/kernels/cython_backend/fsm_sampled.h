/*
 * fsm_sampled.h -- the chunked step of a sampled softmax loss with gradients,
 * in C, so that the chunks run on an OpenMP team without the GIL.
 *
 * fastsoftmax.sampled prepares everything that depends only on the ids (the
 * candidates' bias column, the true ids' biases, the accidental hits, the
 * true ids that are also candidates, the other true ids' places) and hands
 * the rest to fsm_sampled_step_{f32,f64}:
 *
 *   1. the candidates' rows of weights are gathered (rows split between the
 *      threads), then, for each chunk of rows of the batch (one thread each):
 *   2. candidate logits = [x, 1] @ [W_s, b_s]^T            (BLAS gemm)
 *   3. true logits = x . W[y] + b_y (dot products), accidental hits floored
 *   4. fused softmax cross-entropy, the gradient in place of the logits
 *   5. inputs gradient = g_s @ W_s (gemm) + sum_t g_t W[y_t]
 *   6. a true id that is also a candidate adds its gradient to that column
 *   7. the other true ids' gradient terms g_t [x, 1] to their rows
 *   8. the chunk's share of the candidates' [weights, bias] gradient
 *      g_s^T @ [x, 1]                                       (gemm)
 *
 * The caller's threads share the items (the gather in parts, then the
 * chunks) without the GIL, through fsm_sampled_work / fsm_sampled_wait.  The chunks depend only on the shape and write
 * disjoint outputs, so the result does not depend on the thread count; the
 * caller adds the shares up in chunk order.  The gemm is a Fortran-interface ?gemm (SciPy's
 * scipy.linalg.cython_blas, whose OpenBLAS the caller keeps to one thread).
 */
#ifndef FSM_SAMPLED_H
#define FSM_SAMPLED_H

#include "fsm_kernels.h"
#include <float.h>
#ifdef _WIN32
#include <windows.h>
static void fsm_yield(void) { SwitchToThread(); }
static void fsm_nap_us(int us) { (void)us; Sleep(0); }
#else
#include <sched.h>
#include <time.h>
static void fsm_yield(void) { sched_yield(); }
static void fsm_nap_us(int us)
{
    struct timespec t = {0, (long)us * 1000L};
    nanosleep(&t, NULL);
}
#endif

typedef void (*fsm_sgemm_t)(char *, char *, int *, int *, int *, float *, float *, int *,
                            float *, int *, float *, float *, int *);
typedef void (*fsm_dgemm_t)(char *, char *, int *, int *, int *, double *, double *, int *,
                            double *, int *, double *, double *, int *);

typedef struct {
    void *gemm;                   /* fsm_sgemm_t or fsm_dgemm_t */
    ptrdiff_t batch, num_true, num_sampled, dim;
    const char *w;                /* weights: rows of dim contiguous elements */
    ptrdiff_t ws;                 /* its row stride, bytes */
    const int64_t *sampled;       /* (num_sampled,) candidate ids */
    void *w_aug;                  /* (num_sampled, dim + 1): rows gathered here, the
                                     bias column already set */
    const void *x;                /* (batch, dim) C-contiguous */
    void *x_aug;                  /* (batch, dim + 1) scratch */
    const int64_t *true_ids;      /* (batch * num_true,) */
    const void *bias_true;        /* (batch * num_true,) bias (- log q) of each true id */
    const int64_t *hit_rows, *hit_cols;   /* accidental hits, sorted by row */
    ptrdiff_t n_hits;
    void *logits;                 /* (batch, num_true + num_sampled) */
    const int64_t *ce_index;      /* (batch,) zeros, when num_true == 1 */
    const void *ce_prob;          /* (batch, width) target probabilities, num_true > 1 */
    double grad_scale;
    double *row_loss;             /* (batch,) */
    void *grad_x;                 /* (batch, dim) */
    const int64_t *fold_rows, *fold_t, *fold_cols;   /* sorted by row */
    ptrdiff_t n_fold;
    const int64_t *rest_pos;      /* flat (row, t) positions of the other true ids, ascending */
    ptrdiff_t n_rest;
    void *rest_out;               /* (>= n_rest, dim + 1) */
    void *cand;                   /* (num_sampled, dim + 1): chunk 0's share */
    void *shares;                 /* (n_rows - 1, num_sampled, dim + 1): the others' */
    const int64_t *row_bounds;    /* (n_rows + 1,) */
    ptrdiff_t n_rows;
} fsm_sampled_args;

/* The items of a step: n_gather parts of the gather, then n_rows chunks.
   Threads claim them from one counter (fsm_sampled_work_*); a chunk starts
   once every part of the gather is done; fsm_sampled_wait returns once
   every item is.  A thread that comes late finds nothing left to do, and a
   descheduled one holds up at most the item it took. */
typedef struct {
    ptrdiff_t n_gather, n_items;
    ptrdiff_t next, gathered, done;
    int err;
} fsm_sampled_state;

/* wait until *counter >= target: yield at first, then sleep in 20 us steps */
static void fsm_wait_count(ptrdiff_t *counter, ptrdiff_t target)
{
    for (int spin = 0; __atomic_load_n(counter, __ATOMIC_ACQUIRE) < target; spin++) {
        if (spin < 200) {
            fsm_yield();
        } else {
            fsm_nap_us(20);
        }
    }
}

static void fsm_sampled_wait(fsm_sampled_state *st)
{
    fsm_wait_count(&st->done, st->n_items);
}

/* first index i in [0, n) with a[i] >= v (a sorted), else n */
static ptrdiff_t fsm_lower_bound(const int64_t *a, ptrdiff_t n, int64_t v)
{
    ptrdiff_t lo = 0, hi = n;
    while (lo < hi) {
        ptrdiff_t mid = lo + (hi - lo) / 2;
        if (a[mid] < v) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

#define T float
#define FSM_SFX f32
#define FSM_GEMM_T fsm_sgemm_t
#define FSM_T_LOWEST (-FLT_MAX)
#include "fsm_sampled_body.h"
#undef T
#undef FSM_SFX
#undef FSM_GEMM_T
#undef FSM_T_LOWEST

#define T double
#define FSM_SFX f64
#define FSM_GEMM_T fsm_dgemm_t
#define FSM_T_LOWEST (-DBL_MAX)
#include "fsm_sampled_body.h"
#undef T
#undef FSM_SFX
#undef FSM_GEMM_T
#undef FSM_T_LOWEST

#endif /* FSM_SAMPLED_H */
