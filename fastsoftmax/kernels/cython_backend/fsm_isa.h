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
/* doubles with as many lanes as ISA(vf): float sums are accumulated in double */
typedef double ISA(vd2) __attribute__((vector_size(2 * FSM_VB)));
typedef int64_t ISA(vl2) __attribute__((vector_size(2 * FSM_VB)));

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
#define FSM_DEFINE_EXP_F64(NAME, VD, VL)                                      \
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
    VD p = r * (1.0 / 6227020800.0) + (1.0 / 479001600.0);                    \
    p = p * r + (1.0 / 39916800.0);                                           \
    p = p * r + (1.0 / 3628800.0);                                            \
    p = p * r + (1.0 / 362880.0);                                             \
    p = p * r + (1.0 / 40320.0);                                              \
    p = p * r + (1.0 / 5040.0);                                               \
    p = p * r + (1.0 / 720.0);                                                \
    p = p * r + (1.0 / 120.0);                                                \
    p = p * r + (1.0 / 24.0);                                                 \
    p = p * r + (1.0 / 6.0);                                                  \
    p = p * r + 0.5;                                                          \
    p = p * r + 1.0;                                                          \
    p = p * r + 1.0;                                                          \
    VD h1 = (n * 0.5 + shift) - shift;  /* round-half-even(n / 2) */          \
    VD h2 = n - h1;                                                           \
    VL e1 = ((VL)(h1 + shift) + 1023) << 52;                                  \
    VL e2 = ((VL)(h2 + shift) + 1023) << 52;                                  \
    return (p * (VD)e1) * (VD)e2;                                             \
}

FSM_DEFINE_EXP_F64(ISA(exp_vd), ISA(vd), ISA(vl))
FSM_DEFINE_EXP_F64(ISA(exp_vd2), ISA(vd2), ISA(vl2))

/* exp for float, same scheme: Taylor degree 7 (truncation < 6e-9), clamps
   at -105 (result 0) and 89 (result inf).  Accuracy: 1-2 ulp. */
FSM_INLINE ISA(vf) ISA(exp_vf)(ISA(vf) x)
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
    VF p = r * (1.0f / 5040.0f) + (1.0f / 720.0f);
    p = p * r + (1.0f / 120.0f);
    p = p * r + (1.0f / 24.0f);
    p = p * r + (1.0f / 6.0f);
    p = p * r + 0.5f;
    /* 1 + (r + r^2 q): the last two roundings are the small ones */
    p = (p * (r * r) + r) + 1.0f;
    VF h1 = (n * 0.5f + shift) - shift;
    VF h2 = n - h1;
    VI e1 = ((VI)(h1 + shift) + 127) << 23;
    VI e2 = ((VI)(h2 + shift) + 127) << 23;
    return (p * (VF)e1) * (VF)e2;
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
#undef ISA
