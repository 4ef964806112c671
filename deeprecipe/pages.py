"""Self-contained HTML pieces: images as base64 data URIs, escaping, one page skeleton (no CDN)."""
from __future__ import annotations

import base64
import html
import io

import numpy as np
import torch
from PIL import Image


def png_data_uri(image: torch.Tensor, scale: int = 2) -> str:
    """A uint8 (C,H,W) image as a data:image/png URI, enlarged `scale`× so small digits stay visible."""
    arr = image.cpu().numpy()
    arr = arr[0] if arr.shape[0] == 1 else np.transpose(arr, (1, 2, 0))
    img = Image.fromarray(np.ascontiguousarray(arr))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def esc(text) -> str:
    return html.escape(str(text), quote=True)


def page(title: str, body: str, style: str = "", script: str = "") -> str:
    return ("<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>" + esc(title) + "</title>"
            "<style>body{font-family:sans-serif;margin:1.5em}" + style + "</style></head><body>"
            f"<h1>{esc(title)}</h1>{body}" + (f"<script>{script}</script>" if script else "") + "</body></html>\n")
