"""Grad-CAM (Selvaraju et al. 2017): where in the image the last conv stage found evidence for a class.

The last stage's activation maps A_k are weighted by the spatial mean of d(logit)/d(A_k); the ReLU of
their weighted sum, upsampled to the image, is the heat-map laid over the picture.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.sources import conform, decode_image_file
from ..errors import DeepRecipeError
from ..loaded import LoadedRun, load_run
from ..plots import figure_png, pyplot
from ..utils import atomic_write_bytes


def last_conv_stage(model: nn.Module) -> nn.Module:
    """The last body stage that holds a Conv2d (deeprecipe models name their stages)."""
    stages = [model.stage(n) for n in getattr(model, "stage_names", []) if n != "classifier"]
    for stage in reversed(stages):
        if any(isinstance(m, nn.Conv2d) for m in stage.modules()):
            return stage
    raise DeepRecipeError(f"model {type(model).__name__} has no convolutional stage",
                          "Grad-CAM needs a CNN; train a conv model such as convnet, lenet5 or resnet20")


def grad_cam(loaded: LoadedRun, images_uint8: torch.Tensor, target: torch.Tensor | None = None):
    """Heat-maps (N, H, W) in [0, 1] for `target` classes (default: the predicted ones), plus probabilities."""
    model = loaded.model.eval()
    stage = last_conv_stage(model)
    saved: dict[str, torch.Tensor] = {}

    def keep(_module, _inputs, output):
        output.retain_grad()
        saved["act"] = output

    handle = stage.register_forward_hook(keep)
    try:
        x = loaded.normalize(images_uint8)
        with torch.enable_grad():
            logits = model(x.requires_grad_(False)).float()
            chosen = logits.argmax(1) if target is None else target.to(logits.device)
            model.zero_grad(set_to_none=True)
            logits.gather(1, chosen[:, None]).sum().backward()
        act, grad = saved["act"].detach(), saved["act"].grad.detach()
    finally:
        handle.remove()
    weights = grad.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * act).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=tuple(x.shape[2:]), mode="bilinear", align_corners=False)[:, 0]
    peak = cam.flatten(1).max(1).values.clamp_min(1e-12).view(-1, 1, 1)
    return (cam / peak).cpu(), torch.softmax(logits.detach(), 1).cpu(), chosen.cpu()


def overlay_png(image_uint8: torch.Tensor, cam: torch.Tensor, title: str) -> bytes:
    plt = pyplot()
    img = image_uint8.cpu().numpy()
    img = img[0] if img.shape[0] == 1 else np.transpose(img, (1, 2, 0))
    fig, axes = plt.subplots(1, 2, figsize=(6, 3.2))
    axes[0].imshow(img, cmap="gray" if img.ndim == 2 else None)
    axes[0].set_title("image", fontsize=9)
    axes[1].imshow(img, cmap="gray" if img.ndim == 2 else None)
    axes[1].imshow(cam.numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=1)
    axes[1].set_title(title, fontsize=9)
    for ax in axes:
        ax.axis("off")
    return figure_png(fig)


def explain(run: str | Path, images: list[str], out: str | Path) -> list[dict]:
    """Write one Grad-CAM overlay PNG per image file into `out`; returns one dict per image."""
    loaded = load_run(run)
    out = Path(out)
    rows = []
    for k, item in enumerate(images):
        p = Path(item)
        if not p.is_file():
            raise DeepRecipeError(f"{p} is not an image file", "give image files to explain")
        img = decode_image_file(p)
        img = conform(img[None], loaded.input_shape[0], tuple(loaded.input_shape[1:]))
        cam, probs, chosen = grad_cam(loaded, img)
        label = loaded.classes[int(chosen[0])]
        target = out / f"{k:03d}_{p.stem}_gradcam.png"
        atomic_write_bytes(target, overlay_png(img[0], cam[0], f"Grad-CAM: {label} ({float(probs[0, chosen[0]]):.3f})"))
        rows.append({"image": str(p), "label": label, "probability": round(float(probs[0, chosen[0]]), 6),
                     "heatmap": str(target)})
    return rows
