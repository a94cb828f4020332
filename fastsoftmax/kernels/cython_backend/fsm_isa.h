/*
 * fsm_isa.h -- one instruction set: vector types, exp, streaming stores.
 * Included by fsm_kernels.h with FSM_ISA (name suffix) and FSM_VB (vector
 * bytes) defined, inside a `#pragma GCC target` section.
 */
#define ISA(name) FSM_CAT(name, FSM_CAT(_, FSM_ISA))

typedef float ISA(vf) __attribute__((vector_size(FSM_VB)));
typedef int32_t ISA(vi) __attribute__((vector_size(FSM_VB)));
typedef double ISA(vd) __attribute__((vector_size(FSM_VB)));
typedef int64_t ISA(vl) __attribute__((vector_size(FSM_VB)));

/*
 * exp(r) for |r| <= ln(2)/2 as 1 + (r + r^2 q(r)), q the Taylor polynomial
 * of (exp(r) - 1 - r) / r^2 (degree 11 for double: truncation < 5e-18;
 * degree 5 for float: < 6e-9), evaluated in Estrin's scheme: short
 * dependency chains, so that several vectors are in flight at once.
 */
#define FSM_EXP_POLY_F64(r) __extension__ ({                                    \
    __typeof__(r) r_ = (r), r2_ = r_ * r_, r4_ = r2_ * r2_, r8_ = r4_ * r4_;    \
    __typeof__(r) p0_ = (1.0 / 6.0) * r_ + 0.5;                                 \
    __typeof__(r) p1_ = (1.0 / 120.0) * r_ + (1.0 / 24.0);                      \
    __typeof__(r) p2_ = (1.0 / 5040.0) * r_ + (1.0 / 720.0);                    \
    __typeof__(r) p3_ = (1.0 / 362880.0) * r_ + (1.0 / 40320.0);                \
    __typeof__(r) p4_ = (1.0 / 39916800.0) * r_ + (1.0 / 3628800.0);            \
    __typeof__(r) p5_ = (1.0 / 6227020800.0) * r_ + (1.0 / 479001600.0);        \
    __typeof__(r) q_ = (p0_ + r2_ * p1_) + r4_ * (p2_ + r2_ * p3_)              \
                       + r8_ * (p4_ + r2_ * p5_);                               \
    (q_ * r2_ + r_) + 1.0; })
/* float: 1 + r + r^2 q(r), q of degree 4 fitted for the least maximum
   relative error on [-ln2/2, ln2/2] (3.9e-9 with the float coefficients),
   in Horner's scheme: 6 FMAs, the fewest operations (the exponentials of a
   row are independent, so the long dependency chain costs nothing) */
#define FSM_EXP_POLY_F32(r) __extension__ ({                                    \
    __typeof__(r) r_ = (r);                                                     \
    __typeof__(r) t_ = r_ * 0x1.6a242ap-10f + 0x1.1239d0p-7f;                   \
    t_ = t_ * r_ + 0x1.5558f2p-5f;                                              \
    t_ = t_ * r_ + 0x1.555492p-3f;                                              \
    t_ = t_ * r_ + 0x1.fffffcp-2f;                                              \
    t_ = t_ * r_ + 1.0f;                                                        \
    t_ * r_ + 1.0f; })

/*
 * exp in plain arithmetic, vectorised, for double.
 *   exp(x) = 2^n * exp(r),  n = round(x / ln 2),  r = x - n ln 2 (Cody-Waite,
 *   |r| <= ln(2)/2), exp(r) by its Taylor polynomial of degree 13
 *   (truncation error < 5e-18), 2^n applied as two exact powers of two
 *   2^n1 * 2^n2 so that results in the subnormal range are rounded once,
 *   as np.exp does (exp(-745.1) = 5e-324).
 * Special values: NaN stays NaN (the clamps below compare false on NaN),
 * -inf gives +0, +inf gives +inf.  Accuracy: about 1 ulp.
 */
#define FSM_DEFINE_EXP_F64_FULL(NAME, VD, VL)                                      \
FSM_INLINE VD NAME(VD x)                                                      \
{                                                                             \
    const double shift = 0x1.8p52;                                            \
    VL under = x < -746.0, over = x > 710.0;                                  \
    x = (VD)((under & (VL)((VD){0} + -746.0)) | (~under & (VL)x));            \
    x = (VD)((over & (VL)((VD){0} + 710.0)) | (~over & (VL)x));               \
    VD kd = x * 1.4426950408889634 + shift;                                   \
    VD n = kd - shift;                                                        \
    VD r = x - n * 6.93147180369123816490e-01;                                \
    r = r - n * 1.90821492927058770002e-10;                                   \
    VD p = FSM_EXP_POLY_F64(r);                                               \
    VD h1 = (n * 0.5 + shift) - shift;  /* round-half-even(n / 2) */          \
    VD h2 = n - h1;                                                           \
    VL e1 = ((VL)(h1 + shift) + 1023) << 52;                                  \
    VL e2 = ((VL)(h2 + shift) + 1023) << 52;                                  \
    return (p * (VD)e1) * (VD)e2;                                             \
}

