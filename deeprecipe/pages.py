"""The page kit of every HTML file deeprecipe writes (report.html, recipe.html, audit.html, projections).

Pages are self-contained: inline CSS, images as base64 data URIs, no CDN. Each page adds its own CSS to
the shared base and builds its body from these pieces.
"""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

BASE_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1150px;margin:24px auto;
     padding:0 16px;color:#222}
h1{margin-bottom:4px} h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
.sub{color:#666;margin-top:0}
img{max-width:100%} table{border-collapse:collapse;margin:.6em 0} th,td{border:1px solid #ddd;padding:3px 10px}
pre{background:#f6f6f6;padding:10px;overflow:auto;font-size:12px} code{background:#f4f4f4;padding:0 3px}
.pass{color:#1a7f37;font-weight:600} .fail{color:#cf222e;font-weight:600} .skip{color:#9a6700;font-weight:600}
.error{color:#b00}
"""


def esc(text) -> str:
    return html.escape(str(text), quote=True)


def png_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def png_data_uri(image: torch.Tensor, scale: int = 2) -> str:
    """A uint8 (C,H,W) image as a data:image/png URI, enlarged `scale`× so small digits stay visible."""
    arr = image.cpu().numpy()
    arr = arr[0] if arr.shape[0] == 1 else np.transpose(arr, (1, 2, 0))
    img = Image.fromarray(np.ascontiguousarray(arr))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return png_uri(buf.getvalue())


def img_tag(png: bytes | str | Path | None, alt: str) -> str:
    """An embedded PNG from bytes or a file; empty when the file is missing."""
    if isinstance(png, (str, Path)) or png is None:
        if not png or not Path(png).is_file():
            return ""
        png = Path(png).read_bytes()
    return f'<img alt="{esc(alt)}" src="{png_uri(png)}">'


def table(headers: list[str], rows: list[list], escape: bool = True, cls: str = "") -> str:
    """Headers are always escaped; cells too unless `escape=False` (cells that are already HTML)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    cell = esc if escape else str
    body = "".join("<tr>" + "".join(f"<td>{cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def bullet_list(items: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{esc(i)}</li>" for i in items) + "</ul>" if items else ""


def page(title: str, body: str, style: str = "", script: str = "", heading: str | None = None,
         subtitle: str = "") -> str:
    """A whole HTML document: the base style plus `style`, an h1 (`heading`, default the title), an optional
    subtitle line, the body and an optional inline script."""
    sub = f'<p class="sub">{esc(subtitle)}</p>' if subtitle else ""
    return ("<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>" + esc(title) + "</title>"
            f"<style>{BASE_STYLE}{style}</style></head><body><h1>{esc(heading or title)}</h1>{sub}{body}"
            + (f"<script>{script}</script>" if script else "") + "</body></html>\n")
