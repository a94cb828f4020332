/*
 * fsm_sampled_body.h -- fsm_sampled_step for one float type; included by
 * fsm_sampled.h with T, FSM_SFX, FSM_GEMM_T and FSM_T_LOWEST defined.
 */
#define SFN(name) FSM_CAT(FSM_CAT(name, _), FSM_SFX)

/* row-major C (m x n, ldc) = op(A) (m x k) @ op(B) (k x n), A and B stored
   row-major with leading dimensions lda, ldb ('T': stored transposed),
   through the column-major gemm: C^T = op(B)^T op(A)^T */
static void SFN(fsm_rm_gemm)(FSM_GEMM_T gemm, char ta, char tb, int m, int n, int k,
                             const T *A, int lda, const T *B, int ldb, T *C, int ldc)
{
    T one = 1, zero = 0;
    gemm(&tb, &ta, &n, &m, &k, &one, (T *)B, &ldb, (T *)A, &lda, &zero, C, &ldc);
}

/* x . w over n elements, summed in double in 8 interleaved partial sums */
static double SFN(fsm_dot)(const T *x, const T *w, ptrdiff_t n)
{
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += (double)x[i + j] * (double)w[i + j];
    for (; i < n; i++) acc[i & 7] += (double)x[i] * (double)w[i];
    return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
}

/* one chunk of rows [r0, r1): steps 2-8 of fsm_sampled.h; 0 or a CE error */
static int SFN(fsm_sampled_chunk)(const fsm_sampled_args *a, ptrdiff_t c)
{
    FSM_GEMM_T gemm = (FSM_GEMM_T)a->gemm;
    const ptrdiff_t r0 = a->row_bounds[c], r1 = a->row_bounds[c + 1], R = r1 - r0;
    const ptrdiff_t nt = a->num_true, S = a->num_sampled, D = a->dim, K1 = D + 1;
    const ptrdiff_t width = nt + S;
    if (R <= 0) return 0;
    const T *x = (const T *)a->x + r0 * D;
    T *xa = (T *)a->x_aug + r0 * K1;
    T *z = (T *)a->logits + r0 * width;
    const T *w_aug = (const T *)a->w_aug;
    const int64_t *ids = a->true_ids + r0 * nt;
    const T *bias_true = (const T *)a->bias_true + r0 * nt;
    T *gx = (T *)a->grad_x + r0 * D;

    for (ptrdiff_t r = 0; r < R; r++) {
        memcpy(xa + r * K1, x + r * D, (size_t)D * sizeof(T));
        xa[r * K1 + D] = 1;
    }
    /* 2. candidate logits, the bias as the last term of each dot product */
    SFN(fsm_rm_gemm)(gemm, 'N', 'T', (int)R, (int)S, (int)K1, xa, (int)K1, w_aug, (int)K1,
                     z + nt, (int)width);
    /* 3. true logits, then the accidental hits floored (a finite floor:
       exp() gives 0, and 0 * (lse - logit) stays 0) */
    for (ptrdiff_t r = 0; r < R; r++)
        for (ptrdiff_t t = 0; t < nt; t++) {
            const T *wr = (const T *)(a->w + ids[r * nt + t] * a->ws);
            z[r * width + t] = (T)SFN(fsm_dot)(x + r * D, wr, D) + bias_true[r * nt + t];
        }
    for (ptrdiff_t h = fsm_lower_bound(a->hit_rows, a->n_hits, r0);
         h < a->n_hits && a->hit_rows[h] < r1; h++)
        z[(a->hit_rows[h] - r0) * width + nt + a->hit_cols[h]] = FSM_T_LOWEST;
    /* 4. cross-entropy against the true columns, gradient in place */
    const ptrdiff_t zs = width * (ptrdiff_t)sizeof(T);
    int rc = nt == 1
        ? SFN(fsm_ce_index_rows)((const char *)z, zs, R, width, a->ce_index + r0, NULL, -100,
                                 0.0, a->grad_scale, a->row_loss + r0, (char *)z, zs, 1)
        : SFN(fsm_ce_prob_rows)((const char *)z, zs, R, width,
                                (const char *)((const T *)a->ce_prob + r0 * width), zs, NULL,
                                0.0, a->grad_scale, a->row_loss + r0, (char *)z, zs, 1);
    if (rc < 0) return rc;
    /* 5. inputs gradient */
    SFN(fsm_rm_gemm)(gemm, 'N', 'N', (int)R, (int)D, (int)S, z + nt, (int)width, w_aug,
                     (int)K1, gx, (int)D);
    for (ptrdiff_t r = 0; r < R; r++)
        for (ptrdiff_t t = 0; t < nt; t++) {
            const T *wr = (const T *)(a->w + ids[r * nt + t] * a->ws);
            const T gt = z[r * width + t];
            T *gr = gx + r * D;
            for (ptrdiff_t d = 0; d < D; d++) gr[d] += gt * wr[d];
        }
    /* 6. a true id that is also a candidate: its gradient joins that column */
    for (ptrdiff_t f = fsm_lower_bound(a->fold_rows, a->n_fold, r0);
         f < a->n_fold && a->fold_rows[f] < r1; f++) {
        T *zr = z + (a->fold_rows[f] - r0) * width;
        zr[a->fold_cols[f]] += zr[a->fold_t[f]];
    }
    /* 7. the other true ids' terms */
    T *rest = (T *)a->rest_out;
    for (ptrdiff_t j = fsm_lower_bound(a->rest_pos, a->n_rest, r0 * nt);
         j < a->n_rest && a->rest_pos[j] < r1 * nt; j++) {
        const ptrdiff_t p = a->rest_pos[j] - r0 * nt, r = p / nt;
        const T coef = z[r * width + p % nt];
        T *out = rest + j * K1;
        for (ptrdiff_t d = 0; d < D; d++) out[d] = coef * x[r * D + d];
        out[D] = coef;
    }
    /* 8. this chunk's share of the candidates' weights and bias gradient */
    T *dst = c == 0 ? (T *)a->cand : (T *)a->shares + (c - 1) * S * K1;
    SFN(fsm_rm_gemm)(gemm, 'T', 'N', (int)S, (int)K1, (int)R, z + nt, (int)width, xa,
                     (int)K1, dst, (int)K1);
    return 0;
}