#if !(defined(FSM_X86) && FSM_VB == 64)
FSM_DEFINE_EXP_F64_FULL(ISA(exp_vd_full), ISA(vd), ISA(vl))
#endif

/* exp for float, same scheme: polynomial of degree 6 (see above), clamps
   at -105 (result 0) and 89 (result inf).  Accuracy: 1-2 ulp. */
FSM_INLINE ISA(vf) ISA(exp_vf_full)(ISA(vf) x)
{
    typedef ISA(vf) VF;
    typedef ISA(vi) VI;
    const float shift = 0x1.8p23f;
    VI under = x < -105.0f, over = x > 89.0f;
    x = (VF)((under & (VI)((VF){0} + -105.0f)) | (~under & (VI)x));
    x = (VF)((over & (VI)((VF){0} + 89.0f)) | (~over & (VI)x));
    VF kd = x * 1.44269504088896341f + shift;
    VF n = kd - shift;
    VF r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    VF p = FSM_EXP_POLY_F32(r);
    VF h1 = (n * 0.5f + shift) - shift;
    VF h2 = n - h1;
    VI e1 = ((VI)(h1 + shift) + 127) << 23;
    VI e2 = ((VI)(h2 + shift) + 127) << 23;
    return (p * (VF)e1) * (VF)e2;
}

/* max(a, b) that returns a when b is NaN (b > a ? b : a), and a select;
   one instruction each on x86 */
#if defined(FSM_X86) && FSM_VB == 64
FSM_INLINE ISA(vf) ISA(max_f)(ISA(vf) a, ISA(vf) b) { return (ISA(vf))_mm512_max_ps((__m512)b, (__m512)a); }
FSM_INLINE ISA(vd) ISA(max_d)(ISA(vd) a, ISA(vd) b) { return (ISA(vd))_mm512_max_pd((__m512d)b, (__m512d)a); }
#elif defined(FSM_X86) && FSM_VB == 32
FSM_INLINE ISA(vf) ISA(max_f)(ISA(vf) a, ISA(vf) b) { return (ISA(vf))_mm256_max_ps((__m256)b, (__m256)a); }
FSM_INLINE ISA(vd) ISA(max_d)(ISA(vd) a, ISA(vd) b) { return (ISA(vd))_mm256_max_pd((__m256d)b, (__m256d)a); }
#elif defined(FSM_X86) && FSM_VB == 16
FSM_INLINE ISA(vf) ISA(max_f)(ISA(vf) a, ISA(vf) b) { return (ISA(vf))_mm_max_ps((__m128)b, (__m128)a); }
FSM_INLINE ISA(vd) ISA(max_d)(ISA(vd) a, ISA(vd) b) { return (ISA(vd))_mm_max_pd((__m128d)b, (__m128d)a); }
#else
FSM_INLINE ISA(vf) ISA(max_f)(ISA(vf) a, ISA(vf) b)
{ ISA(vi) m = b > a; return (ISA(vf))((m & (ISA(vi))b) | (~m & (ISA(vi))a)); }
FSM_INLINE ISA(vd) ISA(max_d)(ISA(vd) a, ISA(vd) b)
{ ISA(vl) m = b > a; return (ISA(vd))((m & (ISA(vl))b) | (~m & (ISA(vl))a)); }
#endif

/* any(mask): one instruction on x86; mask_bits_f: bit j set when lane j of
   the float mask m is set */
