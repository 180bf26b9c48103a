/* The recurrence of a small one-layer LSTM on float32, gates in torch's order (i, f, g, o):
   the per-step work, which oneDNN's LSTM surrounds with a fixed cost larger than the work at
   these sizes (docs/benchmarks.md). models/kernels/build.py builds this file with the machine's C
   compiler; models/kernels/lstm.py calls it and computes the gradients of the inputs and weights from
   dgates with torch.

   Layouts, B rows of T steps, G = 4H: x (B, T, I) the inputs; hs (B, T+1, H) the hidden
   states, hs[:, 0] the initial one; cs (T+1, B, H) the cells, cs[0] the initial one;
   act (T, B, G) the gates after their activations; tc (T, B, H) tanh of the cells.
   lstm_project computes the part of the input projection that repeats once (a decoder's W_z z
   per row, passed to lstm_forward as `own`); without gradients, lstm_forward_shared also shares
   a sentence's word projection among its k samples (IW-NLL). */
#include "arith.h"

/* out[rows, M] += in[rows, R] · mat[R, M] (row strides ins, outs): four rows at a time, then one. */
static void accumulate(int rows, const float *restrict in, long ins, int R, const float *restrict mat, int M,
                       float *restrict out, long outs) {
    int b = 0;
    for (; b + 4 <= rows; b += 4) accumulate_rows(4, in + b * ins, ins, R, mat, M, M, out + b * outs, outs);
    for (; b < rows; b++) accumulate_rows(1, in + b * ins, ins, R, mat, M, M, out + b * outs, outs);
}

/* One row's step from its gates' pre-activations a (4H), in place, to the gates: the cell c from
   c_prev, tanh(c) into tcr and h. c may be c_prev. */
static inline void cell(int H, float *restrict a, const float *c_prev, float *c, float *restrict tcr,
                        float *restrict h) {
    for (int n = 0; n < 2 * H; n++) a[n] = sigmoid_f(a[n]);
    for (int n = 2 * H; n < 3 * H; n++) a[n] = tanh_f(a[n]);
    for (int n = 3 * H; n < 4 * H; n++) a[n] = sigmoid_f(a[n]);
    for (int j = 0; j < H; j++) c[j] = a[H + j] * c_prev[j] + a[j] * a[2 * H + j];
    for (int j = 0; j < H; j++) tcr[j] = tanh_f(c[j]);
    for (int j = 0; j < H; j++) h[j] = a[3 * H + j] * tcr[j];
}

/* Rows are independent over the whole sequence, so each thread takes whole blocks of ROWS rows
   through every step: no barrier between steps. */
#define ROWS 4

/* Rows b0 .. b1 - 1 of lstm_forward. */
static void forward_rows(int b0, int b1, int T, int B, int H, int I, const float *restrict x,
                         const float *restrict w_ih_t, const float *restrict bias, const float *restrict own,
                         const float *restrict w_hh_t, float *restrict hs, float *restrict cs, float *restrict act, float *restrict tc) {
    const int G = 4 * H, rows = b1 - b0;
    const long hs_row = (long)(T + 1) * H;
    for (int t = 0; t < T; t++) {
        float *restrict gates = act + ((long)t * B + b0) * G;
        for (int b = 0; b < rows; b++) memcpy(gates + (long)b * G, bias, sizeof(float) * G);
        accumulate(rows, x + (long)b0 * T * I + (long)t * I, (long)T * I, I, w_ih_t, G, gates, G);
        if (own)
            for (long n = 0; n < (long)rows * G; n++) gates[n] += own[(long)b0 * G + n];
        accumulate(rows, hs + b0 * hs_row + (long)t * H, hs_row, H, w_hh_t, G, gates, G);
        for (int b = b0; b < b1; b++) {
            float *restrict a = act + ((long)t * B + b) * G, *restrict tcr = tc + ((long)t * B + b) * H;
            const float *restrict c_prev = cs + ((long)t * B + b) * H;
            float *restrict c = cs + ((long)(t + 1) * B + b) * H, *restrict h = hs + b * hs_row + (long)(t + 1) * H;
            cell(H, a, c_prev, c, tcr, h);
        }
    }
}

/* w_ih_t (I, G) and w_hh_t (H, G): the weights transposed; bias (G): both biases summed; own
   (B, G) or NULL: a row's part of the gates that is the same at every step (from lstm_project:
   a decoder's W_z z), added after the input projection. Fills hs[:, 1:], cs[1:], act and tc, on
   up to `threads` threads. The input projection is done here too, a step at a time, so that it
   also computes each row on its own (a library GEMM's rounding may depend on the number of
   rows). */
void lstm_forward(int threads, int T, int B, int H, int I, const float *restrict x,
                  const float *restrict w_ih_t, const float *restrict bias, const float *restrict own,
                  const float *restrict w_hh_t,
                  float *restrict hs, float *restrict cs, float *restrict act, float *restrict tc) {
    const int blocks = (B + ROWS - 1) / ROWS;
    (void)threads;  /* unused when built without OpenMP */
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1 && blocks > 1)
    for (int k = 0; k < blocks; k++) {
        const int b0 = k * ROWS, b1 = b0 + ROWS < B ? b0 + ROWS : B;
        forward_rows(b0, b1, T, B, H, I, x, w_ih_t, bias, own, w_hh_t, hs, cs, act, tc);
    }
}

