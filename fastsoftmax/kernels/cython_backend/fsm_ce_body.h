/* fsm_ce_body.h -- fused softmax cross-entropy kernels (see fsm_body.h). */
static int FN(ce_index_rows)(const char *z, ptrdiff_t zs, ptrdiff_t n, ptrdiff_t C,
                             const int64_t *target, const double *w, int64_t ignore_index,
                             double eps, double grad_scale, double *loss,
                             char *grad, ptrdiff_t gs, int n_threads)
{
    (void)z; (void)zs; (void)n; (void)C; (void)target; (void)w; (void)ignore_index;
    (void)eps; (void)grad_scale; (void)loss; (void)grad; (void)gs; (void)n_threads;
    return -2;
}
static int FN(ce_prob_rows)(const char *z, ptrdiff_t zs, ptrdiff_t n, ptrdiff_t C,
                            const char *t, ptrdiff_t ts, const double *w, double eps,
                            double grad_scale, double *loss, char *grad, ptrdiff_t gs,
                            int n_threads)
{
    (void)z; (void)zs; (void)n; (void)C; (void)t; (void)ts; (void)w;
    (void)eps; (void)grad_scale; (void)loss; (void)grad; (void)gs; (void)n_threads;
    return -2;
}