#if defined(FSM_X86) && FSM_VB == 64
FSM_INLINE uint32_t ISA(mask_bits_f)(ISA(vi) m) { return _mm512_test_epi32_mask((__m512i)m, (__m512i)m); }
FSM_INLINE int ISA(any_f)(ISA(vi) m) { return ISA(mask_bits_f)(m) != 0; }
FSM_INLINE int ISA(any_d)(ISA(vl) m) { return _mm512_test_epi64_mask((__m512i)m, (__m512i)m) != 0; }
#elif defined(FSM_X86) && FSM_VB == 32
FSM_INLINE uint32_t ISA(mask_bits_f)(ISA(vi) m) { return (uint32_t)_mm256_movemask_ps((__m256)m); }
FSM_INLINE int ISA(any_f)(ISA(vi) m) { return !_mm256_testz_si256((__m256i)m, (__m256i)m); }
FSM_INLINE int ISA(any_d)(ISA(vl) m) { return !_mm256_testz_si256((__m256i)m, (__m256i)m); }
#elif defined(FSM_X86) && FSM_VB == 16
FSM_INLINE uint32_t ISA(mask_bits_f)(ISA(vi) m) { return (uint32_t)_mm_movemask_ps((__m128)m); }
FSM_INLINE int ISA(any_f)(ISA(vi) m) { return ISA(mask_bits_f)(m) != 0; }
FSM_INLINE int ISA(any_d)(ISA(vl) m) { return _mm_movemask_pd((__m128d)m) != 0; }
#else
FSM_INLINE uint32_t ISA(mask_bits_f)(ISA(vi) m)
{
    uint32_t b = 0;
    for (int j = 0; j < (int)(FSM_VB / 4); j++) b |= (uint32_t)(m[j] != 0) << j;
    return b;
}
FSM_INLINE int ISA(any_f)(ISA(vi) m)
{
    int32_t a = 0;
    for (int j = 0; j < (int)(FSM_VB / 4); j++) a |= m[j];
    return a != 0;
}
FSM_INLINE int ISA(any_d)(ISA(vl) m)
{
    int64_t a = 0;
    for (int j = 0; j < (int)(FSM_VB / 8); j++) a |= m[j];
    return a != 0;
}
#endif

/* *acc += the lanes of e other than 1 (NaN included), *cnt += those equal
   to 1 (counts them); masked adds where the ISA has them */
#if defined(FSM_X86) && FSM_VB == 64
FSM_INLINE void ISA(add_ne1_f)(ISA(vf) *acc, ISA(vf) *cnt, ISA(vf) e)
{
    const __m512 one = _mm512_set1_ps(1.0f);
    __mmask16 eq = _mm512_cmp_ps_mask((__m512)e, one, _CMP_EQ_OQ);
    *acc = (ISA(vf))_mm512_mask_add_ps((__m512)*acc, (__mmask16)~eq, (__m512)*acc, (__m512)e);
    *cnt = (ISA(vf))_mm512_mask_add_ps((__m512)*cnt, eq, (__m512)*cnt, one);
}
/* *acc += the lanes of e where d (the exponent's argument x - max) has its
   sign bit set: every lane but the max's own (d = +0) or a NaN; returns the
   bits of the lanes left out (bit j: lane j).  One test of the sign bit
   (vptestmd) where an ordered compare of e with 1 (vcmpps) cost float
   log_softmax of short rows 5% more on Zen 5. */
FSM_INLINE uint32_t ISA(add_neg_bits_f)(ISA(vf) *acc, ISA(vf) e, ISA(vf) d)
{
    const __mmask16 neg = _mm512_test_epi32_mask((__m512i)d, _mm512_set1_epi32(INT32_MIN));
    *acc = (ISA(vf))_mm512_mask_add_ps((__m512)*acc, neg, (__m512)*acc, (__m512)e);
    return (uint16_t)~neg;
}
#else
FSM_INLINE void ISA(add_ne1_f)(ISA(vf) *acc, ISA(vf) *cnt, ISA(vf) e)
{
    ISA(vi) eq = e == 1.0f;
    *acc += (ISA(vf))(~eq & (ISA(vi))e);
    *cnt += (ISA(vf))(eq & (ISA(vi))((ISA(vf)){0} + 1.0f));
}
FSM_INLINE uint32_t ISA(add_neg_bits_f)(ISA(vf) *acc, ISA(vf) e, ISA(vf) d)
{
    const ISA(vi) neg = (ISA(vi))d >> 31;
    *acc += (ISA(vf))(neg & (ISA(vi))e);
    return ISA(mask_bits_f)(~neg);
}
#endif

#if defined(FSM_X86) && FSM_VB == 64
/*
 * AVX-512: a cheaper double exp with a 16-entry table (Tang's method, as
 * glibc's exp but with the table in two registers for vpermt2pd instead of
 * a gather):
 *   exp(x) = 2^m 2^(j/16) exp(r),  n = 16 m + j = round(x 16 / ln 2),
 *   r = x - n ln2/16 (Cody-Waite, |r| <= ln(2)/32),
 *   exp(r) = 1 + r + r^2 q(r), q the Taylor polynomial of degree 5
 *   (truncation < 1.3e-18), and 2^(j/16) = H_j (1 + L_j) with H_j the
 *   double nearest and L_j its relative remainder, so that
 *   exp(x) = 2^m H_j + 2^m H_j (r + r^2 q + L_j), one rounding (an FMA).
 * Accuracy: 0.5 ulp + about 0.03 ulp; 21 vector operations against 24 for
 * the degree-13 polynomial on |r| <= ln(2)/2.
 * FSM_EXP_TAB_H holds the bits of H_j minus j << 48: adding the bits of
 * kd << 48 (n << 48 = m << 52 + j << 48) gives those of 2^m H_j.
 */
