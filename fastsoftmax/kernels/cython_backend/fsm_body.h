/*
 * fsm_body.h -- the kernels, generic over the float type.
 * Included by fsm_isa.h with FSM_T (float or double), FSM_F32 (1 for float)
 * and FSM_SFX (f32 / f64) defined.  Every name gets the suffix
 * _<f32|f64>_<isa> through FN().
 */
#define T FSM_T
#define FN(name) FSM_CAT(name, FSM_CAT(_, FSM_CAT(FSM_SFX, FSM_CAT(_, FSM_ISA))))
#define W ((ptrdiff_t)(FSM_VB / sizeof(T)))
#if FSM_F32
#define VT ISA(vf)
#define VI ISA(vi)
#define VEXP ISA(exp_vf)
#define VEXPN ISA(exp_vf_np)
#define STREAM ISA(stream_vf)
#else
#define VT ISA(vd)
#define VI ISA(vl)
#define VEXP ISA(exp_vd)
#define VEXPN ISA(exp_vd_np)
#define STREAM ISA(stream_vd)
#endif

/* ---- small vector helpers ---------------------------------------------- */

FSM_INLINE VT FN(load)(const T *p) { VT v; memcpy(&v, p, sizeof v); return v; }
FSM_INLINE void FN(store)(T *p, VT v) { memcpy(p, &v, sizeof v); }
FSM_INLINE VT FN(splat)(T c) { return (VT){0} + c; }
FSM_INLINE VT FN(sel)(VI m, VT a, VT b) { return (VT)((m & (VI)a) | (~m & (VI)b)); }
/* max that ignores NaN in b (NaN rows are caught later by the sum) */
#if FSM_F32
FSM_INLINE VT FN(vmax)(VT a, VT b) { return ISA(max_f)(a, b); }
FSM_INLINE int FN(any)(VI m) { return ISA(any_f)(m); }
#else
FSM_INLINE VT FN(vmax)(VT a, VT b) { return ISA(max_d)(a, b); }
FSM_INLINE int FN(any)(VI m) { return ISA(any_d)(m); }
#endif
/* the first r (0 <= r < W) elements of p, the other lanes set to fill; never
   touches p[r:] (masked loads where the ISA has them) */
FSM_INLINE VT FN(load_part)(const T *p, ptrdiff_t r, T fill)
{
#if FSM_F32
    return ISA(load_part_f)(p, r, fill);
#else
    return ISA(load_part_d)(p, r, fill);
#endif
}
FSM_INLINE void FN(store_part)(T *p, VT v, ptrdiff_t r)
{
#if FSM_F32
    ISA(store_part_f)(p, v, r);
#else
    ISA(store_part_d)(p, v, r);
#endif
}
/* sum of the lanes of a double vector, as a tree of halvings (3 shuffles
   and adds for 8 lanes instead of a chain of 7 dependent ones) */
FSM_INLINE double FN(hsumd)(ISA(vd) a)
{
    typedef ISA(vl) VLI;   /* shuffle masks (unused for 2 lanes) */
    (void)(VLI){0};
#if FSM_VB == 64
    a += __builtin_shuffle(a, (VLI){4, 5, 6, 7, 0, 1, 2, 3});
#endif
#if FSM_VB >= 32
    a += __builtin_shuffle(a, (VLI){2, 3, 0, 1});
#endif
    return a[0] + a[1];
}
FSM_INLINE int FN(is_finite)(T v) { return v - v == 0; }

/* Every lane = the max (allmax) or the sum (allsum) of the lanes of v, by
   log2(lanes) shuffle steps (no scalar round trip).  allmax: v NaN-free. */
#if FSM_F32
#define FSM_LANES_EQ(n) (FSM_VB / 4 == (n))
#else
#define FSM_LANES_EQ(n) (FSM_VB / 8 == (n))
#endif
#define FSM_XI2(s) 0 ^ (s), 1 ^ (s)
#define FSM_XI4(s) FSM_XI2(s), 2 ^ (s), 3 ^ (s)
#define FSM_XI8(s) FSM_XI4(s), 4 ^ (s), 5 ^ (s), 6 ^ (s), 7 ^ (s)
#define FSM_XI16(s) FSM_XI8(s), 8 ^ (s), 9 ^ (s), 10 ^ (s), 11 ^ (s), \
                    12 ^ (s), 13 ^ (s), 14 ^ (s), 15 ^ (s)
#if FSM_LANES_EQ(16)
#define FSM_XI(s) (VI){FSM_XI16(s)}
#define FSM_LANES_LOG2 4
#elif FSM_LANES_EQ(8)
#define FSM_XI(s) (VI){FSM_XI8(s)}
#define FSM_LANES_LOG2 3
#elif FSM_LANES_EQ(4)
#define FSM_XI(s) (VI){FSM_XI4(s)}
#define FSM_LANES_LOG2 2
#else
#define FSM_XI(s) (VI){FSM_XI2(s)}
#define FSM_LANES_LOG2 1
#endif
FSM_INLINE VT FN(allmax)(VT v)
{
#if FSM_LANES_LOG2 >= 4
    v = FN(vmax)(v, __builtin_shuffle(v, FSM_XI(8)));
#endif
#if FSM_LANES_LOG2 >= 3
    v = FN(vmax)(v, __builtin_shuffle(v, FSM_XI(4)));
#endif
#if FSM_LANES_LOG2 >= 2
    v = FN(vmax)(v, __builtin_shuffle(v, FSM_XI(2)));
#endif
    return FN(vmax)(v, __builtin_shuffle(v, FSM_XI(1)));
}
FSM_INLINE VT FN(allsum)(VT v)
{
#if FSM_LANES_LOG2 >= 4
    v += __builtin_shuffle(v, FSM_XI(8));
#endif
#if FSM_LANES_LOG2 >= 3
    v += __builtin_shuffle(v, FSM_XI(4));
#endif
#if FSM_LANES_LOG2 >= 2
    v += __builtin_shuffle(v, FSM_XI(2));
#endif
    return v + __builtin_shuffle(v, FSM_XI(1));
}
#undef FSM_XI
#undef FSM_LANES_LOG2
#undef FSM_LANES_EQ

/* ---- row passes ---------------------------------------------------------- */

/* max of x[0:k] (k >= 1), NaN ignored; -inf for an all -inf / NaN row.
   cols (when not NULL) gets the four accumulators of the main loop (before
   the tail): lane l of cols[j] is the max of x[i], i < k - k % (4 W),
   i % (4 W) == j W + l */
FSM_INLINE T FN(row_max_)(const T *x, ptrdiff_t k, VT *cols)
{
    const T ninf = -(T)INFINITY;
    VT m0 = FN(splat)(ninf), m1 = m0, m2 = m0, m3 = m0;
    ptrdiff_t i = 0;
    for (; i + 4 * W <= k; i += 4 * W) {
        m0 = FN(vmax)(m0, FN(load)(x + i));
        m1 = FN(vmax)(m1, FN(load)(x + i + W));
        m2 = FN(vmax)(m2, FN(load)(x + i + 2 * W));
        m3 = FN(vmax)(m3, FN(load)(x + i + 3 * W));
    }
    if (cols) {
        cols[0] = m0; cols[1] = m1; cols[2] = m2; cols[3] = m3;
    }
    for (; i + W <= k; i += W) m0 = FN(vmax)(m0, FN(load)(x + i));
    if (i < k) m1 = FN(vmax)(m1, FN(load_part)(x + i, k - i, ninf));
    /* the lanes by a shuffle tree (log2(lanes) steps), not one by one:
       the exponentials wait for this max */
    return FN(allmax)(FN(vmax)(FN(vmax)(m0, m1), FN(vmax)(m2, m3)))[0];
}
static inline T FN(row_max)(const T *x, ptrdiff_t k) { return FN(row_max_)(x, k, NULL); }

/* Sums of exponentials.  Softmax: float vectors are summed in float within
   blocks of at most FSM_SUM_BLOCK vectors (4 accumulators), and each
   block's sum is added in double: the rounding error of the float part is
   bounded by the block size (a few ulps of the block sum), not by the row
   length, and only one conversion to double is paid per block.  log_softmax
   and cross-entropy ("hp", high precision) need log(sum) to the last bits
   (their values near 0 cancel): every float vector is widened to double
   (hp = 1), or, for log_softmax of rows in cache, the float blocks leave
   out the max's exp(0) = 1, the one term that rounds the others away
   (hp = 2, row_exp_sum_log).  Double sums use the same code (the fold is a
   plain add). */
#define FSM_SUM_BLOCK 16
/* modes of map_row_ (below) */
#define FSM_MODE_SCALE 0
#define FSM_MODE_EXPSCALE 1
#define FSM_MODE_LOG 2
#define FSM_MODE_EXPSCALE_NP 3
#if FSM_F32
#define SUMD_DECL(a) ISA(vd) a##_lo = {0}, a##_hi = {0}
#define SUMD_FOLD(a, v) do { VT v_ = (v); a##_lo += ISA(widen_lo)(v_); \
                             a##_hi += ISA(widen_hi)(v_); } while (0)
#define SUMD_TOTAL(a) FN(hsumd)(a##_lo + a##_hi)
#else
#define SUMD_DECL(a) VT a = {0}
#define SUMD_FOLD(a, v) (a += (v))
#define SUMD_TOTAL(a) FN(hsumd)(a)
#endif

/* True when the exp of x - shift may use the branch-free exp for
   non-positive arguments: shift is the max m of the values (then x - m is
   <= 0, -inf or NaN, also for m = +-inf), or m = -inf (all values -inf or
   NaN) whatever the shift. */
FSM_INLINE int FN(np_ok)(T m, T shift) { return shift == m || m == -(T)INFINITY; }

#if FSM_F32
#define FSM_ADD_NE1(acc, cnt, e) ISA(add_ne1_f)(&(acc), &(cnt), (e))
#define FSM_ADD_NEG_BITS(acc, e, d) ISA(add_neg_bits_f)(&(acc), (e), (d))
#else
#define FSM_ADD_NE1(acc, cnt, e) ((void)0)
#define FSM_ADD_NEG_BITS(acc, e, d) 0u
#endif
/* sum of exp(x - shift) over x[0:k], in double; the exponentials are also
   written to dst[0:k] when `write` (dst may be x).  np: every x - shift is
   <= 0, -inf or NaN (see np_ok).  hp = 1: float exponentials summed in
   double one by one (see above).  hp = 2 (log_softmax of float rows, see
   row_exp_sum_log): float blocks as softmax's, except that the first
   accumulator and the tail leave out the exponentials equal to 1 and count
   them.  Accumulator j of the blocks takes vector (j + rot) % 4
   of each group of four (rot = 0 but for hp = 2). */
