"""Optional TensorBoard logging (`--set log.tensorboard=true`): epoch scalars from a trainer hook."""
from __future__ import annotations

from pathlib import Path

from .errors import DeepRecipeError

SCALARS = ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "images_per_second")


def tensorboard_writer(log_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise DeepRecipeError("log.tensorboard=true needs the tensorboard package",
                              "pip install 'deeprecipe[tensorboard]', or drop log.tensorboard") from None
    return SummaryWriter(log_dir=str(log_dir))


def attach_tensorboard(trainer) -> None:
    """Write each epoch's metrics to RUN/tensorboard/ (view with `tensorboard --logdir RUN`)."""
    if trainer.run_dir is None:
        return
    writer = tensorboard_writer(trainer.run_dir / "tensorboard")

    def on_epoch_end(_trainer, row: dict) -> None:
        for key in SCALARS:
            if row.get(key) is not None:
                writer.add_scalar(key.replace("_", "/", 1) if key.startswith(("train_", "val_")) else key,
                                  row[key], row["epoch"])
        writer.flush()

    trainer.hooks["on_epoch_end"].append(on_epoch_end)
    trainer.hooks["on_fit_end"].append(lambda _trainer: writer.close())