#define FSM_EXP_TABLE 1
#define FSM_EXP_TAB_H                                                          \
    0x3ff0000000000000LL, 0x3fefb5586cf9890fLL, 0x3fef72b83c7d517bLL,          \
    0x3fef387a6e756238LL, 0x3fef06fe0a31b715LL, 0x3feedea64c123422LL,          \
    0x3feebfdad5362a27LL, 0x3feeab07dd485429LL, 0x3feea09e667f3bcdLL,          \
    0x3feea11473eb0187LL, 0x3feeace5422aa0dbLL, 0x3feec49182a3f090LL,          \
    0x3feee89f995ad3adLL, 0x3fef199bdd85529cLL, 0x3fef5818dcfba487LL,          \
    0x3fefa4afa2a490daLL
#define FSM_EXP_TAB_L                                                          \
    0.0, 0x1.79aa65d837b6dp-54, -0x1.01b15eaa59348p-55, 0x1.68efde3a8a894p-54, \
    0x1.34d754db0abb6p-55, 0x1.59f48a72a4c6dp-55, 0x1.690cebb7aafb0p-56,      \
    0x1.063e1e21c5409p-54, -0x1.3b3efbf5e2228p-54, -0x1.b32dcb94da51dp-56,    \
    0x1.db72fc1f0eab4p-55, 0x1.1affc2b91ce27p-56, 0x1.c1a7792cb3387p-55,      \
    0x1.36eae30af0cb3p-56, 0x1.4a385a63d07a7p-56, -0x1.ff7128fd391f0p-55
static const int64_t ISA(exp_tab_h)[16] __attribute__((aligned(64))) = {FSM_EXP_TAB_H};
static const double ISA(exp_tab_l)[16] __attribute__((aligned(64))) = {FSM_EXP_TAB_L};

/* The shared steps: from x (already clamped) and the shift constant
   (0x1.8p52 plus a bias b * 16 for an exponent bias b), the reduced
   argument's r + r^2 q + L_j in *tmp, the bits of 2^(m + b) H_j in *sbits
   and kd in *kdo.  Only the low 4 bits of the permute index count. */
FSM_INLINE void ISA(exp_tab_core)(__m512d x, double shift, __m512d *tmp, __m512i *sbits,
                                  __m512d *kdo)
{
    typedef ISA(vd) VD;
    typedef ISA(vl) VL;
    const __m512i h0 = _mm512_load_si512((const void *)ISA(exp_tab_h));
    const __m512i h1 = _mm512_load_si512((const void *)(ISA(exp_tab_h) + 8));
    const __m512d l0 = _mm512_load_pd(ISA(exp_tab_l)), l1 = _mm512_load_pd(ISA(exp_tab_l) + 8);
    VD xv = (VD)x;
    VD kd = xv * 0x1.71547652b82fep+4 + shift;          /* x 16 / ln 2 */
    VD n = kd - shift;
    VD r = xv - n * 0x1.62e42fee00000p-5;                 /* ln2/16 high: exact */
    r = r - n * 0x1.a39ef35793c76p-37;                    /* ln2/16 low */
    __m512i idx = (__m512i)kd;
    VD lj = (VD)_mm512_permutex2var_pd(l0, idx, l1);
    VL hj = (VL)_mm512_permutex2var_epi64(h0, idx, h1);
    VD r2 = r * r, r4 = r2 * r2;
    VD a = (1.0 / 6.0) * r + 0.5;
    VD b = (1.0 / 120.0) * r + (1.0 / 24.0);
    VD c = (1.0 / 5040.0) * r + (1.0 / 720.0);
    VD q = (a + r2 * b) + r4 * c;
    *tmp = (__m512d)((q * r2 + r) + lj);
    *sbits = (__m512i)(hj + ((VL)kd << 48));
    *kdo = (__m512d)kd;
}

/* every argument, special values included (the rare path of exp_vd):
   2^m applied as two exact powers of two so that subnormal results are
   rounded once */
FSM_INLINE ISA(vd) ISA(exp_vd_full)(ISA(vd) x)
{
    typedef ISA(vd) VD;
    typedef ISA(vl) VL;
    const double shift = 0x1.8p52;
    VL under = x < -746.0, over = x > 710.0;
    x = (VD)((under & (VL)((VD){0} + -746.0)) | (~under & (VL)x));
    x = (VD)((over & (VL)((VD){0} + 710.0)) | (~over & (VL)x));
    __m512d tmp, kd;
    __m512i sbits;
    ISA(exp_tab_core)((__m512d)x, shift, &tmp, &sbits, &kd);
    VL nl = (VL)kd - (VL)((VD){0} + shift);              /* n */
    VL m = nl >> 4;
    VD h = (VD)((VL)sbits - (m << 52));                  /* H_j */
    VD y = h * (VD)tmp + h;
    VL m1 = m >> 1, m2 = m - m1;
    return (y * (VD)((m1 + 1023) << 52)) * (VD)((m2 + 1023) << 52);
}