FSM_INLINE void FN(map_row_)(const T *src, T *dst, ptrdiff_t k, int mode, T a, T b, int nt);
/* A row's writing carried along another row's sum (the pipelines of
   rows_sm_piped and rows_log_piped): dst = src * a (log: 0, MODE_SCALE) or
   (src - b) - a (log: 1, MODE_LOG) over a row of the sum's length, with
   streaming stores if nt. */
typedef struct { const T *src; T *dst; T a, b; int log, nt; } FN(pw);
/* w (when not NULL): after each block of the sum, w's writing over the same
   elements (to the last whole 64-byte line of w->dst before them; the rest
   at the end): the previous row's writing while this row's exponentials
   compute.  It changes no arithmetic of the sum. */
FSM_INLINE double FN(row_exp_sum_pf_w_)(const T *x, T *dst, ptrdiff_t k, T shift, int write,
                                        int np, int hp, const char *pf, char *pfw, int rot,
                                        const FN(pw) *w)
{
#define FSM_E(v) (np ? VEXPN(v) : VEXP(v))
#define FSM_W_(from, len)                                                        \
    do {                                                                         \
        if (w->log) FN(map_row_)(w->src + (from), wdst + (from), (len), FSM_MODE_LOG, w->a,   \
                                 w->b, w->nt);                                   \
        else FN(map_row_)(w->src + (from), wdst + (from), (len), FSM_MODE_SCALE, w->a, 0,     \
                          w->nt);                                                \
    } while (0)
    const ptrdiff_t wl = 64 / (ptrdiff_t)sizeof(T);   /* elements a line */
    const T *wsrc = w ? w->src : NULL;
    T *wdst = w ? w->dst : NULL;
    const ptrdiff_t whd = wdst ? (ptrdiff_t)(((64 - (uintptr_t)wdst % 64) % 64) / sizeof(T)) : 0;
    ptrdiff_t wd = 0;   /* wdst[:wd] written */
    if (!FSM_F32) hp = 0;
    SUMD_DECL(tot);
    SUMD_DECL(h0);
    SUMD_DECL(h1);
    ptrdiff_t i = 0;
    const T *x0 = x + ((0 + rot) & 3) * W, *x1 = x + ((1 + rot) & 3) * W;
    const T *x2 = x + ((2 + rot) & 3) * W, *x3 = x + ((3 + rot) & 3) * W;
    VT c0 = {0};   /* hp = 2: the count of exponentials equal to 1 */
    while (i + 4 * W <= k) {
        const ptrdiff_t nb = (k - i) / (4 * W) < FSM_SUM_BLOCK / 4 ? (k - i) / (4 * W) : FSM_SUM_BLOCK / 4;
        const ptrdiff_t end = i + nb * 4 * W;
        VT a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
        for (; i < end; i += 4 * W) {
            if (pf)  /* the next row, towards L2, while this one computes */
                for (ptrdiff_t b = 0; b < 4 * FSM_VB; b += 64)
                    __builtin_prefetch(pf + i * (ptrdiff_t)sizeof(T) + b, 0, 2);
            if (pfw)  /* the lines a later pass writes, towards L1 */
                for (ptrdiff_t b = 0; b < 4 * FSM_VB; b += 64)
                    __builtin_prefetch(pfw + i * (ptrdiff_t)sizeof(T) + b, 1, 3);
            VT e0 = FSM_E(FN(load)(x0 + i) - shift);
            VT e1 = FSM_E(FN(load)(x1 + i) - shift);
            VT e2 = FSM_E(FN(load)(x2 + i) - shift);
            VT e3 = FSM_E(FN(load)(x3 + i) - shift);
            if (write) {  /* rot = 0 */
                FN(store)(dst + i, e0); FN(store)(dst + i + W, e1);
                FN(store)(dst + i + 2 * W, e2); FN(store)(dst + i + 3 * W, e3);
            }
            if (hp == 1) {
                SUMD_FOLD(h0, e0); SUMD_FOLD(h1, e1); SUMD_FOLD(h0, e2); SUMD_FOLD(h1, e3);
            } else {
                if (hp == 2) FSM_ADD_NE1(a0, c0, e0);
                else a0 += e0;
                a1 += e1; a2 += e2; a3 += e3;
            }
        }
        if (hp != 1) SUMD_FOLD(tot, (a0 + a1) + (a2 + a3));
        if (wsrc && i >= whd) {
            const ptrdiff_t we = whd + (i - whd) / wl * wl;
            if (we > wd) {
                FSM_W_(wd, we - wd);
                wd = we;
            }
        }
    }
    if (wsrc && wd < k)
        FSM_W_(wd, k - wd);
    if (i < k) {
        VT a0 = {0};
        for (; i + W <= k; i += W) {
            VT e0 = FSM_E(FN(load)(x + i) - shift);
            if (write) FN(store)(dst + i, e0);
            if (hp == 1) SUMD_FOLD(h0, e0);
            else if (hp == 2) FSM_ADD_NE1(a0, c0, e0);
            else a0 += e0;
        }
        if (i < k) {
            ptrdiff_t r = k - i;
            /* padding lanes get exp(0), then 0 */
            VT e = FSM_E(FN(load_part)(x + i, r, shift) - shift);
            for (ptrdiff_t j = r; j < W; j++) e[j] = 0;
            if (write) FN(store_part)(dst + i, e, r);
            if (hp == 1) SUMD_FOLD(h1, e);
            else if (hp == 2) FSM_ADD_NE1(a0, c0, e);
            else a0 += e;
        }
        if (hp != 1) SUMD_FOLD(tot, a0);
    }
    if (hp == 1) return SUMD_TOTAL(h0) + SUMD_TOTAL(h1);
    if (hp == 2) return SUMD_TOTAL(tot) + (double)FN(allsum)(c0)[0];   /* exact count */
    return SUMD_TOTAL(tot);
#undef FSM_W_
#undef FSM_E
}
FSM_INLINE double FN(row_exp_sum_pf_)(const T *x, T *dst, ptrdiff_t k, T shift, int write,
                                      int np, int hp, const char *pf, char *pfw, int rot)
{ return FN(row_exp_sum_pf_w_)(x, dst, k, shift, write, np, hp, pf, pfw, rot, NULL); }
FSM_INLINE double FN(row_exp_sum_)(const T *x, T *dst, ptrdiff_t k, T shift, int write,
                                   int np, int hp)
{ return FN(row_exp_sum_pf_)(x, dst, k, shift, write, np, hp, NULL, NULL, 0); }
/* sums for log_softmax / cross-entropy (hp) */
static double FN(row_exp_sum_hp)(const T *x, ptrdiff_t k, T shift, int np)
{
    return np ? FN(row_exp_sum_)(x, NULL, k, shift, 0, 1, 1)
              : FN(row_exp_sum_)(x, NULL, k, shift, 0, 0, 1);
}
static double FN(row_exp_sum_store_hp)(const T *x, T *dst, ptrdiff_t k, T shift, int np)
{
    return np ? FN(row_exp_sum_)(x, dst, k, shift, 1, 1, 1)
              : FN(row_exp_sum_)(x, dst, k, shift, 1, 0, 1);
}
/* the same, prefetching the row at pf for reading and the one at pfw for
   writing (either may be NULL), carrying w's writing along (may be NULL) */
static double FN(row_exp_sum_hp_pf_w)(const T *x, ptrdiff_t k, T shift, int np, const char *pf,
                                      T *pfw, const FN(pw) *w)
{
    return np ? FN(row_exp_sum_pf_w_)(x, NULL, k, shift, 0, 1, 1, pf, (char *)pfw, 0, w)
              : FN(row_exp_sum_pf_w_)(x, NULL, k, shift, 0, 0, 1, pf, (char *)pfw, 0, w);
}
static double FN(row_exp_sum_hp_pf)(const T *x, ptrdiff_t k, T shift, int np, const char *pf,
                                    T *pfw)
{ return FN(row_exp_sum_hp_pf_w)(x, k, shift, np, pf, pfw, NULL); }
static double FN(row_exp_sum_store_hp_pf)(const T *x, T *dst, ptrdiff_t k, T shift, int np,
                                          const char *pf)
{
    return np ? FN(row_exp_sum_pf_)(x, dst, k, shift, 1, 1, 1, pf, NULL, 0)
              : FN(row_exp_sum_pf_)(x, dst, k, shift, 1, 0, 1, pf, NULL, 0);
}
#if FSM_F32
/* Sum of exp(x - m) for log_softmax of a float row with a finite max m
   (cols: row_max_'s columns), nearly as cheap as softmax's float blocks and
   accurate near log(sum) = 0.  A float sum loses the relative accuracy of
   sum - 1 only in an accumulator lane that also holds a max's exp(0) = 1:
   adding 1e-9 to 1 in float gives 1.  When m is in one column of the blocks
   only (one lane of cols equal to m), the blocks are rotated so that this
   column's vector goes to the first accumulator, which, like the tail,
   leaves out and counts the exponentials equal to 1 (hp = 2); the other
   accumulators hold exponentials < 1 only.  sum - 1 then has the relative
   error of a float sum of a few terms per lane (a few ulps).  m in no
   column: the same; in several (ties): hp = 1.  No branch depends on which
   column (one that mispredicts costs more than the whole saving).  (1024,
   1000), one thread: 0.43 ms against 0.46 for hp = 1, softmax 0.39. */
static double FN(row_exp_sum_log)(const T *x, ptrdiff_t k, T m, const VT *cols,
                                  const char *pf, T *pfw, const FN(pw) *w)
{
    uint64_t flags = 0;   /* bit j W + l: lane l of accumulator j */
    for (int j = 0; j < 4; j++)
        flags |= (uint64_t)ISA(mask_bits_f)(cols[j] == m) << (j * W);
    if (__builtin_expect(flags & (flags - 1), 0))
        return FN(row_exp_sum_hp_pf_w)(x, k, m, 1, pf, pfw, w);
    const int rot = (int)(__builtin_ctzll(flags | 1ull << 63) / W);   /* any for no flag */
    return FN(row_exp_sum_pf_w_)(x, NULL, k, m, 0, 1, 2, pf, (char *)pfw, rot, w);
}
#endif
/* sums for softmax (float blocks), prefetching the span at pf (may be
   NULL) for reading; _store_sm: shift = max */
