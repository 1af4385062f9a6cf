"""Card components, with Metaflow's names: ``Markdown``, ``Table``, ``Image``, ``VegaChart``,
``ProgressBar`` and ``Artifact``. Each renders itself to self-contained HTML (no script or
style from the internet), so a card opens anywhere, offline::

    from keel.cards import Markdown, Table, VegaChart
    current.card.append(Markdown("# Training"))
    current.card.append(Table([[1, 0.5], [2, 0.3]], headers=["epoch", "loss"]))
    current.card.append(VegaChart({"mark": "line", "data": {"values": points},
                                   "encoding": {"x": {"field": "epoch"}, "y": {"field": "loss"}}}))
"""

from __future__ import annotations

import base64
import html
import json
import re
from typing import Any


class Component:
    """A piece of a card. ``render()`` returns an HTML fragment."""

    def render(self) -> str:  # pragma: no cover - every component overrides it
        raise NotImplementedError


def _cell(value: Any) -> str:
    if isinstance(value, Component):
        return value.render()
    return html.escape(_short(value))


def _short(value: Any, limit: int = 200) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


class Markdown(Component):
    """Markdown text: headings, paragraphs, lists, ``code``, **bold**, *italic* and links."""

    def __init__(self, text: str):
        self.text = str(text)

    def update(self, text: str) -> None:
        self.text = str(text)

    def render(self) -> str:
        out: list[str] = []
        in_list = False
        for raw in self.text.strip().splitlines():
            line = raw.rstrip()
            heading = re.match(r"^(#{1,6})\s+(.*)$", line)
            item = re.match(r"^\s*[-*]\s+(.*)$", line)
            if item and not in_list:
                out.append("<ul>")
                in_list = True
            if not item and in_list:
                out.append("</ul>")
                in_list = False
            if heading:
                level = len(heading.group(1))
                out.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
            elif item:
                out.append(f"<li>{_inline(item.group(1))}</li>")
            elif line:
                out.append(f"<p>{_inline(line)}</p>")
        if in_list:
            out.append("</ul>")
        return '<div class="md">' + "".join(out) + "</div>"


