"""How many optimizer steps a run takes, and the default batch size that keeps small training sets above a floor.

A folder of a few hundred photos at batch 64 gives 4 batches an epoch — 32 steps in the default 8 epochs, too few
for batch-norm statistics and the lr schedule to settle (runs end "not converged", or at 0.87 where batch 16
reaches 1.00; `benchmarks/batch_size.py`). Unless the config names a batch size, the largest of 64, 32 and 16
that gives the run FEW_STEPS steps is used; the built-in data sets keep 64.
"""
from __future__ import annotations

FEW_STEPS = 100  # optimizer steps in a whole run below which batch-norm statistics and the schedule barely settle
AUTO_BATCH_SIZES = (64, 32, 16)  # the default batch size, and the smaller ones a small training set falls back to


def steps_per_epoch(train_images: int, batch_size: int, world_size: int = 1) -> int:
    per_process = -(-train_images // max(1, world_size))
    return -(-per_process // batch_size)


def auto_batch_size(train_images: int, epochs: int, world_size: int = 1) -> int:
    """The largest of AUTO_BATCH_SIZES whose run reaches FEW_STEPS optimizer steps (the smallest when none does)."""
    for size in AUTO_BATCH_SIZES:
        if steps_per_epoch(train_images, size, world_size) * epochs >= FEW_STEPS:
            return size
    return AUTO_BATCH_SIZES[-1]


def few_steps_note(batches_per_epoch: int, epochs: int, batch_size: int) -> str:
    """A one-line warning for a run of very few optimizer steps, with a batch size and an epoch count that would
    give it FEW_STEPS ('' when it has enough)."""
    steps = batches_per_epoch * epochs
    if steps >= FEW_STEPS or steps == 0:
        return ""
    smaller = batch_size
    while smaller > 8 and steps * batch_size // smaller < FEW_STEPS:
        smaller //= 2
    longer = -(-FEW_STEPS // batches_per_epoch)
    change = (f"try train.batch_size={smaller} or train.epochs={longer}" if smaller < batch_size
              else f"try train.epochs={longer}")
    return (f"this run takes only {steps} optimizer steps ({batches_per_epoch} per epoch × {epochs} epochs): "
            f"batch-norm statistics and the lr schedule need more — {change}")
