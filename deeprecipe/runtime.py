"""Where and how to compute: device, precision, memory format, threads — chosen by measurement.

The defaults come from benchmarks/ (see docs/performance.md): on CPUs with AVX512-BF16 or AMX,
bf16 autocast with channels_last roughly doubles conv training throughput; on GPUs bf16 is the norm.
"""
from __future__ import annotations

import functools
import os
import random
import shutil
import time
from pathlib import Path

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


def physical_cores() -> int:
    """Physical cores this process may run on (SMT siblings count once: they share one core's FPUs)."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    cores = set()
    for cpu in cpus:
        topo = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add(((topo / "physical_package_id").read_text().strip(), (topo / "core_id").read_text().strip()))
        except OSError:
            cores.add(("cpu", str(cpu)))
    return max(1, len(cores))


def _autogroup_enabled() -> bool:
    try:
        return Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    except OSError:
        return False


def _cpu_times(cpus: set[int]) -> tuple[float, float]:
    """(busy, total) jiffies summed over `cpus`, from /proc/stat.

    Time spent in niced programs does not count as busy when we are not niced ourselves: the scheduler then
    gives our threads the core whenever they want it (a nice-19 job gets ~1.5 % of a contended core), so they
    do not stall OpenMP regions. A niced process counts them: they are its peers. So does every process when the
    kernel groups the scheduling by session (autogroup): nice then only ranks programs within one session.
    """
    count_niced = os.nice(0) > 0 or _autogroup_enabled()
    busy = total = 0.0
    for line in Path("/proc/stat").read_text().splitlines():
        name, *fields = line.split()
        if not (name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus):
            continue
        values = [float(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
        total += sum(values)
        busy += sum(values) - values[3] - values[4] - (0.0 if count_niced else values[1])
    return busy, total


def busy_cores(seconds: float = 0.25) -> float:
    """How many of this process's cores other programs keep busy right now: a short /proc/stat sample.

    A short sample, not the load average: the 1-minute average still reads ~1 for a minute after a job (say
    the install) has ended, and would halve a run on an idle 2-core machine. Our own CPU time in the window
    is subtracted, so a process does not talk itself down.
    """
    cpus = set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    try:
        busy0, total0 = _cpu_times(cpus)
        own0 = time.process_time()
        time.sleep(seconds)
        busy1, total1 = _cpu_times(cpus)
        own1 = time.process_time()
    except (OSError, ValueError):
        return 0.0
    if total1 <= total0:
        return 0.0
    share = (busy1 - busy0) / (total1 - total0)            # fraction of all these CPUs' time spent busy
    others = share * len(cpus) - (own1 - own0) / seconds   # in cores, less our own
    return max(0.0, others)


@functools.lru_cache(maxsize=1)
def auto_threads() -> int:
    """Compute threads for this process: the physical cores other programs are not using now.

    OpenMP threads spin while they wait for each other; when another busy process holds one of their cores,
    a parallel region stalls until the scheduler returns it. Measured on a 2-core machine with two other
    busy processes: 2 threads trained 4–25× slower than 1. So cores that other programs keep more than half
    busy are left to them; an idle machine gets every physical core. Decided once per process, at its first
    run, so that a process's own training (search trials, experiments) does not talk it down later.
    """
    cores = physical_cores()
    return max(1, cores - int(busy_cores() + 0.5))


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op threads: the configured number, else `auto_threads()`. Returns the number used."""
    n = threads or auto_threads()
    if n != torch.get_num_threads():
        torch.set_num_threads(n)
    return n


M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's mallopt parameter numbers (malloc.h)
HEAP_TRIM_BYTES = 256 << 20            # free memory at the heap's top kept for the next step, not given back


@functools.lru_cache(maxsize=None)
def keep_large_blocks_in_the_heap() -> bool:
    """Serve large CPU tensors from malloc's heap instead of fresh mmaps (glibc only; once per process).

    glibc maps every block above its mmap threshold (≤ 32 MB) afresh and unmaps it when freed, so each training
    step at photo sizes page-faults its batch and activations in again: filling a new 38 MB batch of 64 images at
    224 px took 55 ms, refilling one 6 ms, and training the default convnet at batch 64 ran at 69–72 images/s
    against 92–109 with this (peak memory 1.74 → 1.94 GB; docs/performance.md). Returns whether it applied."""
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, HEAP_TRIM_BYTES))
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl): its allocator's own policy stands
        return False


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
