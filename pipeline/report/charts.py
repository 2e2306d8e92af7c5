"""Inline SVG charts written by hand from numbers, so report.html needs no library, CDN or network.

Every function returns one `<svg>` string; coordinates are rounded so equal inputs give equal bytes.
"""

from html import escape

import numpy as np

WIDTH = 720
LABEL_W = 190
FONT = 'font-family="system-ui, sans-serif" font-size="12"'
GREY, ACCENT, INK = "#c5ced6", "#1f7a6d", "#333"


def _svg(height: float, body: list[str], label: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height:.0f}" width="{WIDTH}" '
            f'height="{height:.0f}" role="img" aria-label="{escape(label)}" {FONT}>' + "".join(body) + "</svg>")


def _text(x: float, y: float, text: str, anchor: str = "start", fill: str = INK, extra: str = "") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" fill="{fill}"{extra}>{escape(text)}</text>'


def _rect(x: float, y: float, w: float, h: float, fill: str, extra: str = "", tip: str = "") -> str:
    shape = f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" height="{h:.1f}" fill="{fill}"{extra}'
    return f"{shape}><title>{escape(tip)}</title></rect>" if tip else shape + "/>"


def tick(value: float) -> str:
    """Short axis label: 0.25, 1.2k, 35."""
    if abs(value) >= 1000:
        return f"{value / 1000:.1f}k"
    return f"{value:.2f}" if abs(value) < 10 and value != int(value) else f"{value:.0f}"


def legend(items: list[tuple[str, str]], y: float = 12) -> list[str]:
    parts, x = [], LABEL_W
    for name, color in items:
        parts += [_rect(x, y - 9, 10, 10, color), _text(x + 14, y, name)]
        x += 24 + 7 * len(name)
    return parts


def hbars(labels: list[str], values: list[float], colors: list[str] | str = GREY, inner: list[float] | None = None,
          notes: list[str] | None = None, title: str = "bars") -> str:
    """One horizontal bar per label; `inner` draws a second, accent bar inside (curated out of all)."""
    row, top = 20, 24 if inner is not None else 4
    peak = max(values, default=0) or 1
    scale = (WIDTH - LABEL_W - 150) / peak
    colors = [colors] * len(labels) if isinstance(colors, str) else colors
    body = legend([("all", GREY), ("curated", ACCENT)]) if inner is not None else []
    for i, (label, value) in enumerate(zip(labels, values)):
        y = top + i * row
        short = label if len(label) <= 28 else label[:27] + "…"
        body.append(_text(LABEL_W - 8, y + 13, short, "end"))
        body.append(_rect(LABEL_W, y + 2, value * scale, row - 5, colors[i], tip=f"{label}: {value:,.0f}"))
        if inner is not None:
            body.append(_rect(LABEL_W, y + 6, inner[i] * scale, row - 13, ACCENT))
        note = notes[i] if notes else f"{value:,.0f}"
        body.append(_text(LABEL_W + value * scale + 6, y + 13, note))
    return _svg(top + row * len(labels) + 4, body, title)


def histogram(edges: np.ndarray, series: list[tuple[str, np.ndarray, str]], xlabel: str) -> str:
    """Shares per bin (each series sums to 1), first series as filled bars, the rest as outlined steps."""
    left, right, top, height = 50, WIDTH - 20, 22, 150
    shares = [(name, counts / max(counts.sum(), 1), color) for name, counts, color in series]
    peak = max((float(s.max()) for _, s, _ in shares if len(s)), default=0) or 1
    n = len(edges) - 1
    bar = (right - left) / max(n, 1)
    body = legend([(f"{name} (n={int(c.sum()):,})", color) for (name, c, color) in series], 12)
    for k, (name, share, color) in enumerate(shares):
        if k == 0:
            body += [_rect(left + i * bar + 0.5, top + height * (1 - v / peak), bar - 1, height * v / peak, color) for i, v in enumerate(share)]
            continue
        points = []
        for i, v in enumerate(share):
            y = top + height * (1 - v / peak)
            points += [f"{left + i * bar:.1f},{y:.1f}", f"{left + (i + 1) * bar:.1f},{y:.1f}"]
        body.append(f'<polyline points="{" ".join(points)}" fill="none" stroke="{color}" stroke-width="2"/>')
    base = top + height
    body.append(f'<line x1="{left}" y1="{base}" x2="{right}" y2="{base}" stroke="{INK}"/>')
    for i in range(0, n + 1, max(n // 5, 1)):
        body.append(_text(left + i * bar, base + 14, tick(float(edges[i])), "middle"))
    body.append(_text(left - 6, top + 4, f"{peak:.0%}", "end"))
    body.append(_text((left + right) / 2, base + 30, xlabel, "middle", "#666"))
    return _svg(base + 38, body, f"histogram of {xlabel}")


def scatter(xy: np.ndarray, groups: list[tuple[str, np.ndarray, str, float]], title: str) -> str:
    """2-D points; `groups` (name, mask, color, radius) are drawn in order, so the highlight goes last."""
    size, pad, top = 460, 12, 22
    x0 = (WIDTH - size) / 2
    if len(xy):
        low, span = xy.min(axis=0), np.ptp(xy, axis=0)
        span[span == 0] = 1
        scaled = (xy - low) / span * (size - 2 * pad) + pad
    else:
        scaled = xy
    body = legend([(f"{name} ({int(mask.sum()):,})", color) for name, mask, color, _ in groups])
    body.append(_rect(x0, top, size, size, "#fafbfc", ' stroke="#ddd"'))
    for name, mask, color, radius in groups:
        dots = "".join(f'<circle cx="{x0 + x:.1f}" cy="{top + size - y:.1f}" r="{radius}"/>' for x, y in scaled[mask])
        body.append(f'<g fill="{color}" fill-opacity="0.75">{dots}</g>')
    return _svg(top + size + 4, body, title)
