"""Reproductions of the papers' findings at CPU scale; each module is one command
(`python -m experiments.NAME`) writing a table and plots into docs/results/."""
