/* log softmax(h Wᵀ + b)[target] per row, the logits never leaving the cache: what a vocabulary
   layer's evaluation needs of its (N, V) logits. A block of rows computes CHUNK logits at a
   time into a scratch block on the stack and folds them into each row's running maximum and
   sum of exponentials. Called by models/kernels/vocab.py; built by models/kernels/build.py. */
#include "arith.h"

#define CHUNK 512  /* logits per row at a time: ROWS of them stay in the first-level cache */
#define ROWS 6     /* rows sharing each load of w_t: 12 vector accumulators */

/* scratch[RB][width] = bias[c0 ..] + h[RB, K] · w_t[K, c0 .. c0 + width), w_t's rows V floats
   apart, by the LSTM kernel's inner routine: a row's logits do not depend on the rows beside it. */
static inline __attribute__((always_inline)) void logits(
        const int RB, int K, int V, int c0, int width, const float *restrict h, const float *restrict w_t,
        const float *restrict bias, float scratch[][CHUNK]) {
    for (int q = 0; q < RB; q++) {
        if (bias) memcpy(scratch[q], bias + c0, sizeof(float) * width);
        else memset(scratch[q], 0, sizeof(float) * width);
    }
    accumulate_rows(RB, h, K, K, w_t + c0, V, width, scratch[0], CHUNK);
}

/* Rows of one block: out[q] = log softmax(row q)[targets[q]], 0 where the target is negative. */
static inline __attribute__((always_inline)) void block(
        const int RB, int K, int V, const float *restrict h, const float *restrict w_t,
        const float *restrict bias, const long *restrict targets, float *restrict out) {
    float scratch[RB][CHUNK], e[CHUNK], top[RB], total[RB], picked[RB];
    for (int c0 = 0; c0 < V; c0 += CHUNK) {
        const int width = V - c0 < CHUNK ? V - c0 : CHUNK;
        logits(RB, K, V, c0, width, h, w_t, bias, scratch);
        for (int q = 0; q < RB; q++) {
            const float *restrict x = scratch[q];
            const float m = max_of(x, width);
            if (c0 == 0) { top[q] = m; total[q] = 0.0f; }
            else if (m > top[q]) { total[q] *= exp_f(top[q] - m); top[q] = m; }
            if (targets[q] >= c0 && targets[q] < c0 + width) picked[q] = x[targets[q] - c0];
            for (int j = 0; j < width; j++) e[j] = exp_f(x[j] - top[q]);
            total[q] += sum_in_eights(e, width);
        }
    }
    for (int q = 0; q < RB; q++) out[q] = targets[q] < 0 ? 0.0f : picked[q] - top[q] - log_f(total[q]);
}

/* h (N, K) rows, w_t (K, V): the layer's weight transposed, bias (V) or NULL, targets (N), on up
   to `threads` threads. */
void vocab_log_probs(int threads, int N, int K, int V, const float *restrict h, const float *restrict w_t,
                     const float *restrict bias, const long *restrict targets, float *restrict out) {
    const int blocks = (N + ROWS - 1) / ROWS;
    (void)threads;  /* unused when built without OpenMP */
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1 && blocks > 1)
    for (int k = 0; k < blocks; k++) {
        const int b0 = k * ROWS;
        if (b0 + ROWS <= N) block(ROWS, K, V, h + (long)b0 * K, w_t, bias, targets + b0, out + b0);
        else for (int b = b0; b < N; b++) block(1, K, V, h + (long)b * K, w_t, bias, targets + b, out + b);
    }
}