/* |x| <= 708 or NaN: results are normal */
FSM_INLINE ISA(vd) ISA(exp_vd_fast)(ISA(vd) x)
{
    typedef ISA(vd) VD;
    __m512d tmp, kd;
    __m512i sbits;
    ISA(exp_tab_core)((__m512d)x, 0x1.8p52, &tmp, &sbits, &kd);
    (void)kd;
    VD sc = (VD)sbits;
    return sc * (VD)tmp + sc;
}

/* x <= 0, -inf or NaN (see exp_vd_np below): 2^(m + 64) H_j, then 2^-64 */
FSM_INLINE ISA(vd) ISA(exp_vd_np)(ISA(vd) x)
{
    typedef ISA(vd) VD;
    x = ISA(max_d)(x, (VD){0} + -750.0);    /* keeps NaN */
    __m512d tmp, kd;
    __m512i sbits;
    ISA(exp_tab_core)((__m512d)x, 0x1.8p52 + 64 * 16, &tmp, &sbits, &kd);
    (void)kd;
    VD sc = (VD)sbits;
    return (sc * (VD)tmp + sc) * 0x1p-64;
}
#endif

/*
 * The exp the kernels call: a short path for arguments whose result is a
 * normal number (|x| <= 708 for double, 87 for float: no clamping, one
 * power of two), the full path above when any lane of the vector is
 * outside (rare: underflow towards subnormals, overflow, infinities).
 * NaN lanes take the short path and give NaN.  Both paths agree bit for
 * bit where both apply.
 */
#ifdef FSM_EXP_TABLE
FSM_INLINE ISA(vd) ISA(exp_vd)(ISA(vd) x)
{
    typedef ISA(vd) VD;
    typedef ISA(vl) VL;
    VL big = (VD)((VL)x & 0x7fffffffffffffffLL) > 708.0;
    if (__builtin_expect(ISA(any_d)(big), 0))
        return ISA(exp_vd_full)(x);
    return ISA(exp_vd_fast)(x);
}
#else
FSM_INLINE ISA(vd) ISA(exp_vd)(ISA(vd) x)
{
    typedef ISA(vd) VD;
    typedef ISA(vl) VL;
    const double shift = 0x1.8p52;
    VL big = (VD)((VL)x & 0x7fffffffffffffffLL) > 708.0;
    if (__builtin_expect(ISA(any_d)(big), 0))
        return ISA(exp_vd_full)(x);
    VD kd = x * 1.4426950408889634 + shift;
    VD n = kd - shift;
    VD r = x - n * 6.93147180369123816490e-01;
    r = r - n * 1.90821492927058770002e-10;
    VD p = FSM_EXP_POLY_F64(r);
    return p * (VD)(((VL)kd + 1023) << 52);
}
#endif

FSM_INLINE ISA(vf) ISA(exp_vf)(ISA(vf) x)
{
    typedef ISA(vf) VF;
    typedef ISA(vi) VI;
    const float shift = 0x1.8p23f;
    VI big = (VF)((VI)x & 0x7fffffff) > 87.0f;
    if (__builtin_expect(ISA(any_f)(big), 0))
        return ISA(exp_vf_full)(x);
    VF kd = x * 1.44269504088896341f + shift;
    VF n = kd - shift;
    VF r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    VF p = FSM_EXP_POLY_F32(r);
    return p * (VF)(((VI)kd + 127) << 23);
}

/*
 * exp for arguments that are <= 0, -inf or NaN (x - max, the softmax case):
 * no test and no branch.  The argument is clamped at the low end (where the
 * result is 0 anyway; NaN passes the clamp), and 2^n is applied as
 * 2^(n + 64) * 2^-64: the first product is exact (its result is normal),
 * the second rounds once, also into the subnormal range.  Bit for bit the
 * result of exp_vf / exp_vd (and 1 ulp of exp) for such arguments.  Never
 * call it with a positive argument above 40 (the exponent would wrap).
 */
