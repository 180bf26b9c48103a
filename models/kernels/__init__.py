"""Hand-written CPU kernels: where they apply, what they promise about numbers, how they are chosen.

- `lstm.c` (bound by `lstm.py`): the recurrence of a one-layer LSTM of hidden size ≤ 128 on
  CPU float32 (the papers' synthetic sizes, where oneDNN's fixed cost per call exceeds the work),
  forward and backward, and evaluation's shared input projections (IW-NLL).
- `vocab.c` (bound by `vocab.py`): evaluation's log-probabilities of the target words, the
  vocabulary layer's logits never written to memory.
- `build.py` builds them on first use with the machine's C compiler for a target (an
  instruction set), cached; `choice.py` resolves `model.kernels` and describes the result.

Chosen by the config key `model.kernels` (models/config.py): `auto` (the default: the kernels
built for `choice.DEFAULT_TARGET` where a compiler builds them, else torch's path, with a
warning), `torch`, or a target (`native`, `x86-64-v2` ... `x86-64-v4`, `armv8-a`: the kernels
for it, or an error). `MODELS_NATIVE` overrides it in a process. What a run used is one line,
`models.arithmetic(config)`: `train` prints it first, a sweep logs it as each trial's param and
tag `arithmetic`, and the trial table has it as a column.

What they promise:
1. **The same bits on every CPU.** A kernel's every value is a fixed sequence of IEEE-754
   single-precision +, −, ×, ÷ and comparisons (arith.h): built with `-ffp-contract=off` and
   without `-ffast-math`, so no multiply and add are fused and no sum is reordered, and with
   exp, tanh and log of our own rather than the C library's. So every target (x86-64-v2 to
   -v4, native, armv8-a) and any number of threads computes the same bits: nodes of different
   CPU generations agree. tests/test_kernels.py builds every target the machine runs and
   compares them bit for bit.
2. **Bit for bit, by the same construction:** a row's values do not depend on the rows computed
   beside it (the batch, the pass of IW-NLL it falls in); evaluation's shared-projection
   recurrence gives training's recurrence exactly, so what IW-NLL scores is what training
   computed. (A run resumed from a checkpoint equals the uninterrupted run on one machine:
   tests/test_train.py.)
3. **Not bit for bit across CPUs: torch's own operations** around the kernels (the gradients'
   matrix products, training's vocabulary layer, the optimiser, everything on torch's path) run
   in MKL and oneDNN, which choose code by the CPU's instruction set; `arithmetic` records it
   (`CPU capability AVX2`), so runs on unlike nodes can be told apart, not made equal.
4. **Against torch's path** (`model.kernels: torch`, a node without a compiler): float rounding.
   From the same weights, batch and seed, an update's loss agrees to 1e-6 and its gradient to
   1e-4 of its norm; one model's IW-NLL to 1e-5; a 30-update training at SGD lr 0.1 to 1e-4
   (tests/test_kernels.py). Rounding differences grow with training's own sensitivity, as
   any change of summation order's do: compare long runs on the two paths statistically.
5. **Elementary functions** (arith.h, tested on dense grids): exp within 1 ulp on [−87, 88],
   tanh 1.5 ulp, σ 2.5 ulp, log 1 ulp.
"""
