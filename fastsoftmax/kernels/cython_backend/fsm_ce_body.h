/*
 * fsm_ce_body.h -- fused softmax cross-entropy kernels (included by
 * fsm_body.h; T, FN, VT... as there).  Formulas: fastsoftmax.kernels.
 *
 * Per row: pass 1 max (the only read of the row from memory), pass 2 the
 * sum of exp(z - max) (the exponentials kept in a per-thread scratch row
 * when a gradient is wanted), then the loss, then one write of the
 * gradient from the scratch row.  `grad` may be `logits` itself: every
 * read of z happens before the row's gradient is written.
 */

/* sum over c of w[c] * (lse - z[c]) in double (w NULL: all ones) */
static double FN(ce_smooth_sum)(const T *z, const double *w, ptrdiff_t C, double lse)
{
    ISA(vd) a0 = {0}, a1 = {0};
    ptrdiff_t i = 0;
    const ptrdiff_t hw = FSM_VB / sizeof(double);
#if FSM_F32
    for (; i + W <= C; i += W) {
        VT zv = FN(load)(z + i);
        ISA(vd) dl = lse - ISA(widen_lo)(zv), dh = lse - ISA(widen_hi)(zv);
        if (w) {
            ISA(vd) wl, wh;
            memcpy(&wl, w + i, sizeof wl);
            memcpy(&wh, w + i + hw, sizeof wh);
            dl *= wl;
            dh *= wh;
        }
        a0 += dl;
        a1 += dh;
    }
#else
    for (; i + W <= C; i += W) {
        ISA(vd) d = lse - FN(load)(z + i);
        if (w) {
            ISA(vd) wv;
            memcpy(&wv, w + i, sizeof wv);
            d *= wv;
        }
        a0 += d;
    }
    (void)hw;
#endif
    double s = FN(hsumd)(a0 + a1);
    for (; i < C; i++) s += (w ? w[i] : 1.0) * (lse - (double)z[i]);
    return s;
}

/* g[j] = e[j] * c1 - sub[j] (sub NULL: - sub0) for j < C */
static void FN(ce_grad_row)(const T *e, const T *sub, T sub0, T c1, T *g, ptrdiff_t C, int nt)
{
    ptrdiff_t i = 0;
#define FSM_CE_OP(j, v) ((v) * c1 - (sub ? FN(load)(sub + (j)) : FN(splat)(sub0)))
#if FSM_HAVE_STREAM
    if (nt && C >= 4 * W && ((uintptr_t)g % sizeof(T)) == 0) {
        ptrdiff_t head = (ptrdiff_t)(((FSM_VB - (uintptr_t)g % FSM_VB) % FSM_VB) / sizeof(T));
        for (; i < head; i++) g[i] = e[i] * c1 - (sub ? sub[i] : sub0);
        for (; i + W <= C; i += W) STREAM(g + i, FSM_CE_OP(i, FN(load)(e + i)));
    }
#else
    (void)nt;
#endif
    for (; i + W <= C; i += W) FN(store)(g + i, FSM_CE_OP(i, FN(load)(e + i)));
    for (; i < C; i++) g[i] = e[i] * c1 - (sub ? sub[i] : sub0);
#undef FSM_CE_OP
}

