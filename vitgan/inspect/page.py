"""index.html of a ``vitgan inspect`` folder: every grid side by side with the run's records.

A static page with relative links only (the folder can be moved, zipped or served as it is):
the grids with their captions, D's attention on the fixed real image over training (copies of the
run's attention<nimg>.png), what was left out and why, the newest row of each metric, the last
training-health (diag/*) numbers, and every training option.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

STYLE = """body{font-family:sans-serif;background:#181818;color:#ddd;margin:1.5em}
a{color:#7cf}.row{display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start}
figure{margin:0;display:table}figure img{max-width:100%;image-rendering:pixelated;border:1px solid #444}
figcaption{display:table-caption;caption-side:bottom;font-size:.9em;color:#bbb}table{border-collapse:collapse;font-size:.85em}
td,th{border:1px solid #444;padding:2px 6px;text-align:left;vertical-align:top}.note{color:#fc6}"""


def _table(rows) -> str:
    body = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>" if body else "<p>none</p>"


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (dict, list)):
        return json.dumps(v)
    return str(v)


def _flat(d: dict, prefix: str = ""):
    for k, v in d.items():
        if isinstance(v, dict) and v:
            yield from _flat(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def write_index(folder: Path, *, title: str, source: dict, sections: list[tuple[str, str, str]],
                over_time: list[str], notes: list[str], options: dict | None, metrics: dict[str, list],
                diag: dict) -> Path:
    """``sections``: (heading, PNG file name in ``folder``, caption); ``over_time``: PNG paths
    relative to ``folder``, oldest first. Returns the page's path."""
    e = html.escape
    figs = "".join(f'<figure><h3>{e(h)}</h3><img src="{e(f)}" alt="{e(h)}"><figcaption>{e(c)}</figcaption></figure>'
                   for h, f, c in sections)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title>",
             f"<style>{STYLE}</style></head><body><h1>{e(title)}</h1>", _table(source.items()),
             "".join(f"<p class='note'>{e(n)}</p>" for n in notes), f"<div class='row'>{figs}</div>"]
    if over_time:
        imgs = "".join(f'<figure><img src="{e(p)}" alt="{e(Path(p).stem)}"><figcaption>{e(Path(p).stem)}'
                       f'</figcaption></figure>' for p in over_time)
        parts.append("<h2>D's attention on a fixed real image, over training</h2><p>The run's attention&lt;"
                     "images shown&gt;.png, written with every fakes grid: when D's class token collapses onto "
                     f"itself the blue bars fill and the maps go dark.</p><div class='row'>{imgs}</div>")
    newest = [(name, rows[-1]) for name, rows in sorted(metrics.items()) if rows]
    parts += ["<h2>Metrics (newest row of each)</h2>", _table(newest),
              "<h2>Training health (last tick's diag/*)</h2>", _table(sorted(diag.items())),
              "<h2>Training options</h2>", _table(_flat(options or {})), "</body></html>"]
    path = folder / "index.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


__all__ = ["write_index"]
