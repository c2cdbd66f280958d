"""Per-worker training loops, schedules, checkpoints and evaluation."""