static double FN(row_exp_sum_sm)(const T *x, ptrdiff_t k, T shift, int np, const char *pf)
{
    return np ? FN(row_exp_sum_pf_)(x, NULL, k, shift, 0, 1, 0, pf, NULL, 0)
              : FN(row_exp_sum_pf_)(x, NULL, k, shift, 0, 0, 0, pf, NULL, 0);
}
static double FN(row_exp_sum_store_sm)(const T *x, T *dst, ptrdiff_t k, T m, const char *pf,
                                      T *pfw)
{
    return pf || pfw ? FN(row_exp_sum_pf_)(x, dst, k, m, 1, 1, 0, pf, (char *)pfw, 0)
                     : FN(row_exp_sum_pf_)(x, dst, k, m, 1, 1, 0, NULL, NULL, 0);
}

/* dst = op(src) elementwise, op one of
     MODE_SCALE:    v * a
     MODE_EXPSCALE: exp(v - b) * a
     MODE_LOG:      (v - b) - a
     MODE_EXPSCALE_NP: as MODE_EXPSCALE, every v - b <= 0, -inf or NaN
   With nt, full vectors are written with streaming stores. */
FSM_INLINE VT FN(apply)(VT v, int mode, T a, T b)
{
    if (mode == FSM_MODE_SCALE) return v * a;
    if (mode == FSM_MODE_EXPSCALE) return VEXP(v - b) * a;
    if (mode == FSM_MODE_EXPSCALE_NP) return VEXPN(v - b) * a;
    return (v - b) - a;
}
FSM_INLINE void FN(map_row_)(const T *src, T *dst, ptrdiff_t k, int mode, T a, T b, int nt)
{
    ptrdiff_t i = 0;
#if FSM_HAVE_STREAM
    if (nt && k >= 4 * W && ((uintptr_t)dst % sizeof(T)) == 0) {
        ptrdiff_t head = (ptrdiff_t)(((FSM_VB - (uintptr_t)dst % FSM_VB) % FSM_VB) / sizeof(T));
        if (head) {
            FN(store_part)(dst, FN(apply)(FN(load_part)(src, head, b), mode, a, b), head);
            i = head;
        }
        for (; i + 2 * W <= k; i += 2 * W) {
            VT v0 = FN(apply)(FN(load)(src + i), mode, a, b);
            VT v1 = FN(apply)(FN(load)(src + i + W), mode, a, b);
            STREAM(dst + i, v0);
            STREAM(dst + i + W, v1);
        }
    }
#else
    (void)nt;
#endif
    for (; i + 2 * W <= k; i += 2 * W) {
        VT v0 = FN(apply)(FN(load)(src + i), mode, a, b);
        VT v1 = FN(apply)(FN(load)(src + i + W), mode, a, b);
        FN(store)(dst + i, v0);
        FN(store)(dst + i + W, v1);
    }
    for (; i + W <= k; i += W)
        FN(store)(dst + i, FN(apply)(FN(load)(src + i), mode, a, b));
    if (i < k)
        FN(store_part)(dst + i, FN(apply)(FN(load_part)(src + i, k - i, b), mode, a, b), k - i);
}
static void FN(map_scale)(const T *s, T *d, ptrdiff_t k, T a, int nt)
{ FN(map_row_)(s, d, k, FSM_MODE_SCALE, a, 0, nt); }
static void FN(map_expscale)(const T *s, T *d, ptrdiff_t k, T a, T b, int np, int nt)
{
    if (np) FN(map_row_)(s, d, k, FSM_MODE_EXPSCALE_NP, a, b, nt);
    else FN(map_row_)(s, d, k, FSM_MODE_EXPSCALE, a, b, nt);
}
static void FN(map_log)(const T *s, T *d, ptrdiff_t k, T a, T b, int nt)
{ FN(map_row_)(s, d, k, FSM_MODE_LOG, a, b, nt); }

/* ---- softmax of rows ------------------------------------------------------ */

/* log_softmax's sum of exp(x - shift) for one row in cache whose max m is
   known (cols: row_max_'s columns for it, float), shift = m or 0 when m is
   not finite */
FSM_INLINE double FN(row_log_sum_m)(const T *x, T *out, ptrdiff_t k, int nt, const char *next,
                                    T m, const VT *cols, const FN(pw) *w)
{
    T shift = FN(is_finite)(m) ? m : 0;
    /* out's lines towards L1 for writing while the sum computes (not with
       streaming stores): the last pass's stores would otherwise wait for
       each line; softmax has them from storing its exps */
    T *pfw = nt ? NULL : out;
#if FSM_F32
    return FN(is_finite)(m) ? FN(row_exp_sum_log)(x, k, m, cols, next, pfw, w)
                            : FN(row_exp_sum_hp_pf_w)(x, k, shift, FN(np_ok)(m, shift), next, pfw, w);
#else
    (void)cols;
    return FN(row_exp_sum_hp_pf_w)(x, k, shift, FN(np_ok)(m, shift), next, pfw, w);
#endif
}

/* the same with the max found first: (shift, sum of exp(x - shift)) */
FSM_INLINE double FN(row_log_sum)(const T *x, T *out, ptrdiff_t k, int nt, const char *next,
                                  T *shift_out)
{
    VT cols[4];
    T m = FN(row_max_)(x, k, FSM_F32 ? cols : NULL);
    *shift_out = FN(is_finite)(m) ? m : 0;
    return FN(row_log_sum_m)(x, out, k, nt, next, m, cols, NULL);
}

/* One row that stays in cache between its passes: read x once from memory,
   write out once. */
static inline void FN(row_incache)(const T *x, T *out, ptrdiff_t k, int is_log,
                                   T *scratch, int nt, const char *next)
{
    if (is_log) {
        T shift;
        const double s = FN(row_log_sum)(x, out, k, nt, next, &shift);
        FN(map_log)(x, out, k, (T)log(s), shift, nt);
    } else {
        T m = FN(row_max_)(x, k, NULL);
        T *e = scratch ? scratch : out;
        /* as log_softmax's: out's lines for the scaling pass (when the
           exponentials go to scratch, without streaming stores) */
        double s = FN(row_exp_sum_store_sm)(x, e, k, m, next, scratch && !nt ? out : NULL);
        FN(map_scale)(e, out, k, (T)(1.0 / s), nt);
    }
}

/* softmax rows of at least this many elements (and scratch_min_bytes) up
   to fsm_cfg.sm_pipe_bytes are pipelined (rows_sm_piped), and so are
   log_softmax's (rows_log_piped); shorter softmax rows, in cache, measured
   no faster */
#define FSM_SM_PIPE_K 2048

/* softmax of rows i0 <= i < i1 (at least two) of n, as row_incache with
   scratch rows, in a pipeline over two scratch rows s0 and s1: row i's
   exponentials (into s0 or s1 by the parity of i - i0) write row i - 1's
   result from the other a block at a time as they go (row_exp_sum_pf_w_),
   so that the writing, bound by memory, runs while the exponentials, bound
   by arithmetic, compute.  The same operations on the same values as
   row_incache: the same bits. */
static void FN(rows_sm_piped)(const char *x, ptrdiff_t xs, char *out, ptrdiff_t os,
                              ptrdiff_t i0, ptrdiff_t i1, ptrdiff_t n, ptrdiff_t k, int nt,
                              T *s0, T *s1)
{
    T f = 0;
    for (ptrdiff_t i = i0; i < i1; i++) {
        const T *xr = (const T *)(x + i * xs);
        const char *next = i + 1 < n ? x + (i + 1) * xs : NULL;
        T *e = (i - i0) & 1 ? s1 : s0, *prev = (i - i0) & 1 ? s0 : s1;
        const T m = FN(row_max_)(xr, k, NULL);
        const FN(pw) w = {prev, (T *)(out + (i - 1) * os), f, 0, 0, nt};
        const double s = i > i0
            ? FN(row_exp_sum_pf_w_)(xr, e, k, m, 1, 1, 0, next, NULL, 0, &w)
            : FN(row_exp_sum_store_sm)(xr, e, k, m, next, NULL);
        f = (T)(1.0 / s);
    }
    FN(map_scale)((i1 - 1 - i0) & 1 ? s1 : s0, (T *)(out + (i1 - 1) * os), k, f, nt);
}

static T *FN(alloc_row)(ptrdiff_t k);
/* rows i0 <= i < i1 of n that stay in cache, one thread's share: through
   a scratch row (use_scratch), pipelined over two (piped, two rows or more;
   rows_sm_piped), or row by row (row_incache), the next row prefetched
   (pf_rows); a scratch row that cannot be allocated means row by row, in
   out.  Ends with the stream fence when nt. */
static void FN(rows_incache)(const char *x, ptrdiff_t xs, char *out, ptrdiff_t os,
                             ptrdiff_t i0, ptrdiff_t i1, ptrdiff_t n, ptrdiff_t k, int is_log,
                             int nt, int use_scratch, int piped, int pf_rows)
{
    T *scratch = use_scratch ? FN(alloc_row)(k) : NULL;
    T *s1 = piped && i1 - i0 >= 2 && scratch ? FN(alloc_row)(k) : NULL;
    if (s1)
        FN(rows_sm_piped)(x, xs, out, os, i0, i1, n, k, nt, scratch, s1);
    else
        for (ptrdiff_t i = i0; i < i1; i++)
            FN(row_incache)((const T *)(x + i * xs), (T *)(out + i * os), k, is_log, scratch, nt,
                            pf_rows && i + 1 < n ? x + (i + 1) * xs : NULL);
    free(s1);
    free(scratch);
    if (nt) ISA(stream_fence)();
}

/* log_softmax of rows at most this long is pipelined (rows_log_incache);
   longer rows' lines would have left L1 by their writing (float64 (1024,
   1000), 8 KB rows: log_softmax / softmax 0.95-1.0 -> 1.04-1.07
   pipelined; float32, 4 KB rows: 1.05-1.07 -> 0.99-1.03) */
#ifndef FSM_LOG_PIPE_BYTES
#define FSM_LOG_PIPE_BYTES 4096
#endif

/* log_softmax of rows i0 <= i < i1 in cache (n rows in all), as
   row_incache but pipelined over three rows: row i + 1's max is found
   before row i's sum, and row i - 1's log(sum) is taken before and its
   result written after that sum (its lines still in L1/L2).  The log's
   latency (a libm call, about as long as a tenth of a row of 1000 floats)
   then overlaps row i's work instead of holding up row i - 1's writing,
   and the float sum's choice of accumulator (row_exp_sum_log: from the max's
   column) is known a pass ahead: taken from the max just found, the sum's
   loads waited for it (float (1024, 1000), AMD Zen 4, log_softmax /
   softmax, minima of 40 interleaved rounds: one thread 1.13 -> 1.06, two
   1.14 -> 1.06; double unchanged, 0.96-0.97).  The same operations, so
   the same bits. */
