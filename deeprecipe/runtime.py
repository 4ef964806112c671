"""Where and how to compute: device, precision, memory format, threads — chosen by measurement.

The defaults come from benchmarks/ (see docs/performance.md): on CPUs with AVX512-BF16 or AMX,
bf16 autocast with channels_last roughly doubles conv training throughput; on GPUs bf16 is the norm.
"""
from __future__ import annotations

import os
import random

import numpy as np
import torch

from .errors import DeepRecipeError


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise DeepRecipeError(f"train.device {name!r} is not a device", "use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeepRecipeError("train.device asks for cuda but no GPU is visible", "use train.device=auto or cpu")
    return dev


def cpu_has_bf16() -> bool:
    try:
        return bool(torch.backends.cpu.get_cpu_capability() in ("AVX512", "AVX512_BF16", "AMX")
                    and torch.cpu._is_avx512_bf16_supported())
    except Exception:
        return False


def pick_precision(precision: str, device: torch.device) -> str:
    if precision != "auto":
        if precision == "fp16" and device.type == "cpu":
            raise DeepRecipeError("train.precision=fp16 is for GPUs", "use bf16 or fp32 on a CPU")
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_bf16() else "fp32"


def pick_channels_last(flag: bool | None, model_is_conv: bool) -> bool:
    return model_is_conv if flag is None else flag


def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
