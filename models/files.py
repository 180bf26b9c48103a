"""The files a training writes (`train --out`, every trial's artifacts), named in a module of
their own so that command lines name them without importing torch."""

MODEL_FILE = "model.pt"
"""The trained model in one file (models/saved.py)."""

SAMPLES_FILE = "samples.txt"
RECONSTRUCTIONS_FILE = "reconstructions.txt"
SAMPLES = 20
"""Prior samples in samples.txt."""
RECONSTRUCTIONS = 20
"""Validation sentences (the first of the split, so the same for every trial) in reconstructions.txt."""


class ModelFileError(ValueError):
    """A model file is missing, unreadable, too large, or does not fit the model or corpus."""