static void FN(rows_log_incache)(const char *x, ptrdiff_t xs, char *out, ptrdiff_t os,
                                 ptrdiff_t i0, ptrdiff_t i1, ptrdiff_t n, ptrdiff_t k, int nt,
                                 int pf_rows)
{
    T prev_shift = 0;
    double prev_s = 1;
    VT cols[2][4];
    T m = i0 < i1 ? FN(row_max_)((const T *)(x + i0 * xs), k, FSM_F32 ? cols[i0 & 1] : NULL) : 0;
    for (ptrdiff_t i = i0; i < i1; i++) {
        const T lse = (T)log(prev_s);   /* row i - 1's */
        const T m_next = i + 1 < i1 ? FN(row_max_)((const T *)(x + (i + 1) * xs), k,
                                                   FSM_F32 ? cols[(i + 1) & 1] : NULL) : 0;
        const double s = FN(row_log_sum_m)((const T *)(x + i * xs), (T *)(out + i * os), k, nt,
                                           pf_rows && i + 1 < n ? x + (i + 1) * xs : NULL, m,
                                           cols[i & 1], NULL);
        if (i > i0)
            FN(map_log)((const T *)(x + (i - 1) * xs), (T *)(out + (i - 1) * os), k, lse,
                        prev_shift, nt);
        prev_shift = FN(is_finite)(m) ? m : 0;
        prev_s = s;
        m = m_next;
    }
    if (i1 > i0)
        FN(map_log)((const T *)(x + (i1 - 1) * xs), (T *)(out + (i1 - 1) * os), k,
                    (T)log(prev_s), prev_shift, nt);
}

/* log_softmax of rows i0 <= i < i1 (n rows in all) too long for
   rows_log_incache's pipeline but in cache between their passes (from
   FSM_SM_PIPE_K elements to fsm_cfg.sm_pipe_bytes), pipelined as softmax's
   rows_sm_piped: row i - 1's writing, (x - shift) - log(sum) from its row
   still in L2, is carried along row i's sum a block at a time
   (row_exp_sum_pf_w_), so that the writing, bound by memory, runs while the
   exponentials compute (each row's max, sum and writing one after the
   other before: float32 (4096, 32000), 2 threads, log_softmax / softmax
   1.08-1.11).  The same operations on the same values as row_incache: the
   same bits. */
static void FN(rows_log_piped)(const char *x, ptrdiff_t xs, char *out, ptrdiff_t os,
                               ptrdiff_t i0, ptrdiff_t i1, ptrdiff_t n, ptrdiff_t k, int nt,
                               int pf_rows)
{
    T prev_shift = 0;
    double prev_s = 1;
    for (ptrdiff_t i = i0; i < i1; i++) {
        const T *xr = (const T *)(x + i * xs);
        VT cols[4];
        const T m = FN(row_max_)(xr, k, FSM_F32 ? cols : NULL);
        FN(pw) w = {0};
        if (i > i0)
            w = (FN(pw)){(const T *)(x + (i - 1) * xs), (T *)(out + (i - 1) * os),
                         (T)log(prev_s), prev_shift, 1, nt};
        const double s = FN(row_log_sum_m)(xr, (T *)(out + i * os), k, nt,
                                           pf_rows && i + 1 < n ? x + (i + 1) * xs : NULL, m,
                                           cols, i > i0 ? &w : NULL);
        prev_shift = FN(is_finite)(m) ? m : 0;
        prev_s = s;
    }
    if (i1 > i0)
        FN(map_log)((const T *)(x + (i1 - 1) * xs), (T *)(out + (i1 - 1) * os), k,
                    (T)log(prev_s), prev_shift, nt);
}

/* log_softmax's pipelines: short rows (rows_log_incache), long ones in
   cache (rows_log_piped) */
static void FN(rows_log_pipe)(const char *x, ptrdiff_t xs, char *out, ptrdiff_t os,
                              ptrdiff_t i0, ptrdiff_t i1, ptrdiff_t n, ptrdiff_t k, int nt,
                              int pf_rows)
{
    if (k * (ptrdiff_t)sizeof(T) <= FSM_LOG_PIPE_BYTES)
        FN(rows_log_incache)(x, xs, out, os, i0, i1, n, k, nt, pf_rows);
    else
        FN(rows_log_piped)(x, xs, out, os, i0, i1, n, k, nt, pf_rows);
    if (nt) ISA(stream_fence)();
}


/* ---- short rows (k <= 4 W): blocks of W rows turned around ---------------

   Row b of a block of W rows becomes lane b.  Each of the rows' NV vectors
   (NV = ceil(k / W) <= FSM_SMALL_VECS, a constant) is one W x W tile;
   transposed (log2(W) stages of W two-source shuffles), its W vectors are
   the tile's columns, and the max, the exponentials, the sums, the log and
   the result are vertical operations over the block's rows: no reduction
   across lanes, no scalar work per row.  (100000, 16), one thread, against
   a row per vector with lane reductions (medians of one interleaved run):
   float32 softmax 1.03 -> 0.68 ms, log_softmax 1.27 -> 0.73 ms; float64
   1.75 -> 1.49, 2.06 -> 1.62.)  A
   row's result depends on that row alone, whichever block and lane it
   falls in: the rows left over (fewer than W) go through the same code in
   a block padded with zero rows, so thread counts never change the bits. */
#define FSM_SMALL_VECS 4
#define FSM_WD ((ptrdiff_t)(FSM_VB / sizeof(double)))

#define FSM_TL_(l, s) (((l) & (s)) ? (l) + W - (s) : (l))
#define FSM_TH_(l, s) (((l) & (s)) ? (l) + W : (l) + (s))
#define FSM_TL2_(f, s, o) f((o), s), f((o) + 1, s)
#define FSM_TL4_(f, s, o) FSM_TL2_(f, s, o), FSM_TL2_(f, s, (o) + 2)
#define FSM_TL8_(f, s, o) FSM_TL4_(f, s, o), FSM_TL4_(f, s, (o) + 4)
#define FSM_TL16_(f, s, o) FSM_TL8_(f, s, o), FSM_TL8_(f, s, (o) + 8)
#define FSM_LANES_ (FSM_VB / (FSM_F32 ? 4 : 8))
#if FSM_LANES_ == 16
#define FSM_TLW_(f, s) (VI){FSM_TL16_(f, s, 0)}
#elif FSM_LANES_ == 8
#define FSM_TLW_(f, s) (VI){FSM_TL8_(f, s, 0)}
#elif FSM_LANES_ == 4
#define FSM_TLW_(f, s) (VI){FSM_TL4_(f, s, 0)}
#else
#define FSM_TLW_(f, s) (VI){FSM_TL2_(f, s, 0)}
#endif
/* stage s swaps the off-diagonal s x s blocks of every 2s x 2s block */
#define FSM_TSTAGE_(r, s)                                                        \
    _Pragma("GCC unroll 16") for (ptrdiff_t i_ = 0; i_ < W; i_++)                \
        if (!(i_ & (s))) {                                                       \
            VT a_ = (r)[i_], b_ = (r)[i_ + (s)];                                 \
            (r)[i_] = __builtin_shuffle(a_, b_, FSM_TLW_(FSM_TL_, s));           \
            (r)[i_ + (s)] = __builtin_shuffle(a_, b_, FSM_TLW_(FSM_TH_, s));     \
        }
/* r[0:W], a W x W tile (r[i] its row i), transposed in place */
FSM_INLINE void FN(transpose)(VT *r)
{
    FSM_TSTAGE_(r, 1)
#if FSM_LANES_ >= 4
    FSM_TSTAGE_(r, 2)
#endif
#if FSM_LANES_ >= 8
    FSM_TSTAGE_(r, 4)
#endif
#if FSM_LANES_ >= 16
    FSM_TSTAGE_(r, 8)
#endif
}
#undef FSM_TSTAGE_
#undef FSM_TLW_
#undef FSM_LANES_
#undef FSM_TL16_
#undef FSM_TL8_
#undef FSM_TL4_
#undef FSM_TL2_
#undef FSM_TH_
#undef FSM_TL_

#if !FSM_F32
/* log(s) lane by lane for a vector of sums (every one >= 1, or 0, inf or
   NaN when the row's max is not finite): vectorised, libm for the lanes
   out of range */
FSM_INLINE ISA(vd) FN(log_sums)(ISA(vd) s)
{
    typedef ISA(vd) VD;
    typedef ISA(vl) VL;
    VD l = ISA(log_vd_ge1)(s);
    VL bad = ~((s >= 1.0) & (s <= 0x1.fffffffffffffp1023));
    if (__builtin_expect(ISA(any_d)(bad), 0))
        for (ptrdiff_t j = 0; j < FSM_WD; j++)
            if (bad[j]) l[j] = log(s[j]);
    return l;
}
#endif

/* A block in two parts, so that the caller can overlap one block's long
   dependency chains (the division or the log, after the sums) with the
   next block's work: a block is more work than the out-of-order window
   holds.  small_sums: W rows of k elements (row stride xs bytes) into t
   (softmax: the exponentials, transposed), sum[0] (softmax: the sums;
   float log_softmax: the sums of the exponentials other than 1), sum[1]
   (float log_softmax: the count of those equal to 1), sum[2] (log_softmax:
   the shift) and d[0] (double log_softmax: the sums).  log_softmax leaves
   t alone: its writing reads the rows again (small_write_log). */
#if FSM_F32
static __attribute__((noinline)) void FN(small_sums_counted)(const char *x, ptrdiff_t xs,
                                                             ptrdiff_t k, int NV, VT *sum);
