"""The sweep service: CLI, orchestration (Ray Tune + Optuna + MLflow) and analysis."""
