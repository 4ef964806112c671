"""recipe.html: one self-contained page (inline CSS, PNGs as base64) with a section per recipe step."""
from __future__ import annotations

import base64
import html
from pathlib import Path

STYLE = """
body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em} h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ddd}
.pass{color:#1a7f37;font-weight:600} .fail{color:#cf222e;font-weight:600} .skip{color:#9a6700;font-weight:600}
table{border-collapse:collapse;margin:.6em 0} td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;font-size:.9em}
img{max-width:100%;border:1px solid #eee} ul{margin:.3em 0} code{background:#f4f4f4;padding:0 3px}
"""


def image_tag(path: str | Path | None, alt: str) -> str:
    if not path or not Path(path).is_file():
        return ""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></p>'


def table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def bullet_list(items: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>" if items else ""


def status_span(status: str) -> str:
    cls = {"pass": "pass", "fail": "fail"}.get(status, "skip")
    return f'<span class="{cls}">{html.escape(status)}</span>'


def render_page(title: str, intro: str, sections: list[tuple[str, str, str]]) -> str:
    """sections: (heading, status, inner HTML)."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1><p>{html.escape(intro)}</p>"]
    for heading, status, inner in sections:
        parts.append(f"<h2>{html.escape(heading)} — {status_span(status)}</h2>{inner}")
    parts.append("</body></html>")
    return "".join(parts)
