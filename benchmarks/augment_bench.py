"""Batched augmentation (deeprecipe.augment) against torchvision.transforms.v2 applied image by image.

Both sides do the same ops with the same parameters on the same RGB images (MNIST digits coloured, as uint8,
at 32×32 or `--size` — 224 is a photo folder's default input). deeprecipe transforms the whole batch at once with per-sample parameters;
torchvision runs its transform on each image in a Python loop, as a Dataset's __getitem__ does.
Reported: images per second for each and their ratio, all measured in this one run.

    python benchmarks/augment_bench.py [--batch 256] [--size 32] [--rounds 3] [--device cpu] [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's deeprecipe, not an installed one

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torchvision.transforms import v2  # noqa: E402

from deeprecipe.augment import build_pipeline  # noqa: E402
from deeprecipe.data.sources import load_source  # noqa: E402
from deeprecipe.runtime import keep_large_blocks_in_the_heap  # noqa: E402


def cases(size: int) -> dict:
    """name: (deeprecipe spec, torchvision per-image transform with the same settings) for `size`-px images."""
    return {
        "hflip": ("hflip:p=0.5", v2.RandomHorizontalFlip(0.5)),
        "translate (pad 4 + crop)": ("translate:4", v2.RandomCrop(size, padding=4)),
        "random resized crop": ("crop:scale=0.35-1", v2.RandomResizedCrop(size, scale=(0.35, 1.0), antialias=True)),
        "rotate ±15°": ("rotate:15", v2.RandomRotation(15)),
        "affine": ("affine:degrees=15,translate=0.1,scale=0.9-1.1,shear=0",
                   v2.RandomAffine(15, translate=(0.1, 0.1), scale=(0.9, 1.1))),
        "colour jitter": ("jitter:brightness=0.4,contrast=0.4,saturation=0.4", v2.ColorJitter(0.4, 0.4, 0.4)),
        "gaussian blur": ("blur:sigma=0.1-1.5,kernel=5,p=1", v2.GaussianBlur(5, sigma=(0.1, 1.5))),
        "random erasing": ("erase:p=0.5", v2.RandomErasing(p=0.5)),
        "randaugment n=2 m=9": ("randaugment:n=2,m=9", v2.RandAugment(num_ops=2, magnitude=9)),
        "crop+flip+jitter+erase": (["crop", "hflip", "jitter", "erase"],
                                   v2.Compose([v2.RandomResizedCrop(size, scale=(0.35, 1.0), antialias=True),
                                               v2.RandomHorizontalFlip(), v2.ColorJitter(0.4, 0.4, 0.4),
                                               v2.ToDtype(torch.float32, scale=True), v2.RandomErasing(p=0.5)])),
    }


def make_images(n: int, size: int = 32) -> torch.Tensor:
    ds = load_source("builtin:mnist5k")
    d = F.interpolate(ds.images[:n].float(), size=(size, size), mode="bilinear").clamp(0, 255)
    ramp = torch.linspace(30, 220, size).view(1, 1, 1, size).expand(n, 1, size, size)
    return torch.cat([d, 0.6 * d.transpose(-1, -2) + 0.3 * ramp, ramp.transpose(-1, -2)], 1).to(torch.uint8)


def time_it(fn, rounds: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--size", type=int, default=32, help="image side in pixels")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.device == "cpu":
        keep_large_blocks_in_the_heap()  # as a training session does (both sides allocate in this process)
    dev = torch.device(args.device)
    images = make_images(args.batch, args.size)
    on_device = images.to(dev)
    rows = []
    for name, (spec, tv) in cases(args.size).items():
        pipe = build_pipeline(spec if isinstance(spec, list) else [spec], 10)
        g = torch.Generator(device=dev).manual_seed(0)
        labels = torch.zeros(args.batch, dtype=torch.long, device=dev)

        def batched():
            x, _ = pipe(on_device.float().div(255), labels, g)
            if dev.type == "cuda":
                torch.cuda.synchronize()

        def per_image():
            torch.stack([v2.functional.to_dtype(tv(img), torch.float32, scale=True) for img in images])

        ours, theirs = time_it(batched, args.rounds), time_it(per_image, args.rounds)
        rows.append({"op": name, "deeprecipe_img_s": args.batch / ours, "torchvision_img_s": args.batch / theirs,
                     "speedup": theirs / ours})
    if args.json:
        print(json.dumps({"batch": args.batch, "size": args.size, "device": dev.type, "threads": args.threads, "rows": rows}, indent=2))
        return
    print(f"batch {args.batch} × 3×{args.size}×{args.size}, device {dev.type}, {args.threads} thread(s), best of {args.rounds}")
    print(f"{'op':<26} {'deeprecipe img/s':>17} {'torchvision v2 img/s':>21} {'speed-up':>9}")
    for r in rows:
        print(f"{r['op']:<26} {r['deeprecipe_img_s']:>17,.0f} {r['torchvision_img_s']:>21,.0f} {r['speedup']:>8.1f}×")


if __name__ == "__main__":
    main()
