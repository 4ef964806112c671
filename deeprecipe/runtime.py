"""Where and how to compute: device, precision, memory format, threads — chosen by measurement.

The defaults come from benchmarks/ (see docs/performance.md): on CPUs with AVX512-BF16 or AMX,
bf16 autocast with channels_last roughly doubles conv training throughput; on GPUs bf16 is the norm.
"""
from __future__ import annotations

import functools
import os
import random
import shutil

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


@functools.lru_cache(maxsize=1)
def auto_threads() -> int:
    """Compute threads for this process: the cores other programs are not already using.

    OpenMP threads spin while they wait for each other; when another busy process holds one of their cores,
    a parallel region stalls until the scheduler returns it. Measured on a 2-core machine with two other
    busy processes: 2 threads trained 4–25× slower than 1. So a busy machine (by its 1-minute load average)
    gets fewer threads; an idle one gets every core this process may run on. Decided once per process, at its
    first run, so that a process's own training (search trials, experiments) does not talk it down later.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        busy = int(os.getloadavg()[0] + 0.5)
    except OSError:
        busy = 0
    return max(1, min(cores, cores - busy))


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op threads: the configured number, else `auto_threads()`. Returns the number used."""
    n = threads or auto_threads()
    if n != torch.get_num_threads():
        torch.set_num_threads(n)
    return n


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def check_compile_toolchain(device: torch.device) -> None:
    """torch.compile on a CPU writes and builds C++ (inductor): say so up front, not mid-training."""
    if device.type == "cpu" and not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        raise DeepRecipeError("train.compile=true on a CPU needs a C++ compiler (torch inductor builds C++) and none "
                              "is on PATH", "install one (e.g. apt install g++) or set train.compile=false")
