"""The GPU path: data on the GPU, bf16 autocast, channels_last — exercised when a GPU is present."""
import pytest
import torch

from deeprecipe.api import train
from deeprecipe.session import Session
from deeprecipe.config import resolve_config

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible")


@needs_gpu
def test_training_on_the_gpu_keeps_data_on_the_device(tmp_path, mnist_small_npz):
    cfg = resolve_config(None, [f"data.spec={mnist_small_npz}", "train.device=cuda", "train.epochs=2"])
    session = Session.create(cfg)
    assert session.device.type == "cuda"
    assert session.precision == ("bf16" if torch.cuda.is_bf16_supported() else "fp16")
    loader = session.data.loader("train", cfg, session.device, train=True, channels_last=session.channels_last)
    x, y = next(iter(loader))
    assert x.is_cuda and y.is_cuda and x.is_contiguous(memory_format=torch.channels_last)
    summary = train(cfg, out=tmp_path / "gpu", show_progress=False)
    assert summary["device"] == "cuda" and summary["test_acc"] > 0.5
