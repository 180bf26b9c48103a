"""Analysing finished sweeps."""