FSM_INLINE ISA(vf) ISA(exp_vf_np)(ISA(vf) x)
{
    typedef ISA(vf) VF;
    typedef ISA(vi) VI;
    /* kd = 1.5 * 2^23 + 191 + n: its low mantissa bits, shifted into the
       exponent field, are n + 127 + 64 (no integer add needed) */
    const float shift = 0x1.8p23f + (127 + 64);
    x = ISA(max_f)(x, (VF){0} + -110.0f);   /* keeps NaN */
    VF kd = x * 1.44269504088896341f + shift;
    VF n = kd - shift;
    VF r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    VF p = FSM_EXP_POLY_F32(r);
    return (p * (VF)((VI)kd << 23)) * 0x1p-64f;
}

#ifndef FSM_EXP_TABLE
FSM_INLINE ISA(vd) ISA(exp_vd_np)(ISA(vd) x)
{
    typedef ISA(vd) VD;
    typedef ISA(vl) VL;
    /* as for float: the low mantissa bits of kd are n + 1023 + 64 */
    const double shift = 0x1.8p52 + (1023 + 64);
    x = ISA(max_d)(x, (VD){0} + -750.0);    /* keeps NaN */
    VD kd = x * 1.4426950408889634 + shift;
    VD n = kd - shift;
    VD r = x - n * 6.93147180369123816490e-01;
    r = r - n * 1.90821492927058770002e-10;
    VD p = FSM_EXP_POLY_F64(r);
    return (p * (VD)((VL)kd << 52)) * 0x1p-64;
}
#endif

/*
 * log in plain arithmetic, vectorised, for double, for x >= 1 and finite
 * (a softmax sum: the max's own term is exp(0) = 1); other lanes give
 * garbage and the caller redoes them with libm's log.
 *   x = 2^e * m, m in [sqrt(2)/2, sqrt(2)), f = m - 1, s = f / (2 + f):
 *   log(m) = f - (f^2/2 - s (f^2/2 + R(s^2))), R the classic minimax
 *   polynomial of degree 7 in s^2 (Remez; error below 2^-58.45), then
 *   log(x) = e ln2_hi + (log(m) + e ln2_lo).  Accuracy: below 1 ulp.
 * Lets the short-row log_softmax take the logs of a block of rows at once
 * instead of one libm call per row (the call also spills every vector).
 */
FSM_INLINE ISA(vd) ISA(log_vd_ge1)(ISA(vd) x)
{
    typedef ISA(vd) VD;
    typedef ISA(vl) VL;
    /* bits of x minus those of sqrt(2)/2: the exponent field is then e */
    VL t = (VL)x - 0x3fe6a09e667f3bcdLL;
    VL e = t >> 52;
    VD m = (VD)((VL)x - (e << 52));
    VD f = m - 1.0;
    VD s = f / (2.0 + f);
    VD z = s * s, w = z * z;
    VD t1 = w * (3.999999999940941908e-01 + w * (2.222219843214978396e-01
                 + w * 1.531383769920937332e-01));
    VD t2 = z * (6.666666666666735130e-01 + w * (2.857142874366239149e-01
                 + w * (1.818357216161805012e-01 + w * 1.479819860511658591e-01)));
    VD R = t2 + t1;
    VD hfsq = 0.5 * f * f;
    /* e to double without a 64-bit integer conversion (AVX-512DQ only) */
    const VD magic = (VD){0} + 0x1.8p52;
    VD de = (VD)((VL)magic + e) - magic;
    return de * 6.93147180369123816490e-01
           - ((hfsq - (s * (hfsq + R) + de * 1.90821492927058770002e-10)) - f);
}

/* Float to double, low and high halves of a float vector: sums of float
   rows are accumulated in double.  (Generic vectors wider than the hardware
   ones compile badly with GCC, so the halves are explicit.) */
#if defined(FSM_X86) && FSM_VB == 64
FSM_INLINE ISA(vd) ISA(widen_lo)(ISA(vf) v)
{ return (ISA(vd))_mm512_cvtps_pd(_mm512_castps512_ps256((__m512)v)); }
FSM_INLINE ISA(vd) ISA(widen_hi)(ISA(vf) v)
{ return (ISA(vd))_mm512_cvtps_pd((__m256)_mm512_extractf64x4_pd((__m512d)v, 1)); }
#elif defined(FSM_X86) && FSM_VB == 32
FSM_INLINE ISA(vd) ISA(widen_lo)(ISA(vf) v)
{ return (ISA(vd))_mm256_cvtps_pd(_mm256_castps256_ps128((__m256)v)); }
FSM_INLINE ISA(vd) ISA(widen_hi)(ISA(vf) v)
{ return (ISA(vd))_mm256_cvtps_pd(_mm256_extractf128_ps((__m256)v, 1)); }
#elif defined(FSM_X86) && FSM_VB == 16
FSM_INLINE ISA(vd) ISA(widen_lo)(ISA(vf) v) { return (ISA(vd))_mm_cvtps_pd((__m128)v); }
FSM_INLINE ISA(vd) ISA(widen_hi)(ISA(vf) v)
{ return (ISA(vd))_mm_cvtps_pd(_mm_movehl_ps((__m128)v, (__m128)v)); }
#else
FSM_INLINE ISA(vd) ISA(widen_lo)(ISA(vf) v)
{
    ISA(vd) r;
    for (int j = 0; j < (int)(FSM_VB / sizeof(double)); j++) r[j] = v[j];
    return r;
}
FSM_INLINE ISA(vd) ISA(widen_hi)(ISA(vf) v)
{
    ISA(vd) r;
    for (int j = 0; j < (int)(FSM_VB / sizeof(double)); j++) r[j] = v[j + FSM_VB / sizeof(double)];
    return r;
}
#endif

