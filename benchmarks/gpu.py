"""GPU throughput: ResNet-18 (CIFAR-style stem) at 32×32, tutorial pipeline vs deeprecipe's way.

  reference   — PIL images, per-image RandomCrop(32, padding=4) + RandomHorizontalFlip + ToTensor +
                Normalize in DataLoader workers, fp32, NCHW, batches copied to the GPU each step.
  deeprecipe  — the uint8 set on the GPU, deeprecipe's TensorLoader with batched translate:4 + hflip,
                channels_last, bf16 autocast, fused AdamW.
Reports training images/s and achieved FLOP/s as a share of the GPU's dense bf16 peak. The images
are random uint8 (no download at run time): throughput does not depend on what the pixels show.
Without a GPU it prints that it is skipped and exits 0; `--device cpu` runs the same code path on
the CPU, tiny, for tests.

    python benchmarks/gpu.py [--steps 50] [--batch 512] [--json out.json | --json -]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # this checkout's deeprecipe, not an installed one
sys.path.insert(0, str(HERE))
from deeprecipe.augment import build_pipeline  # noqa: E402
from deeprecipe.data.loader import TensorLoader  # noqa: E402
from deeprecipe.train.optim import param_groups  # noqa: E402
from hardware import gpu_peak, training_flops_per_image  # noqa: E402

MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


def resnet18_cifar(num_classes: int = 10) -> nn.Module:
    """torchvision's ResNet-18 with the CIFAR stem: 3×3 stride-1 first conv, no max-pool."""
    from torchvision.models import resnet18
    model = resnet18(num_classes=num_classes)
    model.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


def fake_cifar(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g), torch.randint(0, 10, (n,), generator=g)


def reference_batches(images, labels, batch: int, workers: int):
    from PIL import Image
    from torchvision import transforms

    class Pictures(torch.utils.data.Dataset):
        def __init__(self):
            self.pics = [Image.fromarray(a) for a in images.permute(0, 2, 3, 1).numpy()]
            self.tf = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
                                          transforms.ToTensor(), transforms.Normalize(MEAN, STD)])

        def __len__(self):
            return len(self.pics)

        def __getitem__(self, i):
            return self.tf(self.pics[i]), int(labels[i])

    return torch.utils.data.DataLoader(Pictures(), batch_size=batch, shuffle=True, num_workers=workers,
                                       pin_memory=torch.cuda.is_available(), drop_last=True,
                                       persistent_workers=workers > 0)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(model, loader, device, steps: int, bf16: bool, channels_last: bool, fused: bool) -> float:
    """Training images/s over `steps` steps after 3 warm-up steps; batches come from `loader` (cycled)."""
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(param_groups(model, 5e-4), lr=1e-3, **({"fused": True} if fused else {}))

    def batches():
        while True:
            yield from loader

    it = batches()
    seen, t = 0, 0.0
    for i in range(steps + 3):
        if i == 3:
            sync(device)
            t, seen = time.perf_counter(), 0
        x, y = next(it)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = nn.functional.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seen += x.shape[0]
    sync(device)
    return seen / (time.perf_counter() - t)


def run(device: torch.device, steps: int, batch: int, images: int, workers: int) -> dict:
    x, y = fake_cifar(images)
    flops = training_flops_per_image(resnet18_cifar(), (3, 32, 32), batch=2, device=device)
    peak = (gpu_peak() or {}).get("bf16_flops") if device.type == "cuda" else None
    torch.manual_seed(0)
    ref = measure(resnet18_cifar(), reference_batches(x, y, batch, workers), device, steps,
                  bf16=False, channels_last=False, fused=False)
    ours_loader = TensorLoader(x, y, batch, MEAN, STD, shuffle=True, device=device, drop_last=True,
                               augment=build_pipeline(["translate:4", "hflip"], 10), channels_last=True)
    torch.manual_seed(0)
    ours = measure(resnet18_cifar(), ours_loader, device, steps, bf16=True, channels_last=True, fused=True)
    rows = {"reference": ref, "deeprecipe": ours}
    out = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "batch": batch,
           "flops_per_image": flops, "bf16_peak_flops": peak,
           "images_per_second": rows, "ratio": ours / ref,
           "share_of_bf16_peak": {k: v * flops["train"] / peak for k, v in rows.items()} if peak else None}
    lines = [f"GPU benchmark on {out['device']}: ResNet-18 (CIFAR stem) 32×32, batch {batch}, "
             f"{flops['train'] / 1e9:.2f} GFLOP per training image"]
    for k, v in rows.items():
        share = f", {100 * out['share_of_bf16_peak'][k]:.1f}% of bf16 peak" if peak else ""
        lines.append(f"  {k:<11} {v:>10,.0f} images/s{share}")
    lines.append(f"  deeprecipe / reference: {ours / ref:.2f}×")
    out["table"] = "\n".join(lines)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu (a tiny check of the code path)")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--images", type=int, default=None, help="size of the fake set (default 20 batches)")
    ap.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    ap.add_argument("--json", default=None, help="write the result here; '-' for stdout")
    args = ap.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("GPU benchmark skipped: no CUDA device visible (torch.cuda.is_available() is False).")
        return
    result = run(torch.device(args.device), args.steps, args.batch, args.images or 20 * args.batch, args.workers)
    if args.json == "-":
        print(json.dumps(result))
        return
    print(result["table"])
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