/* Rows b0 .. b1 - 1 of lstm_backward. */
static void backward_rows(int b0, int b1, int T, int B, int H, const float *restrict grad_out,
                          const float *restrict w, const float *restrict cs, const float *restrict act,
                          const float *restrict tc, float *restrict dgates, float *restrict dh, float *restrict dc) {
    const int G = 4 * H;
    for (int t = T - 1; t >= 0; t--) {
        for (int b = b0; b < b1; b++) {
            const long step = (long)t * B + b, row = (long)b * T + t;
            const float *restrict a = act + step * G, *restrict tcr = tc + step * H;
            const float *restrict go = grad_out + row * H, *restrict c_prev = cs + step * H;
            float *restrict d = dgates + row * G, *restrict dhr = dh + (long)b * H, *restrict dcr = dc + (long)b * H;
            for (int j = 0; j < H; j++) {
                const float i = a[j], f = a[H + j], g = a[2 * H + j], o = a[3 * H + j];
                const float dhj = go[j] + dhr[j];
                const float dcj = dcr[j] + dhj * o * (1.0f - tcr[j] * tcr[j]);
                d[j] = dcj * g * i * (1.0f - i);
                d[H + j] = dcj * c_prev[j] * f * (1.0f - f);
                d[2 * H + j] = dcj * i * (1.0f - g * g);
                d[3 * H + j] = dhj * tcr[j] * o * (1.0f - o);
                dcr[j] = dcj * f;
            }
        }
        memset(dh + (long)b0 * H, 0, sizeof(float) * (b1 - b0) * H);
        accumulate(b1 - b0, dgates + ((long)b0 * T + t) * G, (long)T * G, G, w, H, dh + (long)b0 * H, H);
    }
}

/* grad_out (B, T, H): d loss / d h_t; w (G, H): W_hh. Fills dgates (B, T, G) with d loss / d
   the gates' pre-activations; dh, dc (B, H): in, the gradient reaching the last state; out,
   the initial state's. */
void lstm_backward(int threads, int T, int B, int H, const float *restrict grad_out, const float *restrict w,
                   const float *restrict cs, const float *restrict act, const float *restrict tc,
                   float *restrict dgates, float *restrict dh, float *restrict dc) {
    const int blocks = (B + ROWS - 1) / ROWS;
    (void)threads;
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1 && blocks > 1)
    for (int k = 0; k < blocks; k++) {
        const int b0 = k * ROWS, b1 = b0 + ROWS < B ? b0 + ROWS : B;
        backward_rows(b0, b1, T, B, H, grad_out, w, cs, act, tc, dgates, dh, dc);
    }
}

/* out (N, G) = bias (G, or NULL for none) + x (N, I) · w_t (I, G), each row on its own, summed in
   the order lstm_forward sums: part of the gates' pre-activations, computed once for inputs that
   many rows or steps share. */
void lstm_project(int threads, int N, int I, int G, const float *restrict x, const float *restrict w_t,
                  const float *restrict bias, float *restrict out) {
    const int blocks = (N + ROWS - 1) / ROWS;
    (void)threads;
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1 && blocks > 1)
    for (int k = 0; k < blocks; k++) {
        const int b0 = k * ROWS, b1 = b0 + ROWS < N ? b0 + ROWS : N;
        for (int b = b0; b < b1; b++) {
            if (bias) memcpy(out + (long)b * G, bias, sizeof(float) * G);
            else memset(out + (long)b * G, 0, sizeof(float) * G);
        }
        accumulate(b1 - b0, x + (long)b0 * I, I, I, w_t, G, out + (long)b0 * G, G);
    }
}

/* The forward pass without gradients of rows whose inputs are split in two projections (from
   lstm_project): row b (rows first .. first + B - 1 of the whole) has the gates' pre-activations
   shared[(first + b) / S, t] + own[b] + h · w_hh_t at step t, S consecutive rows sharing each
   (T, G) block of `shared` (a sentence's words, its S samples' latents in `own`). Fills
   hs[:, 1:] (B, T+1, H); cs (B, H) holds the initial cells and ends with the last. */
void lstm_forward_shared(int threads, int T, int B, int H, int S, long first, const float *restrict shared,
                         const float *restrict own, const float *restrict w_hh_t, float *restrict hs,
                         float *restrict cs) {
    const int G = 4 * H, blocks = (B + ROWS - 1) / ROWS;
    const long hs_row = (long)(T + 1) * H;
    (void)threads;
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1 && blocks > 1)
    for (int k = 0; k < blocks; k++) {
        const int b0 = k * ROWS, rows = b0 + ROWS < B ? ROWS : B - b0;
        float gates[ROWS * G], tanh_c[H];
        for (int t = 0; t < T; t++) {
            for (int q = 0; q < rows; q++) {
                const float *restrict s = shared + ((first + b0 + q) / S * T + t) * G;
                const float *restrict o = own + (long)(b0 + q) * G;
                for (int n = 0; n < G; n++) gates[q * G + n] = s[n] + o[n];
            }
            accumulate(rows, hs + b0 * hs_row + (long)t * H, hs_row, H, w_hh_t, G, gates, G);
            for (int q = 0; q < rows; q++) {
                float *c = cs + (long)(b0 + q) * H;
                cell(H, gates + q * G, c, c, tanh_c, hs + (b0 + q) * hs_row + (long)(t + 1) * H);
            }
        }
    }
}

/* y[i] = f(x[i]) for the functions of arith.h, f = 0 exp, 1 tanh, 2 σ, 3 log: for tests of their
   accuracy and of their agreement across build targets. */
void arith_apply(int f, long n, const float *restrict x, float *restrict y) {
    for (long i = 0; i < n; i++)
        y[i] = f == 0 ? exp_f(x[i]) : f == 1 ? tanh_f(x[i]) : f == 2 ? sigmoid_f(x[i]) : log_f(x[i]);
}
