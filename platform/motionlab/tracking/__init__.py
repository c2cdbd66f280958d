"""Experiment tracking conventions and the figures that go with a run."""
