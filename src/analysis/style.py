"""One figure style for the project: colour-blind-safe palette, readable sizes, and
deterministic PNG/SVG output.

Sizes: ``FULL`` fits a two-column paper's full width (7 in) and an HTML report; ``HALF``
fits one column (3.5 in). Fonts are 8-9 pt at those sizes, readable in print and at
100 dpi on screen.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Okabe and Ito (2008), "Color Universal Design": distinguishable with every common
# colour-vision deficiency.
OKABE_ITO = {
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "purple": "#CC79A7",
    "black": "#000000",
    "grey": "#999999",
}
FEMALE = OKABE_ITO["vermillion"]
MALE = OKABE_ITO["blue"]
ACCENT = OKABE_ITO["green"]
NEUTRAL = OKABE_ITO["grey"]
SEQUENCE = [
    OKABE_ITO[k]
    for k in ("blue", "orange", "green", "vermillion", "purple", "sky_blue", "yellow", "black")
]

FULL = (7.0, 4.2)
HALF = (3.5, 3.0)
DPI = 150

RC = {
    "font.size": 8.5,
    "axes.titlesize": 9.5,
    "axes.titleweight": "bold",
    "axes.labelsize": 8.5,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": False,
    "figure.dpi": 100,
    "savefig.dpi": DPI,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.08,
    "svg.hashsalt": "analysis",  # stable element ids in SVG
    "svg.fonttype": "none",  # text stays text in SVG (editable for papers)
    "font.family": "DejaVu Sans",
    "axes.prop_cycle": None,  # set in apply()
}


def apply() -> None:
    """Set the project's matplotlib style (idempotent)."""
    import matplotlib as mpl
    from cycler import cycler

    rc = dict(RC)
    rc["axes.prop_cycle"] = cycler(color=SEQUENCE)
    mpl.rcParams.update(rc)


def caption(text: str, data_label: str) -> str:
    """Figure caption that always names the data and its n."""
    return f"{text} Data: {data_label}."


def add_caption(fig, text: str) -> None:
    """A caption below everything already drawn (axis labels and tick labels included)."""
    import textwrap

    wrapped = "\n".join(textwrap.wrap(text, width=int(fig.get_figwidth() * 17)))
    renderer = fig.canvas.get_renderer()
    bottom = fig.get_tightbbox(renderer).y0  # inches from the figure's bottom edge
    y = (bottom - 0.08) / fig.get_figheight()
    fig.text(
        0.0,
        y,
        wrapped,
        ha="left",
        va="top",
        fontsize=7.5,
        color="#333333",
        transform=fig.transFigure,
    )


def save_figure(fig, out_dir: str | Path, name: str) -> dict[str, Path]:
    """Write ``name.png`` and ``name.svg`` to ``out_dir`` atomically and deterministically
    (no timestamps or software versions in the files); returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for ext, meta in (("png", {"Software": None}), ("svg", {"Date": None, "Creator": None})):
        target = out_dir / f"{name}.{ext}"
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=f".{ext}", dir=out_dir)
        os.close(fd)
        try:
            fig.savefig(tmp, format=ext, metadata=meta)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        written[ext] = target
    return written
