/* The arithmetic both kernels share, written so that its results are the same bits on every
   CPU: each value is a fixed sequence of IEEE-754 single-precision +, −, ×, ÷ and comparisons.
   models/kernels/build.py compiles with -ffp-contract=off and without -ffast-math, so the
   compiler may neither fuse a multiply and an add (which some CPUs can and others cannot) nor
   reorder a sum; vectors of any width compute each lane as the scalar code would. exp, tanh and
   log are our own (Cephes' polynomials), not the C library's, whose results differ between
   libm versions and between its scalar and vector variants. */
#ifndef KERNELS_ARITH_H
#define KERNELS_ARITH_H

#include <stdint.h>
#include <string.h>

/* Vectors of the target's register width: a scalar times a vector wider than the registers
   is lowered through memory, many times slower. The width changes no value: every operation
   is lane by lane. */
#ifdef __AVX__
#define LANES 8
#else
#define LANES 4  /* SSE, NEON */
#endif
typedef float vf __attribute__((vector_size(4 * LANES)));
typedef int32_t vi __attribute__((vector_size(4 * LANES)));

static inline vf loadv(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
static inline void storev(float *p, vf v) { memcpy(p, &v, sizeof v); }
static inline vf maxv(vf a, vf b) { const vi a_larger = a > b; return (vf)((a_larger & (vi)a) | (~a_larger & (vi)b)); }

/* y[RB, M] += x[RB, R] · mat[R, M]: rows of x, y and mat xs, ys and ms floats apart. RB rows share
   each load of mat, 2 · LANES columns at a time. Every element sums its R products in the order
   r = 0, 1, ..., as y + x₀m₀ + x₁m₁ + ..., whichever block or tail it falls in: a row's values do
   not depend on the rows computed beside it, nor on which routine called this one. */
static inline __attribute__((always_inline)) void accumulate_rows(
        const int RB, const float *restrict x, long xs, int R, const float *restrict mat, long ms, int M,
        float *restrict y, long ys) {
    int n = 0;
    for (; n + 2 * LANES <= M; n += 2 * LANES) {
        vf lo[RB], hi[RB];
        for (int q = 0; q < RB; q++) { lo[q] = loadv(y + q * ys + n); hi[q] = loadv(y + q * ys + n + LANES); }
        for (int r = 0; r < R; r++) {
            const vf m0 = loadv(mat + r * ms + n), m1 = loadv(mat + r * ms + n + LANES);
            for (int q = 0; q < RB; q++) { const float v = x[q * xs + r]; lo[q] += v * m0; hi[q] += v * m1; }
        }
        for (int q = 0; q < RB; q++) { storev(y + q * ys + n, lo[q]); storev(y + q * ys + n + LANES, hi[q]); }
    }
    for (; n + LANES <= M; n += LANES) {
        vf a[RB];
        for (int q = 0; q < RB; q++) a[q] = loadv(y + q * ys + n);
        for (int r = 0; r < R; r++) {
            const vf m = loadv(mat + r * ms + n);
            for (int q = 0; q < RB; q++) a[q] += x[q * xs + r] * m;
        }
        for (int q = 0; q < RB; q++) storev(y + q * ys + n, a[q]);
    }
    for (; n < M; n++) {
        float a[RB];
        for (int q = 0; q < RB; q++) a[q] = y[q * ys + n];
        for (int r = 0; r < R; r++) {
            const float m = mat[r * ms + n];
            for (int q = 0; q < RB; q++) a[q] += x[q * xs + r] * m;
        }
        for (int q = 0; q < RB; q++) y[q * ys + n] = a[q];
    }
}

/* Σ e[0 .. n) in one order on every target: eight running sums, element j in sum j mod 8, then
   the eight in order and the tail. */
static inline float sum_in_eights(const float *restrict e, int n) {
    vf s[8 / LANES] = {0};
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int k = 0; k < 8 / LANES; k++) s[k] += loadv(e + j + k * LANES);
    float sum = 0.0f;
    for (int l = 0; l < 8; l++) sum += s[l / LANES][l % LANES];
    for (; j < n; j++) sum += e[j];
    return sum;
}

