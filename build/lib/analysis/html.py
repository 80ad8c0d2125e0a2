"""Self-contained HTML for the sweep report: inline CSS, PNGs embedded as base64."""
from __future__ import annotations

import base64
import html
import json
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1200px;margin:2em auto;
     padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;font-size:.88em;margin:.6em 0} th,td{border:1px solid #ccc;padding:.25em .6em;
     text-align:left;vertical-align:top} th{background:#eef2f8} tr:nth-child(even) td{background:#fafafa}
figure{margin:1.2em 0;padding:.6em;border:1px solid #e3e3e3;border-radius:6px}
figure img{max-width:100%;height:auto;display:block;margin:auto} figcaption{font-size:.9em;color:#444;margin-top:.4em}
.verdict{font-weight:bold;padding:.05em .45em;border-radius:4px;color:#fff}
.v-yes{background:#2e7d32}.v-no{background:#c62828}.v-inconclusive{background:#757575}.v-not-tested{background:#9e9e9e}
.v-equivalent{background:#1565c0}.v-fragile{background:#ef6c00}
.muted{color:#666;font-size:.9em} pre{background:#f6f8fa;padding:.8em;overflow:auto;font-size:.82em}
code{background:#f3f3f3;padding:0 .2em}
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def link(text: str, href: str | None) -> str:
    return f'<a href="{esc(href)}">{esc(text)}</a>' if href else f"<code>{esc(text)}</code>"


def table_html(df: pd.DataFrame, raw_columns: Sequence[str] = ()) -> str:
    """An HTML table; columns in `raw_columns` hold trusted HTML (links), the rest is escaped."""
    if df.empty:
        return '<p class="muted">(none)</p>'
    head = "".join(f"<th>{esc(c)}</th>" for c in df.columns)
    rows = []
    for _, r in df.iterrows():
        cells = "".join(f"<td>{r[c] if c in raw_columns else esc(_plain(r[c]))}</td>" for c in df.columns)
        rows.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _plain(v: Any) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "—"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def mapping_table(values: Mapping[str, Any]) -> str:
    return table_html(pd.DataFrame({"key": list(values), "value": [_plain(v) for v in values.values()]}))


def figure_html(stem: str, png: bytes, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure id="{esc(stem)}"><img src="data:image/png;base64,{data}" alt="{esc(stem)}">'
            f'<figcaption>{esc(caption)} <a href="{esc(stem)}.png">{esc(stem)}.png</a></figcaption></figure>')


def hypotheses_html(results: Sequence) -> str:
    if not results:
        return '<p class="muted">This experiment declares no hypotheses.</p>'
    items = []
    for r in results:
        cls = "v-" + r.verdict.replace(" ", "-")
        items.append(f'<li><span class="verdict {cls}">{esc(r.verdict)}</span> {esc(r.sentence)}</li>')
    return ("<ul>" + "".join(items) + "</ul><p class=\"muted\">yes/no: the difference of means is significant "
            "(Welch t-test, p &lt; 0.05) in that direction; ± is the half-width of the 95% t-interval "
            "over seeds; n = completed seeds per side.</p>")


def page(title: str, sections: Sequence[tuple[str, str]], header: str = "") -> str:
    """The whole document: a title, a header block and (heading, html) sections."""
    body = "".join(f'<h2 id="{esc(h.lower().replace(" ", "-"))}">{esc(h)}</h2>{content}' for h, content in sections)
    nav = " · ".join(f'<a href="#{esc(h.lower().replace(" ", "-"))}">{esc(h)}</a>' for h, _ in sections)
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{esc(title)}</title>"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><style>{CSS}</style></head>"
            f"<body><h1>{esc(title)}</h1>{header}<p class=\"muted\">{nav}</p>{body}</body></html>")


def pre_json(obj: Any) -> str:
    return f"<details><summary>declaration (sweep/experiment.json)</summary><pre>{esc(json.dumps(obj, indent=2, default=str))}</pre></details>"