static int FN(ce_index_rows)(const char *z, ptrdiff_t zs, ptrdiff_t n, ptrdiff_t C,
                             const int64_t *target, const double *w, int64_t ignore_index,
                             double eps, double grad_scale, double *loss,
                             char *grad, ptrdiff_t gs, int n_threads)
{
    /* never index out of bounds, whatever the caller checked */
    for (ptrdiff_t i = 0; i < n; i++)
        if (target[i] != ignore_index && (target[i] < 0 || target[i] >= C)) return -3;
    const double epsC = eps / (double)C;
    double Wsum = 0.0;
    if (w) for (ptrdiff_t c = 0; c < C; c++) Wsum += w[c];
    else Wsum = (double)C;
    /* sub[j] = eps/C * w[j] * grad_scale in T (a constant without weights) */
    T *sub = NULL;
    const T sub0 = (T)(epsC * grad_scale);
    if (grad && w && eps > 0) {
        sub = FN(alloc_row)(C);
        if (!sub) return -1;
        for (ptrdiff_t c = 0; c < C; c++) sub[c] = (T)(epsC * w[c] * grad_scale);
    }
    const int nt = grad && fsm_cfg.nt_min_bytes > 0
                   && n * C * (ptrdiff_t)sizeof(T) >= fsm_cfg.nt_min_bytes;
    const int nth = fsm_num_threads_for(n_threads, n, n * C);
    int err = 0;
    (void)nth;
#ifdef _OPENMP
#pragma omp parallel num_threads(nth) if (nth > 1) reduction(|: err)
#endif
    {
        T *e = grad ? FN(alloc_row)(C) : NULL;
        if (grad && !e) err = 1;
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (ptrdiff_t i = 0; i < n; i++) {
            if (grad && !e) continue;
            const T *zr = (const T *)(z + i * zs);
            T *gr = grad ? (T *)(grad + i * gs) : NULL;
            const int64_t y = target[i];
            if (y == ignore_index) {
                loss[i] = 0.0;
                if (gr) memset(gr, 0, (size_t)C * sizeof(T));
                continue;
            }
            const T m = FN(row_max)(zr, C);
            const T shift = FN(is_finite)(m) ? m : 0;
            const int np = FN(np_ok)(m, shift);
            /* the next row towards L2 while this one computes */
            const char *pf = C * (ptrdiff_t)sizeof(T) >= 4096 && i + 1 < n ? z + (i + 1) * zs : NULL;
            const double s = gr ? (pf ? FN(row_exp_sum_store_hp_pf)(zr, e, C, shift, np, pf)
                                      : FN(row_exp_sum_store_hp)(zr, e, C, shift, np))
                                : (pf ? FN(row_exp_sum_hp_pf)(zr, C, shift, np, pf, NULL)
                                      : FN(row_exp_sum_hp)(zr, C, shift, np));
            const double lse = (double)shift + log(s);
            const double wy = w ? w[y] : 1.0;
            double L = (1.0 - eps) * wy * (lse - (double)zr[y]);
            if (eps > 0) L += epsC * FN(ce_smooth_sum)(zr, w, C, lse);
            loss[i] = L;
            if (gr) {
                const double inv = 1.0 / s;
                const double A = (1.0 - eps) * wy + epsC * Wsum;
                const double py = (double)e[y] * inv;
                FN(ce_grad_row)(e, sub, sub0, (T)(inv * A * grad_scale), gr, C, nt);
                gr[y] = (T)(grad_scale * (py * A - epsC * wy - (1.0 - eps) * wy));
            }
        }
        free(e);
        if (nt) ISA(stream_fence)();
    }
    free(sub);
    return err ? -1 : 0;
}