#endif
FSM_INLINE void FN(small_sums)(const char *x, ptrdiff_t xs, ptrdiff_t k, int is_log,
                               const int NV, VT (*t)[W], VT *sum, ISA(vd) *d, const int counted)
{
    const T ninf = -(T)INFINITY;
    const ptrdiff_t last = k - (NV - 1) * W;   /* 1..W lanes in the last vector */
    VT c[FSM_SMALL_VECS][W], e[FSM_SMALL_VECS][W], acc[W];
#define FSM_VALID_(v, l) ((v) < NV - 1 || (l) < last)   /* column v W + l < k */
    /* (a pointer stepped from row to row: with x + b xs, GCC kept the W
       row addresses in stack slots, loaded, stepped and stored back every
       block) */
    _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) {
        const char *px = x;
        _Pragma("GCC unroll 16") for (ptrdiff_t b = 0; b < W; b++, px += xs) {
            const T *p = (const T *)px + v * W;
            c[v][b] = (v < NV - 1 || last == W) ? FN(load)(p) : FN(load_part)(p, last, ninf);
        }
        FN(transpose)(c[v]);
    }
    /* the max (NaN ignored: vmax from -inf), a tree over the columns */
    _Pragma("GCC unroll 16") for (ptrdiff_t l = 0; l < W; l++) {
        acc[l] = FN(splat)(ninf);
        _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) acc[l] = FN(vmax)(acc[l], c[v][l]);
    }
    _Pragma("GCC unroll 16") for (ptrdiff_t h = W / 2; h >= 1; h /= 2)
        _Pragma("GCC unroll 16") for (ptrdiff_t l = 0; l < h; l++) acc[l] = FN(vmax)(acc[l], acc[l + h]);
    const VT m = acc[0];
    /* softmax: x - m, every one <= 0, -inf or NaN (also for m = +-inf);
       log_softmax shifts a max of +inf (or -inf) by 0 instead (SciPy), and
       those rows' x - 0 need the clamped exp */
    VT sh = m;
    VI np = m == m;
    const VI fin = (m - m) == 0;
    if (is_log) {
        sh = (VT)(fin & (VI)m);
        np = fin | (m == ninf);
    }
    /* (every loop over the tiles is unrolled: constant indices keep the
       tiles in registers.  The test for the general exp comes first, from
       the max alone: the tiles of x are then dead as their exponentials
       are taken, where keeping both sets for the test after them spilled.
       bench/c_ab.py, Zen 5, time / copy, softmax / log: float32 (100_000,
       16) one thread 2.45 / 2.71 -> 2.37 / 2.66, in cache (4000, 16)
       5.02 / 4.66 -> 4.23 / 4.52; float64 two threads 1.39 / 1.11 -> 1.11
       / 1.09; the same bits) */
    /* float log_softmax (but small_sums_counted's): the exponentials
       summed as they are taken (below) */
    const int fused = FSM_F32 && is_log && !counted;
    VT s4[4] = {{0}};
    uint32_t bits = 0;
    if (__builtin_expect(!FN(any)(~np), 1)) {
        _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)
            _Pragma("GCC unroll 16") for (ptrdiff_t l = 0; l < W; l++) {
                const VT dv = c[v][l] - sh, ev = FSM_VALID_(v, l) ? VEXPN(dv) : (VT){0};
                if (!fused) e[v][l] = ev;
                else if (FSM_VALID_(v, l)) bits += FSM_ADD_NEG_BITS(s4[l % 4], ev, dv);
            }
    } else if (fused) {
        FN(small_sums_counted)(x, xs, k, NV, sum);   /* a max +inf or NaN */
        return;
    } else {
        _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)
            _Pragma("GCC unroll 16") for (ptrdiff_t l = 0; l < W; l++)
                e[v][l] = FSM_VALID_(v, l) ? FN(sel)(np, VEXPN(c[v][l] - sh), VEXP(c[v][l] - sh))
                                           : (VT){0};
    }
    if (!is_log || !FSM_F32) {
        /* softmax, and float64 log_softmax: a tree of sums in T (at most
           4 W terms) */
        _Pragma("GCC unroll 16") for (ptrdiff_t l = 0; l < W; l++) {
            acc[l] = e[0][l];
            _Pragma("GCC unroll 4") for (int v = 1; v < NV; v++) acc[l] += e[v][l];
        }
        _Pragma("GCC unroll 16") for (ptrdiff_t h = W / 2; h >= 1; h /= 2)
            _Pragma("GCC unroll 16") for (ptrdiff_t l = 0; l < h; l++) acc[l] += acc[l + h];
    }
    if (!is_log) {
        sum[0] = acc[0];
        _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)
            _Pragma("GCC unroll 16") for (ptrdiff_t l = 0; l < W; l++) t[v][l] = e[v][l];
    } else {
        /* log(sum) to the last bits: its values near 0 cancel */
#if FSM_F32
        /* A float sum loses sum - 1 only where it adds to a max's exp(0)
           = 1 (1 + 1e-9 is 1 in float): the exponentials equal to 1 are
           counted, the others summed in float (four chains), as
           row_exp_sum_log does for rows in cache, and small_fac takes
           log(count + sum) with that addition's rounding error.  (Widening
           every exponential to double and taking the logs in double cost
           log_softmax 40% over softmax; counting every block, 5-10%; the
           count taken as 1 unless a block needs it, below, 0-5%.) */
        VT n;
        if (counted) {
            VT n4[4] = {{0}};
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)
                _Pragma("GCC unroll 16") for (ptrdiff_t l = 0; l < W; l++)
                    ISA(add_ne1_f)(&s4[l % 4], &n4[l % 4], e[v][l]);
            n = (n4[0] + n4[1]) + (n4[2] + n4[3]);
        } else {
            /* (summed above as they were taken) Each row's max element
               has x - max = +0 and exp(0) = 1: it alone is left out of the
               sums, by the sign bit of x - max, and noted as a bit (bit j:
               lane j), the bits added as integers.  With every max finite
               (so every row has such an element), that integer sum is (1 <<
               W) - 1 only where every row has exactly one (no tie to the
               max, no NaN); then the count of 1s is 1.  Otherwise the block
               is taken again with the exponentials equal to 1 counted
               (small_sums_counted).  An exponential equal to 1 other than
               the max's (x - max within 2^-25 or so) is summed, not
               counted: its row's sum is then at least 2 and its log not near
               0.  Where no row has one, the same sums in the same order as
               with the counts, so the same bits.  bench/c_ab.py, Zen 5,
               float32, time / copy, softmax / log_softmax, with the compare
               of every exponential with 1 and two masked adds -> this: (4000,
               16) in cache, one thread, 5.23 / 5.45 -> 5.14 / 5.18; (100_000,
               16) one thread 3.07 / 3.45 -> 3.05 / 3.19, two threads 1.90 /
               2.05 -> 1.88 / 1.93; log_softmax, two threads, (200_000, 5)
               4.25 -> 3.57, (50_000, 33) 1.99 -> 1.62, (25_000, 63) 2.50 ->
               2.18 */
            if (__builtin_expect(bits != (uint32_t)((1ull << W) - 1) || FN(any)(~fin), 0)) {
                FN(small_sums_counted)(x, xs, k, NV, sum);
                return;
            }
            n = FN(splat)(1);
        }
        sum[0] = (s4[0] + s4[1]) + (s4[2] + s4[3]);
        sum[1] = n;
#else
        d[0] = acc[0];
#endif
        sum[2] = sh;
    }
#undef FSM_VALID_
}

#if FSM_F32
/* small_sums of a float log_softmax block with the exponentials equal to 1
   counted: where a row has none of them (max -inf or NaN, a tie to the
   max...) or more than one */
static __attribute__((noinline)) void FN(small_sums_counted)(const char *x, ptrdiff_t xs,
                                                             ptrdiff_t k, int NV, VT *sum)
{
    VT t[FSM_SMALL_VECS][W];
    ISA(vd) d[2];
    switch (NV) {
    case 1: FN(small_sums)(x, xs, k, 1, 1, t, sum, d, 1); break;
    case 2: FN(small_sums)(x, xs, k, 1, 2, t, sum, d, 1); break;
    case 3: FN(small_sums)(x, xs, k, 1, 3, t, sum, d, 1); break;
    default: FN(small_sums)(x, xs, k, 1, 4, t, sum, d, 1); break;
    }
}
#endif

/* the factor of a block's writing from small_sums's sums: softmax 1/sum,
   log_softmax log(sum) */
FSM_INLINE VT FN(small_fac)(int is_log, const VT *sum, const ISA(vd) *d)
{
    if (!is_log) return (T)1 / sum[0];
#if FSM_F32
    {
        /* log(n + s) = log(u) + (n + s - u) / u, u = n + s rounded, its
           error r exact (TwoSum): accurate where log is near 0 (n = 1, s
           small), the case the count is for.  r is rounded as n + s would
           be in double (to a multiple of the double ulp of u, by adding and
           subtracting 1.5 times 2^23 of it): the result is then that of a
           sum in double, as SciPy's (log_softmax of [30, -9] is 0 at 30,
           not -1.3e-17) */
        const VT n = sum[1], s = sum[0];
        const VT u = n + s, bv = u - n;
        VT r = (n - (u - bv)) + (s - bv);
        const VT c = (VT)(((((VI)u >> 23) & 0xff) - 29) << 23 | 0x400000);
        r = (r + c) - c;
        VT l = ISA(log_vf_ge1)(u) + r / u;   /* (r may be 20% of l: a full division) */
        const VI bad = ~((u >= 1.0f) & (u <= 0x1.fffffep127f));
        if (__builtin_expect(FN(any)(bad), 0))   /* 0, inf, NaN: libm */
            for (ptrdiff_t j = 0; j < W; j++)
                if (bad[j]) l[j] = (T)log((double)n[j] + (double)s[j]);
        return l;
    }
#else
    return FN(log_sums)(d[0]);
#endif
}

/* softmax's writing of a block: the exponentials times 1/sum, turned back */
FSM_INLINE void FN(small_write)(char *out, ptrdiff_t os, ptrdiff_t k, const int NV, VT (*t)[W],
                                VT fac)
{
    const ptrdiff_t last = k - (NV - 1) * W;
    VT c[FSM_SMALL_VECS][W];
    _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)
        _Pragma("GCC unroll 16") for (ptrdiff_t l = 0; l < W; l++) c[v][l] = t[v][l] * fac;
    _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) {
        FN(transpose)(c[v]);
        char *po = out;
        _Pragma("GCC unroll 16") for (ptrdiff_t b = 0; b < W; b++, po += os) {
            T *p = (T *)po + v * W;
            if (v < NV - 1 || last == W) FN(store)(p, c[v][b]);
            else FN(store_part)(p, c[v][b], last);
        }
    }
}

/* log_softmax's writing of a block: row b is (x - shift) - fac, the
   block's shift and factor lane b, taken from the rows again (still in L1)
   rather than turned back from the tile (log2(W) stages of W shuffles).
   The same operations in the same order as in the tile, so the same bits;
   out may be x itself (each row is read before it is written).  1.6M
   float32 elements, 2 threads, log_softmax / copy, k = 5, 16, 33, 64:
   2.11, 0.95, 1.20, 1.12 -> 1.84-1.91, 0.86-0.90, 1.03, 0.97-1.00. */
FSM_INLINE void FN(small_write_log)(const char *x, ptrdiff_t xs, char *out, ptrdiff_t os,
                                    ptrdiff_t k, const int NV, const T *shs, const T *facs)
{
    const ptrdiff_t last = k - (NV - 1) * W;
    _Pragma("GCC unroll 16") for (ptrdiff_t b = 0; b < W; b++, x += xs, out += os) {
        /* (c - 0 folds to a broadcast of c from memory; splat's 0 + c is
           a scalar add first) */
        const VT s = shs[b] - (VT){0}, f = facs[b] - (VT){0};
        /* (the pointers stepped here, not W row addresses kept aside for
           the next block: GCC spilled those to the stack) */
        __asm__("" : "+r"(x), "+r"(out));
        _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) {
            const T *p = (const T *)x + v * W;
            T *q = (T *)out + v * W;
            if (v < NV - 1 || last == W) FN(store)(q, (FN(load)(p) - s) - f);
            else FN(store_part)(q, (FN(load_part)(p, last, 0) - s) - f, last);
        }
    }
}