def _inline(text: str) -> str:
    text = html.escape(text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", text)
    text = re.sub(r"\*([^*]+)\*", r"<i>\1</i>", text)
    return re.sub(r"\[([^\]]+)\]\((https?://[^)\s]+)\)", r'<a href="\2">\1</a>', text)


class Table(Component):
    """Rows of cells (values or components) under optional ``headers``."""

    def __init__(self, data: list[list[Any]] | None = None, headers: list[str] | None = None):
        self.data = [list(row) for row in (data or [])]
        self.headers = list(headers or [])

    def add_row(self, row: list[Any]) -> None:
        self.data.append(list(row))

    @classmethod
    def from_dataframe(cls, df: Any, truncate: bool = True) -> "Table":
        frame = df.head(100) if truncate else df
        return cls([list(r) for r in frame.itertuples(index=False)], headers=[str(c) for c in frame.columns])

    def render(self) -> str:
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in self.headers)
        rows = "".join("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in row) + "</tr>" for row in self.data)
        return f'<table class="tbl">{"<tr>" + head + "</tr>" if head else ""}{rows}</table>'


class Image(Component):
    """A PNG, JPEG, GIF or SVG image from its bytes, kept inside the card."""

    _KINDS = ((b"\x89PNG", "image/png"), (b"\xff\xd8", "image/jpeg"), (b"GIF8", "image/gif"),
              (b"<svg", "image/svg+xml"), (b"<?xml", "image/svg+xml"))

    def __init__(self, src: bytes, label: str | None = None):
        if not isinstance(src, (bytes, bytearray)):
            raise TypeError(f"Image takes the image's bytes (PNG, JPEG, GIF or SVG), got {type(src).__name__}")
        self.src = bytes(src)
        self.label = label
        self.mime = next((m for sig, m in self._KINDS if self.src.lstrip()[:len(sig)] == sig), None)
        if self.mime is None:
            raise ValueError("Image: the bytes are not a PNG, JPEG, GIF or SVG image")

    @classmethod
    def from_matplotlib(cls, figure: Any, label: str | None = None) -> "Image":
        import io

        buf = io.BytesIO()
        figure.savefig(buf, format="png", bbox_inches="tight")
        return cls(buf.getvalue(), label=label)

    def render(self) -> str:
        data = base64.b64encode(self.src).decode()
        label = f"<figcaption>{html.escape(self.label)}</figcaption>" if self.label else ""
        return f'<figure><img src="data:{self.mime};base64,{data}" style="max-width:100%"/>{label}</figure>'


class ProgressBar(Component):
    """A bar from 0 to ``max``; ``update(value)`` then ``current.card.refresh()`` while the task runs."""

    def __init__(self, max: float = 100, label: str | None = None, value: float = 0, unit: str | None = None):
        self.max, self.label, self.value, self.unit = float(max), label, float(value), unit

    def update(self, value: float) -> None:
        self.value = float(value)

    def render(self) -> str:
        share = 0.0 if self.max <= 0 else max(0.0, min(1.0, self.value / self.max))
        unit = f" {html.escape(self.unit)}" if self.unit else ""
        label = html.escape(self.label or "")
        return (f'<div class="pb"><span>{label}</span><progress value="{self.value:g}" max="{self.max:g}">'
                f'</progress><span>{self.value:g} / {self.max:g}{unit} ({share:.0%})</span></div>')


class Artifact(Component):
    """A value shown as its (shortened) repr."""

    def __init__(self, artifact: Any, name: str | None = None):
        self.artifact, self.name = artifact, name

    def render(self) -> str:
        name = f"<b>{html.escape(self.name)}</b> " if self.name else ""
        return f"<div>{name}<code>{html.escape(_short(self.artifact, 2000))}</code></div>"


class VegaChart(Component):
    """A Vega-Lite chart. The spec is kept in the card, and line, bar, point and area charts of
    inline ``data.values`` are also drawn as SVG by Keel itself, so the card needs no script."""

    def __init__(self, spec: dict[str, Any], show_controls: bool = False):
        if not isinstance(spec, dict):
            raise TypeError(f"VegaChart takes a Vega-Lite spec (a dict), got {type(spec).__name__}")
        self.spec = spec

    @classmethod
    def from_altair_chart(cls, chart: Any) -> "VegaChart":
        return cls(chart.to_dict())

    def update(self, spec: dict[str, Any]) -> None:
        self.spec = spec

    def render(self) -> str:
        spec = html.escape(json.dumps(self.spec, default=str))
        return f'<div class="vega">{_svg(self.spec)}<script type="application/json">{spec}</script></div>'


def _svg(spec: dict[str, Any], width: int = 480, height: int = 240) -> str:
    """Line, bar, point and area marks over numbers or categories, from inline values."""
    mark = spec.get("mark")
    mark = mark.get("type") if isinstance(mark, dict) else mark
    values = (spec.get("data") or {}).get("values") or []
    enc = spec.get("encoding") or {}
    xf, yf = (enc.get("x") or {}).get("field"), (enc.get("y") or {}).get("field")
    if mark not in ("line", "bar", "point", "area") or not values or not xf or not yf:
        return '<p class="muted">(this chart is kept as its Vega-Lite spec)</p>'
    try:
        ys = [float(v[yf]) for v in values]
    except (KeyError, TypeError, ValueError):
        return '<p class="muted">(this chart is kept as its Vega-Lite spec)</p>'
    xs_raw = [v.get(xf) for v in values]
    numeric_x = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs_raw)
    xs = [float(x) for x in xs_raw] if numeric_x and mark != "bar" else list(range(len(xs_raw)))
    pad = 30
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(0.0, min(ys)), max(ys)
    sx = (lambda x: pad + (x - x0) / ((x1 - x0) or 1) * (width - 2 * pad))
    sy = (lambda y: height - pad - (y - y0) / ((y1 - y0) or 1) * (height - 2 * pad))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" class="chart">',
             f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#999"/>',
             f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#999"/>',
             f'<text x="{pad}" y="{pad - 8}" font-size="11">{html.escape(str(yf))} (max {y1:g})</text>',
             f'<text x="{width - pad}" y="{height - 8}" font-size="11" text-anchor="end">{html.escape(str(xf))}</text>']
    points = [(sx(x), sy(y)) for x, y in zip(xs, ys)]
    if mark == "bar":
        w = max(1.0, (width - 2 * pad) / max(1, len(points)) * 0.8)
        parts += [f'<rect x="{x - w / 2:.1f}" y="{y:.1f}" width="{w:.1f}" height="{sy(y0) - y:.1f}" '
                  f'fill="#4c78a8"/>' for x, y in points]
    elif mark == "point":
        parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="#4c78a8"/>' for x, y in points]
    else:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in sorted(points))
        if mark == "area":
            parts.append(f'<polygon points="{sx(x0):.1f},{sy(y0):.1f} {path} {sx(x1):.1f},{sy(y0):.1f}" '
                         f'fill="#4c78a8" opacity="0.4"/>')
        parts.append(f'<polyline points="{path}" fill="none" stroke="#4c78a8" stroke-width="2"/>')
    parts.append("</svg>")
    return "".join(parts)