/* sums over c of wt[c] and of wt[c] * (lse - z[c]), wt = w * (t*(1-eps) + eps/C) */
static void FN(ce_prob_sums)(const T *z, const T *t, const double *w, ptrdiff_t C,
                             double lse, double eps, double *sum_wt, double *sum_loss)
{
    const double keep = 1.0 - eps, add = eps / (double)C;
    ISA(vd) sw0 = {0}, sw1 = {0}, sl0 = {0}, sl1 = {0};
    ptrdiff_t i = 0;
#if FSM_F32
    const ptrdiff_t hw = FSM_VB / sizeof(double);
    for (; i + W <= C; i += W) {
        VT zv = FN(load)(z + i), tv = FN(load)(t + i);
        ISA(vd) tl = ISA(widen_lo)(tv), th = ISA(widen_hi)(tv);
        if (eps > 0) { tl = tl * keep + add; th = th * keep + add; }
        if (w) {
            ISA(vd) wl, wh;
            memcpy(&wl, w + i, sizeof wl);
            memcpy(&wh, w + i + hw, sizeof wh);
            tl *= wl;
            th *= wh;
        }
        sw0 += tl;
        sw1 += th;
        sl0 += tl * (lse - ISA(widen_lo)(zv));
        sl1 += th * (lse - ISA(widen_hi)(zv));
    }
#else
    for (; i + W <= C; i += W) {
        ISA(vd) tv = FN(load)(t + i);
        if (eps > 0) tv = tv * keep + add;
        if (w) {
            ISA(vd) wv;
            memcpy(&wv, w + i, sizeof wv);
            tv *= wv;
        }
        sw0 += tv;
        sl0 += tv * (lse - FN(load)(z + i));
    }
#endif
    double SW = FN(hsumd)(sw0 + sw1), SL = FN(hsumd)(sl0 + sl1);
    for (; i < C; i++) {
        double tt = (double)t[i];
        if (eps > 0) tt = tt * keep + add;
        if (w) tt *= w[i];
        SW += tt;
        SL += tt * (lse - (double)z[i]);
    }
    *sum_wt = SW;
    *sum_loss = SL;
}

static int FN(ce_prob_rows)(const char *z, ptrdiff_t zs, ptrdiff_t n, ptrdiff_t C,
                            const char *t, ptrdiff_t ts, const double *w, double eps,
                            double grad_scale, double *loss, char *grad, ptrdiff_t gs,
                            int n_threads)
{
    const T keep = (T)(1.0 - eps), add = (T)(eps / (double)C), scale = (T)grad_scale;
    T *wT = NULL;
    if (grad && w) {
        wT = FN(alloc_row)(C);
        if (!wT) return -1;
        for (ptrdiff_t c = 0; c < C; c++) wT[c] = (T)w[c];
    }
    const int nt = grad && fsm_cfg.nt_min_bytes > 0
                   && n * C * (ptrdiff_t)sizeof(T) >= fsm_cfg.nt_min_bytes;
    const int nth = fsm_num_threads_for(n_threads, n, n * C);
    int err = 0;
    (void)nth;
#ifdef _OPENMP
#pragma omp parallel num_threads(nth) if (nth > 1) reduction(|: err)
#endif
    {
        T *e = grad ? FN(alloc_row)(C) : NULL;
        if (grad && !e) err = 1;
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (ptrdiff_t i = 0; i < n; i++) {
            if (grad && !e) continue;
            const T *zr = (const T *)(z + i * zs);
            const T *tr = (const T *)(t + i * ts);
            T *gr = grad ? (T *)(grad + i * gs) : NULL;
            const T m = FN(row_max)(zr, C);
            const T shift = FN(is_finite)(m) ? m : 0;
            const int np = FN(np_ok)(m, shift);
            const double s = gr ? FN(row_exp_sum_store_hp)(zr, e, C, shift, np)
                                : FN(row_exp_sum_hp)(zr, C, shift, np);
            const double lse = (double)shift + log(s);
            double SW, SL;
            FN(ce_prob_sums)(zr, tr, w, C, lse, eps, &SW, &SL);
            loss[i] = SL;
            if (gr) {
                /* g = scale * (p * SW - wt), p = e / s */
                const T c1 = (T)(SW / s);
                ptrdiff_t j = 0;
                for (; j + W <= C; j += W) {
                    VT tv = FN(load)(tr + j);
                    if (eps > 0) tv = tv * keep + add;
                    if (wT) tv *= FN(load)(wT + j);
                    FN(store)(gr + j, (FN(load)(e + j) * c1 - tv) * scale);
                }
                for (; j < C; j++) {
                    T tt = tr[j];
                    if (eps > 0) tt = tt * keep + add;
                    if (wT) tt *= wT[j];
                    gr[j] = (e[j] * c1 - tt) * scale;
                }
            }
        }
        free(e);
        if (nt) ISA(stream_fence)();
    }
    free(wT);
    return err ? -1 : 0;
}
