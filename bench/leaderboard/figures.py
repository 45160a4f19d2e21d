"""What every leaderboard plot shares: its size, the style of reference lines, titles and PNG bytes.

Example:
    >>> wrap_parts(["labels unknown, BN exact", "embedded", "lenet"], width=30)
    'labels unknown, BN exact\\nembedded · lenet'
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence

FIGSIZE = (6.4, 4.0)  # inches; at DPI 100 a plot is 640 x 400 pixels
DPI = 100
TITLE_WIDTH = 90  # characters per title line: at fontsize 8 a longer line overflows a 640-pixel plot
FLOOR_STYLE = {"color": "0.45", "linestyle": "--"}


def wrap_parts(parts: Sequence[str], width: int = TITLE_WIDTH) -> str:
    """The parts joined by " · ", broken into lines of at most `width` characters between parts."""
    lines = [""]
    for part in parts:
        joined = f"{lines[-1]} · {part}" if lines[-1] else part
        if len(joined) <= width or not lines[-1]:
            lines[-1] = joined
        else:
            lines.append(part)
    return "\n".join(lines)


def slug_digest(slug: str) -> str:
    """8 hex digits naming a table's group in file names: the same group always gives the same name."""
    return hashlib.sha256(slug.encode()).hexdigest()[:8]


def png_bytes(figure) -> bytes:
    """A matplotlib Figure drawn on the Agg canvas (no pyplot state) as PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    return buffer.getvalue()
