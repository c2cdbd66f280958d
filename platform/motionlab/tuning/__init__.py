"""Sweeps: search spaces, Tune trials that run TorchTrainers, one MLflow child run per trial."""