/* a block's writing (rows x, row stride xs; out, os) from its sums and its
   factor (in memory: log_softmax broadcasts their lanes) */
FSM_INLINE void FN(small_out)(const char *x, ptrdiff_t xs, char *out, ptrdiff_t os, ptrdiff_t k,
                              int is_log, const int NV, VT (*t)[W], const VT *sum, const VT *fac)
{
    if (is_log) FN(small_write_log)(x, xs, out, os, k, NV, (const T *)&sum[2], (const T *)fac);
    else FN(small_write)(out, os, k, NV, t, *fac);
}

/* rows i0 <= i < i1 (fewer than W) of a short-row call, in a block of their
   own padded with zero rows (a function of its own: the tile's room on the
   stack slowed the block loop down by 25% when inlined there) */
static __attribute__((noinline)) void FN(small_tail)(const char *x, ptrdiff_t xs, char *out,
                                                     ptrdiff_t os, ptrdiff_t i0, ptrdiff_t i1,
                                                     ptrdiff_t k, int is_log)
{
    const int NV = (int)((k + W - 1) / W);
    T tile[W * FSM_SMALL_VECS * W];
    const ptrdiff_t ts = NV * W * (ptrdiff_t)sizeof(T);   /* the tile's row stride */
    memset(tile, 0, sizeof tile);
    for (ptrdiff_t b = 0; b < i1 - i0; b++)
        memcpy((char *)tile + b * ts, x + (i0 + b) * xs, (size_t)k * sizeof(T));
    VT t[FSM_SMALL_VECS][W], sum[3], f;
    ISA(vd) d[2];
#define FSM_TAIL_(NV)                                                            \
    FN(small_sums)((const char *)tile, ts, k, is_log, NV, t, sum, d, 0);         \
    f = FN(small_fac)(is_log, sum, d);                                           \
    FN(small_out)((const char *)tile, ts, (char *)tile, ts, k, is_log, NV, t, sum, &f);
    switch (NV) {
    case 1: FSM_TAIL_(1); break;
    case 2: FSM_TAIL_(2); break;
    case 3: FSM_TAIL_(3); break;
    default: FSM_TAIL_(4); break;
    }
#undef FSM_TAIL_
    for (ptrdiff_t b = 0; b < i1 - i0; b++)
        memcpy(out + (i0 + b) * os, (const char *)tile + b * ts, (size_t)k * sizeof(T));
}

/* rows i0 <= i < i1 of a short-row call in blocks of W rows; returns the
   first row left over (fewer than W).  Block i - W's factor (the division
   or the logs: long dependency chains), block i's sums, then block i - W's
   writing: the factor's chain overlaps the sums (double-buffered). */
FSM_INLINE ptrdiff_t FN(small_blocks)(const char *x, ptrdiff_t xs, char *out, ptrdiff_t os,
                                      ptrdiff_t i0, ptrdiff_t i1, ptrdiff_t k, const int is_log,
                                      const int NV)
{
    ptrdiff_t i = i0;
    VT t[2][FSM_SMALL_VECS][W], sum[2][3], f[2];
    ISA(vd) d[2][2];
    for (int cur = 0; i + W <= i1; i += W, cur ^= 1) {
        if (i > i0) f[cur ^ 1] = FN(small_fac)(is_log, sum[cur ^ 1], d[cur ^ 1]);
        FN(small_sums)(x + i * xs, xs, k, is_log, NV, t[cur], sum[cur], d[cur], 0);
        if (i > i0)
            FN(small_out)(x + (i - W) * xs, xs, out + (i - W) * os, os, k, is_log, NV,
                          t[cur ^ 1], sum[cur ^ 1], &f[cur ^ 1]);
        if (i + 2 * W > i1) {
            f[cur] = FN(small_fac)(is_log, sum[cur], d[cur]);
            FN(small_out)(x + i * xs, xs, out + i * os, os, k, is_log, NV, t[cur], sum[cur],
                          &f[cur]);
        }
    }
    return i;
}

/* one function for each number of vectors and each of softmax and
   log_softmax (with is_log a variable in one loop, both ran 10% slower) */
#define FSM_SMALL_LOOP_(NV, L)                                                   \
    static __attribute__((noinline)) ptrdiff_t FN(small_blocks_##NV##_##L)(      \
        const char *x, ptrdiff_t xs, char *out, ptrdiff_t os, ptrdiff_t i0,       \
        ptrdiff_t i1, ptrdiff_t k)                                               \
    {                                                                            \
        return FN(small_blocks)(x, xs, out, os, i0, i1, k, L, NV);               \
    }
FSM_SMALL_LOOP_(1, 0)
FSM_SMALL_LOOP_(1, 1)
FSM_SMALL_LOOP_(2, 0)
FSM_SMALL_LOOP_(2, 1)
FSM_SMALL_LOOP_(3, 0)
FSM_SMALL_LOOP_(3, 1)
FSM_SMALL_LOOP_(4, 0)
FSM_SMALL_LOOP_(4, 1)
#undef FSM_SMALL_LOOP_

/* rows i0 <= i < i1 of a short-row call: blocks of W rows, then the rows
   left over (small_tail) */
static void FN(rows_small)(const char *x, ptrdiff_t xs, char *out, ptrdiff_t os,
                           ptrdiff_t i0, ptrdiff_t i1, ptrdiff_t k, int is_log)
{
    ptrdiff_t (*const loops[4][2])(const char *, ptrdiff_t, char *, ptrdiff_t, ptrdiff_t,
                                   ptrdiff_t, ptrdiff_t) = {
        {FN(small_blocks_1_0), FN(small_blocks_1_1)}, {FN(small_blocks_2_0), FN(small_blocks_2_1)},
        {FN(small_blocks_3_0), FN(small_blocks_3_1)}, {FN(small_blocks_4_0), FN(small_blocks_4_1)}};
    const ptrdiff_t i = loops[(k + W - 1) / W - 1][is_log != 0](x, xs, out, os, i0, i1, k);
    if (i < i1) FN(small_tail)(x, xs, out, os, i, i1, k, is_log);
}
#undef FSM_WD

static T *FN(alloc_row)(ptrdiff_t k)
{
    size_t bytes = ((size_t)k * sizeof(T) + 63) & ~(size_t)63;
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes) != 0) return NULL;
    return (T *)p;
}

/* Rows too long for the cache: the row is cut into chunks of fixed length
   (whatever the thread count); pass 1 gives each chunk's (max, sum of exp),
   they are combined per row in chunk order, pass 2 writes the result.
   x is read twice (the second time partly from the last-level cache), out
   written once. */
static int FN(rows_long)(const char *x, ptrdiff_t xs, char *out, ptrdiff_t os,
                         ptrdiff_t n, ptrdiff_t k, int is_log, int n_threads, int nt)
{
    const ptrdiff_t C = fsm_cfg.chunk;
    const ptrdiff_t nch = (k + C - 1) / C;
    const ptrdiff_t units = n * nch;
    double *part = (double *)malloc(2 * (size_t)units * sizeof(double));
    if (!part) return -1;
    double *pmax = part, *psum = part + units;
    int nth = fsm_num_threads_for(n_threads, units, n * k);
    (void)nth;

#ifdef _OPENMP
#pragma omp parallel for num_threads(nth) schedule(static) if (nth > 1)
#endif
    for (ptrdiff_t u = 0; u < units; u++) {
        ptrdiff_t row = u / nch, c0 = (u % nch) * C;
        ptrdiff_t len = k - c0 < C ? k - c0 : C;
        const T *xr = (const T *)(x + row * xs) + c0;
        /* the next unit (this thread's next, schedule(static)), prefetched
           towards L2 while this chunk's exponentials compute, so that its
           max pass reads from cache rather than wait for memory; the sums
           are unchanged (same bits).  (1, 10_000_000), 2 threads, softmax
           x copy, medians of 25 interleaved rounds, 3 process pairs:
           float32 1.48-1.90 -> 1.27-1.62, float64 1.24-1.41 -> 1.07-1.24. */
        const char *pf = NULL;
        if (u + 1 < units) {
            ptrdiff_t rn = (u + 1) / nch, cn = ((u + 1) % nch) * C;
            if (k - cn >= len) pf = (const char *)((const T *)(x + rn * xs) + cn);
        }
        T m = FN(row_max)(xr, len);
        T shift = FN(is_finite)(m) ? m : 0;
        int np = FN(np_ok)(m, shift);
        pmax[u] = m;
        if (is_log) psum[u] = FN(row_exp_sum_hp_pf)(xr, len, shift, np, pf, NULL);
        else psum[u] = FN(row_exp_sum_sm)(xr, len, shift, np, pf);
    }
    /* combine: pmax[row*nch] <- shift of the row, psum[row*nch] <- a */
    for (ptrdiff_t row = 0; row < n; row++) {
        double *pm = pmax + row * nch, *ps = psum + row * nch;
        double M = pm[0];
        for (ptrdiff_t c = 1; c < nch; c++) M = pm[c] > M ? pm[c] : M;
        double shift = (is_log && !(M - M == 0)) ? 0.0 : M;
        double S = 0.0;
        for (ptrdiff_t c = 0; c < nch; c++) {
            double mc = pm[c] - pm[c] == 0 ? pm[c] : 0.0;
            if (ps[c] != 0.0)  /* an all -inf chunk adds nothing */
                S += ps[c] * exp(mc - shift);
        }
        pm[0] = shift;
        ps[0] = is_log ? log(S) : 1.0 / S;
    }
#ifdef _OPENMP
#pragma omp parallel num_threads(nth) if (nth > 1)
#endif
    {
        /* in the reverse order of pass 1: the chunks that pass 1 read last
           are the ones still in the last-level cache */
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (ptrdiff_t ur = 0; ur < units; ur++) {
            const ptrdiff_t u = units - 1 - ur;
            ptrdiff_t row = u / nch, c0 = (u % nch) * C;
            ptrdiff_t len = k - c0 < C ? k - c0 : C;
            const T *xr = (const T *)(x + row * xs) + c0;
            T *orow = (T *)(out + row * os) + c0;
            T shift = (T)pmax[row * nch], a = (T)psum[row * nch];
            if (is_log) FN(map_log)(xr, orow, len, a, shift, nt);
            else FN(map_expscale)(xr, orow, len, a, shift, 1, nt);  /* x - max */
        }
        if (nt) ISA(stream_fence)();
    }
    free(part);
    return 0;
}

