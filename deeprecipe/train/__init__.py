"""Training: optimizers, schedules, losses, metrics, checkpoints and the loop itself."""