/* max e[0 .. n), n > 0: the same in any order. */
static inline float max_of(const float *restrict e, int n) {
    float m = e[0];
    int j = 0;
    if (n >= LANES) {
        vf v = loadv(e);
        for (j = LANES; j + LANES <= n; j += LANES) v = maxv(v, loadv(e + j));
        for (int l = 0; l < LANES; l++) m = v[l] > m ? v[l] : m;
    }
    for (; j < n; j++) m = e[j] > m ? e[j] : m;
    return m;
}

static inline float bits_to_float(int32_t i) { float f; memcpy(&f, &i, sizeof f); return f; }

/* e^x to about 1 ulp; 0 below −87 (where e^x < 2⁻¹²⁵), +inf above 88. e^x = 2ⁿ e^r with
   n = round(x / ln 2) and r = x − n ln 2 in two parts (Cody and Waite), e^r by Cephes' expf
   polynomial on |r| ≤ ln 2 / 2. */
static inline float exp_f(float x) {
    const float round = 0x1.8p23f;  /* adding and subtracting it rounds to an integer */
    const float c = x > 88.0f ? 88.0f : (x < -87.0f ? -87.0f : x);
    const float n = (c * 1.44269504088896341f + round) - round;
    float r = c - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    const float r2 = r * r;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r2 + r + 1.0f;
    const float e = p * bits_to_float(((int32_t)n + 127) << 23);
    return x > 88.0f ? __builtin_inff() : (x < -87.0f ? 0.0f : e);
}

/* tanh x to about 2 ulp: Cephes' tanhf, an odd polynomial below |x| = 0.625, 1 − 2 / (e^2|x| + 1)
   above, with x's sign. */
static inline float tanh_f(float x) {
    const float a = x < 0.0f ? -x : x;
    const float z = x * x;
    float p = -5.70498872745e-3f;
    p = p * z + 2.06390887954e-2f;
    p = p * z - 5.37397155531e-2f;
    p = p * z + 1.33314422036e-1f;
    p = p * z - 3.33332819422e-1f;
    const float small = p * z * x + x;
    const float large = 1.0f - 2.0f / (exp_f(a + a) + 1.0f);
    return a < 0.625f ? small : (x < 0.0f ? -large : large);
}

/* σ(x) = 1 / (1 + e^−x): 0 where e^−x is infinite, 1 where it is 0. */
static inline float sigmoid_f(float x) { return 1.0f / (1.0f + exp_f(-x)); }

/* log x for a positive normal x, to about 1 ulp: x = m 2ᵉ with m in [√½, √2), log m by Cephes'
   logf polynomial in m − 1. */
static inline float log_f(float x) {
    int32_t i;
    memcpy(&i, &x, sizeof i);
    int32_t e = ((i >> 23) & 0xff) - 126;
    float m = bits_to_float((i & 0x007fffff) | 0x3f000000);  /* in [0.5, 1) */
    if (m < 0.707106781186547524f) { e -= 1; m = m + m - 1.0f; } else { m = m - 1.0f; }
    const float z = m * m;
    float p = 7.0376836292e-2f;
    p = p * m - 1.1514610310e-1f;
    p = p * m + 1.1676998740e-1f;
    p = p * m - 1.2420140846e-1f;
    p = p * m + 1.4249322787e-1f;
    p = p * m - 1.6668057665e-1f;
    p = p * m + 2.0000714765e-1f;
    p = p * m - 2.4999993993e-1f;
    p = p * m + 3.3333331174e-1f;
    float y = p * m * z;
    y = y + (float)e * -2.12194440e-4f;
    y = y - 0.5f * z;
    return (m + y) + (float)e * 0.693359375f;
}

#endif