/* log(x) in float for 1 <= x <= FLT_MAX (others: garbage), about 1 ulp:
   x = 2^e m, m in [sqrt(1/2), sqrt(2)), log(m) = 2 atanh(s), s = f / (2 +
   f) (|s| <= 0.172), f = m - 1 exact, to the s^9 term (truncation 0.07
   ulp); e ln2 in two parts (ln2's high part times e is exact).  On AVX-512
   the division is a 14-bit reciprocal with one Newton step. */
FSM_INLINE ISA(vf) ISA(log_vf_ge1)(ISA(vf) x)
{
    typedef ISA(vf) VF;
    typedef ISA(vi) VI;
    VI t = (VI)x - 0x3f3504f3;        /* bits of sqrt(1/2) */
    VI e = t >> 23;
    VF m = (VF)((VI)x - (e << 23));
    VF f = m - 1.0f;
    VF q = 2.0f + f;
#if defined(FSM_X86) && FSM_VB == 64
    VF r = (VF)_mm512_rcp14_ps((__m512)q);
    r = r * (2.0f - q * r);
    VF s = f * r;
#else
    VF s = f / q;
#endif
    VF z = s * s;
    VF p = z * (2.0f / 3.0f + z * (2.0f / 5.0f + z * (2.0f / 7.0f + z * (2.0f / 9.0f))));
    VF de = __builtin_convertvector(e, VF);
    return de * 0.693359375f + ((2.0f * s + s * p) + de * -2.12194440e-4f);
}

/* Streaming (non-temporal) stores of one aligned vector. */
#if defined(FSM_X86) && FSM_VB == 64
#define FSM_HAVE_STREAM 1
FSM_INLINE void ISA(stream_vf)(float *p, ISA(vf) v) { _mm512_stream_ps(p, (__m512)v); }
FSM_INLINE void ISA(stream_vd)(double *p, ISA(vd) v) { _mm512_stream_pd(p, (__m512d)v); }
#elif defined(FSM_X86) && FSM_VB == 32
#define FSM_HAVE_STREAM 1
FSM_INLINE void ISA(stream_vf)(float *p, ISA(vf) v) { _mm256_stream_ps(p, (__m256)v); }
FSM_INLINE void ISA(stream_vd)(double *p, ISA(vd) v) { _mm256_stream_pd(p, (__m256d)v); }
#elif defined(FSM_X86) && FSM_VB == 16
#define FSM_HAVE_STREAM 1
FSM_INLINE void ISA(stream_vf)(float *p, ISA(vf) v) { _mm_stream_ps(p, (__m128)v); }
FSM_INLINE void ISA(stream_vd)(double *p, ISA(vd) v) { _mm_stream_pd(p, (__m128d)v); }
#else
#define FSM_HAVE_STREAM 0
FSM_INLINE void ISA(stream_vf)(float *p, ISA(vf) v) { memcpy(p, &v, sizeof v); }
FSM_INLINE void ISA(stream_vd)(double *p, ISA(vd) v) { memcpy(p, &v, sizeof v); }
#endif
FSM_INLINE void ISA(stream_fence)(void)
{
#if defined(FSM_X86) && FSM_HAVE_STREAM
    _mm_sfence();
#endif
}

/* Partial vectors: the first r (0 <= r < lanes) elements.  Masked loads and
   stores where the ISA has them; else an unrolled loop that the compiler
   cannot turn into a call to memcpy (which costs more than the row). */
