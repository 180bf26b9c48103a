"""The names that cross module and file boundaries, defined once: a trial's status and its metrics.

A trial reports its validation metrics to Tune every epoch, then results with TEST_PROGRESS
while its test evaluation runs, and last a result with TRIAL_STATUS and its test metrics
(engine.trainable). The same names are the keys of MLflow's metrics and tags, the trial
table's columns and what objectives may name. Ray Tune keeps the keys of its results in one
module the same way (ray/tune/result.py). Imports nothing, so every part may import it.
"""

TRIAL_STATUS = "trial_status"
"""Key of a trial's last result, set by the trainable (how the trial ended: one of FINISHED),
and tag of its MLflow run (RUNNING while an attempt trains, then how it ended)."""
RUNNING = "running"
PENDING = "pending"
COMPLETED = "completed"
PRUNED = "pruned"
FAILED = "failed"
OUTCOMES = (RUNNING, PENDING, COMPLETED, PRUNED, FAILED)
"""A trial's state as the driver shows it; PENDING: not started yet, or stopped by an
interrupt and continued by `resume`."""
FINISHED = (COMPLETED, PRUNED, FAILED)
"""How a trial ends: trained to the end and tested, stopped by successive halving, or failed."""
TEST_PROGRESS = "test_progress"
"""Result key of a trial's reports during its test evaluation: the fraction of the test split
scored. Those results also hold `test_time` (seconds since the evaluation began) and the last
epoch's metrics and number, `epoch_time` among them."""

TEST = "test/"
VAL = "val/"
TEST_METRICS = tuple(TEST + m for m in ("nll", "ppl", "neg_elbo", "recon", "kl", "mi", "au"))
VAL_METRICS = tuple(VAL + m for m in ("neg_elbo", "recon", "kl", "mi", "au"))
METRICS = TEST_METRICS + VAL_METRICS
"""What objectives may name: the same names in Tune, MLflow, the trial table and the reports."""
VAL_NEG_ELBO = VAL + "neg_elbo"
"""The validation -ELBO, which every trial logs every epoch: its last step is the epochs trained."""
TRAIN_LOSS = "train/loss"
VALIDATION_OF = {"test/nll": VAL_NEG_ELBO, "test/ppl": VAL_NEG_ELBO, "test/neg_elbo": VAL_NEG_ELBO,
                 "test/recon": "val/recon", "test/kl": "val/kl", "test/mi": "val/mi", "test/au": "val/au"}
"""The metric reported every epoch that stands for an objective known only at the end."""
MAXIMISED = ("au", "mi")
"""Metrics better when larger (test/ or val/); every other metric is better when smaller."""