/* step 1 for the candidates [i0, i1): their rows of weights (bound by the
   latency of rows at random places of a large matrix: split it) */
static void SFN(fsm_sampled_gather)(const fsm_sampled_args *a, ptrdiff_t i0, ptrdiff_t i1)
{
    const ptrdiff_t D = a->dim, K1 = D + 1;
    for (ptrdiff_t i = i0; i < i1; i++)
        memcpy((T *)a->w_aug + i * K1, a->w + a->sampled[i] * a->ws, (size_t)D * sizeof(T));
}

/* claim and run items of the step until none is left (any number of
   threads, each without the GIL) */
static void SFN(fsm_sampled_work)(const fsm_sampled_args *a, fsm_sampled_state *st)
{
    const ptrdiff_t S = a->num_sampled, ng = st->n_gather;
    for (;;) {
        const ptrdiff_t i = __atomic_fetch_add(&st->next, 1, __ATOMIC_ACQ_REL);
        if (i >= st->n_items) return;
        if (i < ng) {
            SFN(fsm_sampled_gather)(a, S * i / ng, S * (i + 1) / ng);
            __atomic_fetch_add(&st->gathered, 1, __ATOMIC_ACQ_REL);
        } else {
            fsm_wait_count(&st->gathered, ng);
            const int rc = SFN(fsm_sampled_chunk)(a, i - ng);
            if (rc) __atomic_store_n(&st->err, rc, __ATOMIC_RELAXED);
        }
        __atomic_fetch_add(&st->done, 1, __ATOMIC_ACQ_REL);
    }
}

#undef SFN