#if defined(FSM_X86) && FSM_VB == 64
FSM_INLINE ISA(vf) ISA(load_part_f)(const float *p, ptrdiff_t r, float fill)
{ return (ISA(vf))_mm512_mask_loadu_ps(_mm512_set1_ps(fill), (__mmask16)((1u << r) - 1), p); }
FSM_INLINE void ISA(store_part_f)(float *p, ISA(vf) v, ptrdiff_t r)
{ _mm512_mask_storeu_ps(p, (__mmask16)((1u << r) - 1), (__m512)v); }
FSM_INLINE ISA(vd) ISA(load_part_d)(const double *p, ptrdiff_t r, double fill)
{ return (ISA(vd))_mm512_mask_loadu_pd(_mm512_set1_pd(fill), (__mmask8)((1u << r) - 1), p); }
FSM_INLINE void ISA(store_part_d)(double *p, ISA(vd) v, ptrdiff_t r)
{ _mm512_mask_storeu_pd(p, (__mmask8)((1u << r) - 1), (__m512d)v); }
#elif defined(FSM_X86) && FSM_VB == 32
FSM_INLINE ISA(vi) ISA(mask_f)(ptrdiff_t r)
{ return (ISA(vi)){0, 1, 2, 3, 4, 5, 6, 7} < (int32_t)r; }
FSM_INLINE ISA(vl) ISA(mask_d)(ptrdiff_t r)
{ return (ISA(vl)){0, 1, 2, 3} < (int64_t)r; }
FSM_INLINE ISA(vf) ISA(load_part_f)(const float *p, ptrdiff_t r, float fill)
{
    ISA(vi) m = ISA(mask_f)(r);
    ISA(vf) v = (ISA(vf))_mm256_maskload_ps(p, (__m256i)m);
    return (ISA(vf))((m & (ISA(vi))v) | (~m & (ISA(vi))((ISA(vf)){0} + fill)));
}
/* (masked stores are microcoded and slow on AMD Zen: plain stores of 4, 2
   and 1 elements, by the bits of r) */
FSM_INLINE void ISA(store_part_f)(float *p, ISA(vf) v, ptrdiff_t r)
{
    __m128 h = _mm256_castps256_ps128((__m256)v);
    if (r & 4) {
        _mm_storeu_ps(p, h);
        h = _mm256_extractf128_ps((__m256)v, 1);
        p += 4;
    }
    if (r & 2) {
        _mm_storel_pi((__m64 *)p, h);
        h = _mm_movehl_ps(h, h);
        p += 2;
    }
    if (r & 1) _mm_store_ss(p, h);
}
FSM_INLINE ISA(vd) ISA(load_part_d)(const double *p, ptrdiff_t r, double fill)
{
    ISA(vl) m = ISA(mask_d)(r);
    ISA(vd) v = (ISA(vd))_mm256_maskload_pd(p, (__m256i)m);
    return (ISA(vd))((m & (ISA(vl))v) | (~m & (ISA(vl))((ISA(vd)){0} + fill)));
}
FSM_INLINE void ISA(store_part_d)(double *p, ISA(vd) v, ptrdiff_t r)
{
    __m128d h = _mm256_castpd256_pd128((__m256d)v);
    if (r & 2) {
        _mm_storeu_pd(p, h);
        h = _mm256_extractf128_pd((__m256d)v, 1);
        p += 2;
    }
    if (r & 1) _mm_store_sd(p, h);
}
#else
#define FSM_PART_LOOPS(SFX, TT, VV)                                           \
FSM_INLINE VV ISA(load_part_##SFX)(const TT *p, ptrdiff_t r, TT fill)         \
{                                                                             \
    VV v = (VV){0} + fill;                                                    \
    _Pragma("GCC unroll 16")                                                  \
    for (ptrdiff_t j = 0; j < (ptrdiff_t)(FSM_VB / sizeof(TT)) - 1; j++) {    \
        if (j >= r) break;                                                    \
        v[j] = p[j];                                                          \
    }                                                                         \
    return v;                                                                 \
}                                                                             \
FSM_INLINE void ISA(store_part_##SFX)(TT *p, VV v, ptrdiff_t r)               \
{                                                                             \
    _Pragma("GCC unroll 16")                                                  \
    for (ptrdiff_t j = 0; j < (ptrdiff_t)(FSM_VB / sizeof(TT)) - 1; j++) {    \
        if (j >= r) break;                                                    \
        p[j] = v[j];                                                          \
    }                                                                         \
}
FSM_PART_LOOPS(f, float, ISA(vf))
FSM_PART_LOOPS(d, double, ISA(vd))
#undef FSM_PART_LOOPS
#endif

#define FSM_T float
#define FSM_F32 1
#define FSM_SFX f32
#include "fsm_body.h"
#undef FSM_T
#undef FSM_F32
#undef FSM_SFX

#define FSM_T double
#define FSM_F32 0
#define FSM_SFX f64
#include "fsm_body.h"
#undef FSM_T
#undef FSM_F32
#undef FSM_SFX

#undef FSM_HAVE_STREAM
#undef FSM_EXP_TABLE
#undef FSM_EXP_TAB_H
#undef FSM_EXP_TAB_L
#undef ISA
