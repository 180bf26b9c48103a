/* log softmax(logits + bias)[target] per row, with no (N, V) output: what a vocabulary
   layer's evaluation needs of its (N, V) logits. Called by models/nets.py on rows the torch
   matrix product has just written; built by models/native.py. */
#include <math.h>
#include <string.h>

typedef float v8 __attribute__((vector_size(32)));

static inline v8 load8(const float *p) { v8 v; memcpy(&v, p, sizeof v); return v; }

/* logits (N, V) rows, bias (V) or NULL, targets (N): out[i] = log softmax(row i)[target],
   0 where the target is negative (ignored). scratch: V floats. The sum runs over eight lanes
   in a fixed order. */
void log_softmax_pick(int N, int V, const float *restrict logits, const float *restrict bias,
                      const long *restrict targets, float *restrict out, float *restrict scratch) {
    for (int i = 0; i < N; i++) {
        const float *restrict x = logits + (long)i * V;
        const long target = targets[i];
        if (target < 0) { out[i] = 0.0f; continue; }
        if (bias) for (int n = 0; n < V; n++) scratch[n] = x[n] + bias[n];
        else memcpy(scratch, x, sizeof(float) * V);
        float top = scratch[0];
        for (int n = 1; n < V; n++) top = fmaxf(top, scratch[n]);  /* max: the same in any order */
        const float picked = scratch[target] - top;
        for (int n = 0; n < V; n++) scratch[n] = expf(scratch[n] - top);
        v8 s = {0};
        int n = 0;
        for (; n + 8 <= V; n += 8) s += load8(scratch + n);
        float total = 0.0f;
        for (int q = 0; q < 8; q++) total += s[q];
        for (; n < V; n++) total += scratch[n];
        out[i] = picked - logf(total);
    }
}
