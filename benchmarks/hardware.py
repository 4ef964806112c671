"""What the machine could do at most: peak FLOP/s of this CPU (or GPU), and model FLOPs per image.

CPU peak = cores × GHz × FMA pipes × 2 (multiply + add) × lanes. The lanes per pipe depend on the
datapath, not on the instruction set's width: AMD Zen 4 runs AVX-512 on two 256-bit pipes (8 fp32
lanes each); Intel server cores with AVX-512 have two 512-bit FMA pipes (16 lanes). bf16 dot-product
instructions (AVX512_BF16 `vdpbf16ps`) do two products per fp32 lane, so the bf16 peak is twice fp32.
The GPU peaks are the vendors' dense (no sparsity) tensor-core numbers.
"""
from __future__ import annotations

import os
import platform
import re
import subprocess

import torch

# Dense bf16 tensor-core TFLOP/s from NVIDIA's data sheets, matched against torch.cuda.get_device_name().
GPU_BF16_TFLOPS = {"H200": 989.0, "H100 SXM": 989.0, "H100 80GB HBM3": 989.0, "H100 PCIe": 756.0, "H100": 756.0,
                   "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0, "RTX 4090": 165.0, "RTX 3090": 71.0}


def lscpu() -> dict[str, str]:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in text.splitlines()) if v}


def physical_cores(info: dict[str, str] | None = None) -> int:
    info = info if info is not None else lscpu()
    try:
        return int(info["Core(s) per socket"]) * int(info.get("Socket(s)", "1"))
    except (KeyError, ValueError):
        return os.cpu_count() or 1


def cpu_ghz(info: dict[str, str]) -> float:
    """Max clock when the kernel reports one, else the TSC rate (BogoMIPS / 2), else /proc/cpuinfo."""
    if info.get("CPU max MHz"):
        return float(info["CPU max MHz"]) / 1000.0
    if info.get("BogoMIPS"):
        return float(info["BogoMIPS"]) / 2000.0
    try:
        with open("/proc/cpuinfo") as f:
            return float(re.search(r"cpu MHz\s*:\s*([\d.]+)", f.read()).group(1)) / 1000.0
    except (OSError, AttributeError):
        return 2.0


def fp32_lanes_per_pipe(info: dict[str, str]) -> int:
    flags = info.get("Flags", "").split()
    if "avx512f" in flags and not info.get("Vendor ID", "").startswith("AuthenticAMD"):
        return 16
    if "avx512f" in flags and int(info.get("CPU family", "0") or 0) >= 26:  # Zen 5: full 512-bit datapath
        return 16
    if "avx2" in flags or "avx" in flags:
        return 8
    return 4


def cpu_peak(info: dict[str, str] | None = None) -> dict:
    info = info if info is not None else lscpu()
    cores, ghz, lanes, pipes = physical_cores(info), cpu_ghz(info), fp32_lanes_per_pipe(info), 2
    fp32 = cores * ghz * 1e9 * pipes * 2 * lanes
    has_bf16 = "avx512_bf16" in info.get("Flags", "").split() or "amx_bf16" in info.get("Flags", "").split()
    return {"model": info.get("Model name", platform.processor()), "cores": cores, "ghz": round(ghz, 3),
            "fma_pipes": pipes, "fp32_lanes": lanes, "fp32_flops": fp32, "bf16_flops": 2 * fp32 if has_bf16 else fp32,
            "flags": [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "avx512_vnni")
                      if f in info.get("Flags", "").split()]}


def gpu_peak() -> dict | None:
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    tflops = next((v for k, v in GPU_BF16_TFLOPS.items() if k in name), None)
    return {"model": name, "bf16_flops": tflops * 1e12 if tflops else None}


def training_flops_per_image(model: torch.nn.Module, input_shape: tuple[int, ...], batch: int = 8,
                             device: str | torch.device = "cpu") -> dict:
    """Forward and forward+backward FLOPs for one image, counted by torch.utils.flop_counter."""
    from torch.utils.flop_counter import FlopCounterMode
    model = model.to(device).train()
    x = torch.randn(batch, *input_shape, device=device)
    with FlopCounterMode(display=False) as fwd:
        out = model(x)
    forward = fwd.get_total_flops()
    with FlopCounterMode(display=False) as bwd:
        out.float().sum().backward()
    model.zero_grad(set_to_none=True)
    return {"forward": forward / batch, "train": (forward + bwd.get_total_flops()) / batch}
