"""Per-feature plots as inline SVG, drawn by matplotlib (docs/catalog.md).

Figures are built with matplotlib's object API (``matplotlib.figure.Figure``: no pyplot state, no
GUI backend) and saved with ``savefig(format="svg")``; the XML prolog is cut so the ``<svg>``
element can sit inside an HTML page. Text stays text (``svg.fonttype: none``) and each figure's
element ids are salted with the plot's own name, so several figures on one page never share an
id and the same statistics always give the same bytes.
"""

from __future__ import annotations

import io
import math
import re
from collections import Counter
from collections.abc import Sequence
from datetime import date
from typing import TYPE_CHECKING, Any

from skewless.catalog_site.model import OnlinePsiPoint, StatsPoint

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

WIDTH, HEIGHT = 7.2, 2.6
"""Inches; the page scales the SVG to its column."""
TOP_VALUES = 12
HISTOGRAM_BINS = 30


def _figure() -> tuple[Figure, Axes]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(WIDTH, HEIGHT), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    axes.grid(True, alpha=0.3)
    axes.spines[["top", "right"]].set_visible(False)
    return figure, axes


def to_svg(figure: Figure, salt: str) -> str:
    """The figure as an ``<svg>`` element (no XML prolog or doctype)."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt}):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    # The RDF metadata block only names its vocabularies' URLs; nothing on the page needs it.
    return re.sub(r"\s*<metadata>.*?</metadata>", "", text, count=1, flags=re.DOTALL)


def _dates(axes: Axes) -> None:
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator(minticks=3, maxticks=8)  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]


def _days(days: Sequence[date]) -> Any:
    """Dates as numpy ``datetime64`` (what matplotlib's date axis takes, typed)."""
    import numpy as np

    return np.array(days, dtype="datetime64[D]")


def _present(points: Sequence[StatsPoint], attribute: str) -> tuple[Any, list[float]]:
    days: list[date] = []
    values: list[float] = []
    for point in points:
        value = getattr(point, attribute)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            days.append(point.ds)
            values.append(float(value))
    return _days(days), values


def quantiles_svg(points: Sequence[StatsPoint], salt: str) -> str | None:
    """p50, p90, p99 and the mean per ``ds``, over the min..max band."""
    lines = {name: _present(points, name) for name in ("p50", "p90", "p99", "mean")}
    if not any(values for _, values in lines.values()):
        return None
    figure, axes = _figure()
    band = [p for p in points if p.min is not None and p.max is not None]
    if band:
        axes.fill_between(
            _days([p.ds for p in band]),
            [float(p.min) for p in band if p.min is not None],
            [float(p.max) for p in band if p.max is not None],
            alpha=0.12,
            color="tab:blue",
            label="min..max",
        )
    styles = {"p50": "-", "p90": "--", "p99": ":", "mean": "-"}
    colors = {"p50": "tab:blue", "p90": "tab:blue", "p99": "tab:blue", "mean": "tab:orange"}
    for name, (days, values) in lines.items():
        if values:
            axes.plot(days, values, styles[name], color=colors[name], marker=".", label=name)
    axes.set_title("Quantiles and mean per ds", loc="left", fontsize=10)
    axes.legend(fontsize=8, ncols=5, loc="upper left", frameon=False)
    _dates(axes)
    return to_svg(figure, salt)


def null_rate_svg(points: Sequence[StatsPoint], salt: str) -> str | None:
    days, values = _present(points, "null_rate")
    if not values:
        return None
    figure, axes = _figure()
    axes.plot(days, [100 * v for v in values], "-", marker=".", color="tab:purple")
    axes.set_ylim(bottom=0, top=max(1.0, 100 * max(values) * 1.15))
    axes.set_ylabel("% null", fontsize=9)
    axes.set_title("Null rate per ds (rows without a value, tombstones included)", loc="left", fontsize=10)
    _dates(axes)
    return to_svg(figure, salt)


def drift_svg(
    points: Sequence[StatsPoint],
    warn: float | None,
    fail: float | None,
    salt: str,
    online: Sequence[OnlinePsiPoint] = (),
) -> str | None:
    """PSI of each ``ds`` against its reference window, and of the sampled online values against
    the training statistics per service, with the warn and fail thresholds."""
    days, values = _present(points, "psi")
    services = sorted({p.service for p in online if p.psi is not None})
    if not values and not services:
        return None
    figure, axes = _figure()
    if values:
        axes.plot(days, values, "-", marker="o", markersize=3, color="tab:green", label="PSI (offline)")
    for service in services:
        mine = [p for p in online if p.service == service and p.psi is not None]
        axes.plot(
            _days([p.ds for p in mine]),
            [float(p.psi) for p in mine if p.psi is not None],
            ":",
            marker="s",
            markersize=3,
            label=f"online vs training ({service})",
        )
    for threshold, name, color in ((warn, "warn", "tab:orange"), (fail, "fail", "tab:red")):
        if threshold is not None:
            axes.axhline(threshold, color=color, linestyle="--", linewidth=1, label=f"{name} {threshold:g}")
    axes.set_ylim(bottom=0)
    axes.set_title("Drift: PSI against the reference window", loc="left", fontsize=10)
    axes.legend(fontsize=8, ncols=2, loc="upper left", frameon=False)
    _dates(axes)
    return to_svg(figure, salt)


def _finite(values: Sequence[Any]) -> list[float]:
    out = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        number = float(value)
        if math.isfinite(number):
            out.append(number)
    return out


def distribution_svg(values: Sequence[Any], numeric: bool, ds: date | None, salt: str) -> str | None:
    """A histogram of a numeric feature's latest values; the most frequent values otherwise."""
    figure, axes = _figure()
    when = f" (ds {ds.isoformat()})" if ds is not None else ""
    if numeric:
        numbers = _finite(values)
        if not numbers:
            return None
        axes.hist(numbers, bins=min(HISTOGRAM_BINS, max(1, len(set(numbers)))), color="tab:blue", alpha=0.8)
        axes.set_ylabel("rows", fontsize=9)
        axes.set_title(f"Latest distribution{when}: {len(numbers)} values", loc="left", fontsize=10)
        return to_svg(figure, salt)
    if not values or not all(isinstance(v, (str, bool, int)) for v in values):
        return None  # arrays, timestamps: no bar chart of single values
    counts = Counter(str(v) for v in values).most_common(TOP_VALUES)
    labels = [label for label, _ in counts][::-1]
    axes.barh(labels, [n for _, n in counts][::-1], color="tab:blue", alpha=0.8)
    axes.set_xlabel("rows", fontsize=9)
    shown = f"top {len(counts)} of {len(set(map(str, values)))}"
    axes.set_title(f"Latest values{when}: {shown} distinct", loc="left", fontsize=10)
    return to_svg(figure, salt)