static int FN(softmax_rows)(const char *x, ptrdiff_t xs, char *out, ptrdiff_t os,
                            ptrdiff_t n, ptrdiff_t k, int is_log, int n_threads)
{
    const ptrdiff_t row_bytes = k * (ptrdiff_t)sizeof(T);
    const int nt = fsm_cfg.nt_min_bytes > 0 && n * row_bytes >= fsm_cfg.nt_min_bytes;
    if (row_bytes > fsm_cfg.long_row_bytes)
        return FN(rows_long)(x, xs, out, os, n, k, is_log, n_threads, nt);
    const int use_scratch = !is_log && row_bytes >= fsm_cfg.scratch_min_bytes;
    const int pf_rows = row_bytes >= fsm_cfg.scratch_min_bytes;  /* prefetch the next row */
    const int nth = fsm_num_threads_for(n_threads, n, n * k);
    if (k <= FSM_SMALL_VECS * W) {
        if (nth == 1) {
            FN(rows_small)(x, xs, out, os, 0, n, k, is_log);
            return 0;
        }
#ifdef _OPENMP
#pragma omp parallel num_threads(nth)
        {
            ptrdiff_t i0, i1;
            fsm_static_rows(n, &i0, &i1);
            FN(rows_small)(x, xs, out, os, i0, i1, k, is_log);
        }
#endif
        return 0;
    }
    if (is_log && (row_bytes <= FSM_LOG_PIPE_BYTES
                   || (k >= FSM_SM_PIPE_K && row_bytes <= fsm_cfg.sm_pipe_bytes))) {
        if (nth == 1) {
            FN(rows_log_pipe)(x, xs, out, os, 0, n, n, k, nt, pf_rows);
            return 0;
        }
#ifdef _OPENMP
#pragma omp parallel num_threads(nth)
        {
            ptrdiff_t i0, i1;
            fsm_static_rows(n, &i0, &i1);
            FN(rows_log_pipe)(x, xs, out, os, i0, i1, n, k, nt, pf_rows);
        }
#endif
        return 0;
    }
    const int piped = use_scratch && k >= FSM_SM_PIPE_K && row_bytes <= fsm_cfg.sm_pipe_bytes;
    if (nth == 1) {
        FN(rows_incache)(x, xs, out, os, 0, n, n, k, is_log, nt, use_scratch, piped, pf_rows);
        return 0;
    }
#ifdef _OPENMP
#pragma omp parallel num_threads(nth)
    {
        ptrdiff_t i0, i1;
        fsm_static_rows(n, &i0, &i1);
        FN(rows_incache)(x, xs, out, os, i0, i1, n, k, is_log, nt, use_scratch, piped, pf_rows);
    }
#endif
    return 0;
}

/* ---- softmax of columns --------------------------------------------------- */

/* One block of cb (<= FSM_MAX_COL_BLOCK) adjacent columns of a (k, inner)
   slab: pass 1 keeps a running max and a running sum of exp (rescaled when
   the max grows, once per group of rows), pass 2 writes the result.  x is
   read twice, out written once; no transposed copy. */
static void FN(col_block)(const char *x, ptrdiff_t xs, char *out, ptrdiff_t os,
                          ptrdiff_t k, ptrdiff_t cb, int is_log, int nt)
{
    enum { NV_MAX = FSM_MAX_COL_BLOCK / (FSM_VB / sizeof(T)) };
    typedef ISA(vd) VD;
    typedef ISA(vl) VL;
    VT mv[NV_MAX];
#if FSM_F32
    VD sv[2 * NV_MAX];   /* running sums in double: low and high lanes */
#else
    VD sv[NV_MAX];
#endif
    T pa[FSM_MAX_COL_BLOCK + 64 / sizeof(T)], pb[FSM_MAX_COL_BLOCK + 64 / sizeof(T)];
    const T ninf = -(T)INFINITY;
    const ptrdiff_t nv = (cb + W - 1) / W, rem = cb % W;
    ptrdiff_t G = fsm_cfg.col_group;
    if (G < 1) G = 1;
    if (G > FSM_MAX_COL_GROUP) G = FSM_MAX_COL_GROUP;
    /* software prefetch (see below): AVX-512 (one vector a line), arrays
       large enough for streaming stores */
    const int pf = FSM_VB == 64 && nt;

    /* Invariant, per column: sv = sum over the rows seen of exp(x - sh(mv)),
       with mv the running max and sh(m) = m, or 0 when m = -inf (so that
       -inf entries add exp(-inf) = 0 and never -inf - -inf = NaN).  When the
       max grows, the sum is rescaled by exp(sh(old) - sh(new)), in double;
       a zero sum stays zero (no 0 * inf) and NaN stays NaN. */
    for (ptrdiff_t v = 0; v < nv; v++) mv[v] = FN(splat)(ninf);
    for (ptrdiff_t v = 0; v < (FSM_F32 ? 2 : 1) * nv; v++) sv[v] = (VD){0};
    for (ptrdiff_t r0 = 0; r0 < k; r0 += G) {
        const ptrdiff_t g = k - r0 < G ? k - r0 : G;
        for (ptrdiff_t v = 0; v < nv; v++) {
            const ptrdiff_t width = (v == nv - 1 && rem) ? rem : W;
            VT xv[FSM_MAX_COL_GROUP];
            VT gm = FN(splat)(ninf);
            /* pf: the next group's rows at this vector (one line each)
               into L1.  Each row's run in a group is short (cb elements),
               and the hardware prefetcher, which stops at every 4 KiB
               page, did not keep up: Zen 5, AVX-512, (32000, 4096)
               axis 0, 2 threads, this pass alone 0.90-0.98 -> 0.72-0.77
               of a copy.  An earlier host measured it 20% slower (float64,
               one thread, at 3.5x a copy; de0e05e): to measure again on
               other machines.  AVX-512 only (a prefetch per line), and
               large arrays only (in cache, (1000, 2048), it cost 10%) */
            if (pf && r0 + G + g <= k)
                for (ptrdiff_t r = 0; r < g; r++)
                    __builtin_prefetch(x + (r0 + G + r) * xs + v * FSM_VB, 0, 3);
            for (ptrdiff_t r = 0; r < g; r++) {
                const T *p = (const T *)(x + (r0 + r) * xs) + v * W;
                /* padding lanes (never written) hold 0: the exp's fast path */
                xv[r] = width == W ? FN(load)(p) : FN(load_part)(p, width, 0);
                gm = FN(vmax)(gm, xv[r]);
            }
            VT mo = mv[v], mn = FN(vmax)(mo, gm);
            VT shn = (VT)(~(VI)(mn == ninf) & (VI)mn);   /* sh(mn) */
            /* every x - shn is <= 0, -inf or NaN: the branch-free exp.
               The running sums are double; the group's exponentials (at
               most FSM_MAX_COL_GROUP) are summed in T first.  Float32
               log_softmax needs log(sum) to the last bits near a dominant
               max (its results there, -log(sum), are near 0), and a float
               sum of the max's exp(0) = 1 and small terms loses those below
               half an ulp of 1: a group that holds its columns' running max
               (gm == mn in some lane; rare after the first rows) adds each
               exponential in double instead.  A group without it sums terms
               below 1 (or, where one rounds to 1, the column's sum is >= 2
               and log(sum) far from 0): a float sum of a few terms, a few
               ulps, as the rows' row_exp_sum_log.  (32000, 4096) axis 0, 2
               threads, time / copy: every group in double 1.22-1.32,
               softmax 1.09-1.19; this 1.13, softmax 1.16 (bench/c_ab.py) */
            VT e = VEXPN(xv[0] - shn);
#if FSM_F32
            VD el, eh;
            if (is_log && FN(any)(gm == mn)) {
                el = ISA(widen_lo)(e);
                eh = ISA(widen_hi)(e);
                for (ptrdiff_t r = 1; r < g; r++) {
                    VT er = VEXPN(xv[r] - shn);
                    el += ISA(widen_lo)(er);
                    eh += ISA(widen_hi)(er);
                }
            } else {
                for (ptrdiff_t r = 1; r < g; r++) e += VEXPN(xv[r] - shn);
                el = ISA(widen_lo)(e);
                eh = ISA(widen_hi)(e);
            }
#else
            for (ptrdiff_t r = 1; r < g; r++) e += VEXPN(xv[r] - shn);
#endif
            if (FN(any)(mn > mo)) {
                VT sho = (VT)(~(VI)(mo == ninf) & (VI)mo);
#if FSM_F32
                VD dl = ISA(widen_lo)(sho) - ISA(widen_lo)(shn);
                VD dh = ISA(widen_hi)(sho) - ISA(widen_hi)(shn);
                VD sl = sv[2 * v], sh = sv[2 * v + 1];
                VL kl = (dl == 0) | (sl == 0), kh = (dh == 0) | (sh == 0);
                VD scl = ISA(exp_vd)((VD)(~kl & (VL)dl)), sch = ISA(exp_vd)((VD)(~kh & (VL)dh));
                sv[2 * v] = sl * scl;
                sv[2 * v + 1] = sh * sch;
#else
                VD d = sho - shn, sl = sv[v];
                VL kl = (d == 0) | (sl == 0);
                sv[v] = sl * ISA(exp_vd)((VD)(~kl & (VL)d));
#endif
            }
#if FSM_F32
            sv[2 * v] += el;
            sv[2 * v + 1] += eh;
#else
            sv[v] += e;
#endif
            mv[v] = mn;
        }
    }
    /* per column: pb = shift, pa = 1/sum (softmax) or log(sum) (log) */
    for (ptrdiff_t c = 0; c < cb; c++) {
        T m = mv[c / W][c % W];
#if FSM_F32
        const ptrdiff_t hw = W / 2;  /* doubles per vector */
        double s = sv[2 * (c / W) + (c % W) / hw][(c % W) % hw];
#else
        double s = sv[c / W][c % W];
#endif
        if (is_log) {
            if (m == (T)INFINITY) {
                /* SciPy shifts by 0 here: the sum is exp(+inf) = inf, or
                   NaN when the column also holds a NaN */
                s = 0.0;
                for (ptrdiff_t r = 0; r < k; r++)
                    s += exp((double)((const T *)(x + r * xs))[c]);
            }
            pb[c] = FN(is_finite)(m) ? m : 0;
            pa[c] = (T)log(s);
        } else {
            pb[c] = m;
            pa[c] = (T)(1.0 / s);
        }
    }
    for (ptrdiff_t c = cb; c < cb + W; c++) { pa[c] = 0; pb[c] = 0; }
#define FSM_COL_OP(v, i) (is_log ? ((v) - FN(load)(pb + (i))) - FN(load)(pa + (i)) \
                                 : VEXPN((v) - FN(load)(pb + (i))) * FN(load)(pa + (i)))
    ptrdiff_t r = 0;
