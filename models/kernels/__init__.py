"""Hand-written CPU kernels and their torch bindings: `lstm.c` (a small LSTM's recurrence) and
`vocab.c` (the vocabulary layer's log-probabilities without logits), built by `build.py`."""