#if FSM_HAVE_STREAM
    /* with streaming stores, where the output rows share their alignment:
       four rows per pass over the columns, four reads in flight ((32000,
       4096) axis 0, 2 threads, time / copy: softmax float32 1.49-1.52 ->
       1.19-1.26, float64 1.51-1.54 -> 1.19-1.31; log_softmax float32
       1.37-1.44 -> 1.22-1.29, float64 1.30-1.34 -> 1.19-1.22, against row
       by row) */
    /* only where one store fills a 64-byte line (AVX-512): with narrower
       vectors the four rows' stores go one vector per row in turn, four
       lines per thread stay part-written in the write-combining buffers,
       and row by row is faster (Zen 2, AVX2, (8000, 4096) axis 0, 2
       threads, time / copy: float32 softmax 3.11 -> 1.54-1.66, log_softmax
       1.76 -> 1.41-1.44; float64 6.71 -> 3.74-3.78, 3.15 -> 2.43-2.50) */
    if (FSM_VB == 64 && nt && cb >= 4 * W && os % FSM_VB == 0 && ((uintptr_t)out % sizeof(T)) == 0) {
        const ptrdiff_t head =
            (ptrdiff_t)(((FSM_VB - (uintptr_t)out % FSM_VB) % FSM_VB) / sizeof(T));
        for (; r + 4 <= k; r += 4) {
            const T *s0 = (const T *)(x + r * xs), *s1 = (const T *)((const char *)s0 + xs);
            const T *s2 = (const T *)((const char *)s1 + xs), *s3 = (const T *)((const char *)s2 + xs);
            T *d0 = (T *)(out + r * os), *d1 = (T *)((char *)d0 + os);
            T *d2 = (T *)((char *)d1 + os), *d3 = (T *)((char *)d2 + os);
            ptrdiff_t i = 0;
            if (head) {
                FN(store_part)(d0, FSM_COL_OP(FN(load_part)(s0, head, 0), 0), head);
                FN(store_part)(d1, FSM_COL_OP(FN(load_part)(s1, head, 0), 0), head);
                FN(store_part)(d2, FSM_COL_OP(FN(load_part)(s2, head, 0), 0), head);
                FN(store_part)(d3, FSM_COL_OP(FN(load_part)(s3, head, 0), 0), head);
                i = head;
            }
            /* the next four rows at these columns into L1 (as pass 1):
               (32000, 4096) axis 0, 2 threads, time / copy, with pass 1's
               prefetch: softmax float32 1.53 -> 1.37, float64 1.49 ->
               1.23 */
            if (r + 8 <= k)
                for (; i + W <= cb; i += W) {
                    const char *a0 = (const char *)(s0 + i) + 4 * xs;
                    __builtin_prefetch(a0, 0, 3);
                    __builtin_prefetch(a0 + xs, 0, 3);
                    __builtin_prefetch(a0 + 2 * xs, 0, 3);
                    __builtin_prefetch(a0 + 3 * xs, 0, 3);
                    STREAM(d0 + i, FSM_COL_OP(FN(load)(s0 + i), i));
                    STREAM(d1 + i, FSM_COL_OP(FN(load)(s1 + i), i));
                    STREAM(d2 + i, FSM_COL_OP(FN(load)(s2 + i), i));
                    STREAM(d3 + i, FSM_COL_OP(FN(load)(s3 + i), i));
                }
            for (; i + W <= cb; i += W) {
                STREAM(d0 + i, FSM_COL_OP(FN(load)(s0 + i), i));
                STREAM(d1 + i, FSM_COL_OP(FN(load)(s1 + i), i));
                STREAM(d2 + i, FSM_COL_OP(FN(load)(s2 + i), i));
                STREAM(d3 + i, FSM_COL_OP(FN(load)(s3 + i), i));
            }
            if (i < cb) {
                FN(store_part)(d0 + i, FSM_COL_OP(FN(load_part)(s0 + i, cb - i, 0), i), cb - i);
                FN(store_part)(d1 + i, FSM_COL_OP(FN(load_part)(s1 + i, cb - i, 0), i), cb - i);
                FN(store_part)(d2 + i, FSM_COL_OP(FN(load_part)(s2 + i, cb - i, 0), i), cb - i);
                FN(store_part)(d3 + i, FSM_COL_OP(FN(load_part)(s3 + i, cb - i, 0), i), cb - i);
            }
        }
    }
#endif
    /* pass 2, row by row (the rest) */
    for (; r < k; r++) {
        const T *src = (const T *)(x + r * xs);
        T *dst = (T *)(out + r * os);
        ptrdiff_t i = 0;
        /* softmax: prefetch two rows ahead into L2 (the exp leaves the
           loads time to wait; 7% faster); log_softmax is a plain stream,
           which the hardware prefetcher serves better alone (25% faster
           than prefetching into L1; float64, 32000 x 4096, one thread) */
        if (!is_log && r + 2 < k)
            for (ptrdiff_t c = 0; c < cb; c += 64 / (ptrdiff_t)sizeof(T))
                __builtin_prefetch((const char *)(src + c) + 2 * xs, 0, 1);
#if FSM_HAVE_STREAM
        if (nt && cb >= 4 * W && ((uintptr_t)dst % sizeof(T)) == 0) {
            ptrdiff_t head = (ptrdiff_t)(((FSM_VB - (uintptr_t)dst % FSM_VB) % FSM_VB) / sizeof(T));
            if (head) {
                FN(store_part)(dst, FSM_COL_OP(FN(load_part)(src, head, 0), 0), head);
                i = head;
            }
            for (; i + W <= cb; i += W)
                STREAM(dst + i, FSM_COL_OP(FN(load)(src + i), i));
        }
#endif
        for (; i + W <= cb; i += W)
            FN(store)(dst + i, FSM_COL_OP(FN(load)(src + i), i));
        if (i < cb)
            FN(store_part)(dst + i, FSM_COL_OP(FN(load_part)(src + i, cb - i, 0), i), cb - i);
    }
#undef FSM_COL_OP
}

static int FN(softmax_cols)(const char *x, ptrdiff_t xs0, ptrdiff_t xs1, char *out,
                            ptrdiff_t os0, ptrdiff_t os1, ptrdiff_t outer, ptrdiff_t k,
                            ptrdiff_t inner, int is_log, int n_threads)
{
    ptrdiff_t CB = fsm_cfg.col_block;
    if (CB > FSM_MAX_COL_BLOCK) CB = FSM_MAX_COL_BLOCK;
    CB = CB < 64 ? 64 : CB & ~(ptrdiff_t)63;
    /* wide blocks read longer runs of each row (measured 10% faster at 2048
       than 512 columns of float32: the rows are far apart), but with fewer
       blocks than threads the others wait: halve, down to 64 columns, while
       that lowers the columns the busiest thread takes.  The floor was 512
       and the rule "until every thread has a block": (32000, 4096) axis 0 on
       a 16-core Xeon took 34.6 ms at 16 threads and 32.4 at 8; with blocks
       of 256, 30.2 (and 12 threads, 16 blocks of 256, 51: hence the busiest
       thread's load, which keeps 512 there).  Speed only: each column's
       arithmetic does not depend on its block (the same bits at every
       thread count).  The Numba kernel takes the same rule (col_width). */
    {
        const ptrdiff_t th = n_threads < 1 ? 1 : n_threads;
#define FSM_BUSIEST(w) (((outer * ((inner + (w) - 1) / (w))) + th - 1) / th * ((w) < inner ? (w) : inner))
        while (CB > 64 && CB / 2 >= inner) CB /= 2;
        while (CB > 64 && FSM_BUSIEST(CB / 2) < FSM_BUSIEST(CB)) CB /= 2;
#undef FSM_BUSIEST
    }
    const ptrdiff_t nblk = (inner + CB - 1) / CB;
    const ptrdiff_t units = outer * nblk;
    const ptrdiff_t elems = outer * k * inner;
    const int nt = fsm_cfg.nt_min_bytes > 0 && elems * (ptrdiff_t)sizeof(T) >= fsm_cfg.nt_min_bytes;
    const int nth = fsm_num_threads_for(n_threads, units, elems);
#define FSM_COL_UNIT(u)                                                          \
    do {                                                                         \
        ptrdiff_t o_ = (u) / nblk, j0_ = ((u) % nblk) * CB;                      \
        ptrdiff_t cb_ = inner - j0_ < CB ? inner - j0_ : CB;                     \
        FN(col_block)(x + o_ * xs0 + j0_ * (ptrdiff_t)sizeof(T), xs1,            \
                      out + o_ * os0 + j0_ * (ptrdiff_t)sizeof(T), os1, k, cb_,  \
                      is_log, nt);                                               \
    } while (0)
    if (nth == 1) {
        for (ptrdiff_t u = 0; u < units; u++) FSM_COL_UNIT(u);
        if (nt) ISA(stream_fence)();
        return 0;
    }
#ifdef _OPENMP
#pragma omp parallel num_threads(nth)
    {
#pragma omp for schedule(static)
        for (ptrdiff_t u = 0; u < units; u++) FSM_COL_UNIT(u);
        if (nt) ISA(stream_fence)();
    }
#endif
#undef FSM_COL_UNIT
    return 0;
}

/* ---- test helper ----------------------------------------------------------- */

/* out = exp(x): the general exp, or (np) the one for arguments <= 0 */
static void FN(exp_array)(const T *x, T *out, ptrdiff_t n, int np)
{
    ptrdiff_t i = 0;
    if (np) {
        for (; i + W <= n; i += W) FN(store)(out + i, VEXPN(FN(load)(x + i)));
        if (i < n) FN(store_part)(out + i, VEXPN(FN(load_part)(x + i, n - i, 0)), n - i);
        return;
    }
    for (; i + W <= n; i += W) FN(store)(out + i, VEXP(FN(load)(x + i)));
    if (i < n) FN(store_part)(out + i, VEXP(FN(load_part)(x + i, n - i, 0)), n - i);
}

/* ---- cross-entropy --------------------------------------------------------- */
#include "fsm_ce_body.h"

#undef T
#undef FN
#undef W
#undef VT
#undef VI
#undef VEXP
#undef VEXPN
#undef STREAM
#undef SUMD_DECL
#undef SUMD_FOLD
#undef SUMD_TOTAL
#undef FSM_ADD_NE1
