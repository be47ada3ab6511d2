"""accuracy_vs_latency.png: top-1 against median latency with the Pareto front, or latency bars
when there is no accuracy (random weights)."""
from __future__ import annotations

import textwrap
from pathlib import Path

from benchmarks.report.measure import Row

# The accuracy axis spans at least this many points, so that differences within the noise look as
# small as they are: one standard error of a 91% top-1 on 10,000 test images is 0.29 points, and
# the shipped model's fp32 rows (91.21-91.25%) would otherwise fill the whole height.
MIN_ACCURACY_SPAN = 5.0
LABEL_WIDTH_PX, LABEL_HEIGHT_PX = 110, 14  # about what an 8-point row label covers at 120 dpi


def accuracy_limits(values: list[float]) -> tuple[float, float]:
    """The y-axis range: the data with 10% margins, widened about its centre to MIN_ACCURACY_SPAN
    points, then shifted to stay within 0-100%."""
    low, high = min(values), max(values)
    pad = 0.1 * (high - low)
    low, high = low - pad, high + pad
    if high - low < MIN_ACCURACY_SPAN:
        centre = (low + high) / 2
        low, high = centre - MIN_ACCURACY_SPAN / 2, centre + MIN_ACCURACY_SPAN / 2
    shift = -low if low < 0 else 100.0 - high if high > 100 else 0.0
    return max(0.0, low + shift), min(100.0, high + shift)


def _staircase(front: list[Row]) -> tuple[list[float], list[float]]:
    """The best accuracy reachable within each latency budget, as a step line through the front."""
    xs, ys = [], []
    for r in sorted(front, key=lambda r: r.median_ms):
        if xs:
            xs.append(r.median_ms)
            ys.append(ys[-1])
        xs.append(r.median_ms)
        ys.append(r.top1)
    return xs, ys


def _p90_error(rows: list[Row]) -> list[list[float]]:
    return [[0] * len(rows), [max(r.p90_ms - r.median_ms, 0) for r in rows]]


def _label(ax, points: list[Row]) -> None:
    """Each point's label to its right, in the first free slot (above, below, further above, ...)
    among the labels of points already labelled that it would otherwise print over; labels away
    from their point get a leader line."""
    placed = []  # (display x, display y, slot)
    for r in sorted(points, key=lambda r: r.median_ms):
        x, y = ax.transData.transform((r.median_ms, r.top1))
        used = {slot for px, py, slot in placed if x - px < LABEL_WIDTH_PX and abs(y - py) < LABEL_HEIGHT_PX}
        slot = next(k for k in range(len(placed) + 1) if k not in used)
        placed.append((x, y, slot))
        dy = 4 + 10 * (slot // 2) if slot % 2 == 0 else -11 - 10 * (slot // 2)
        ax.annotate(r.label, (r.median_ms, r.top1), textcoords="offset points", xytext=(5, dy), fontsize=8,
                    arrowprops=dict(arrowstyle="-", color="gray", linewidth=0.5) if slot > 1 else None)


def _latency_bars(ax, timed: list[Row], title: str, why: str) -> None:
    ax.barh(range(len(timed)), [r.median_ms for r in timed], color="tab:blue", label="median")
    ax.errorbar([r.median_ms for r in timed], range(len(timed)), fmt="none", ecolor="gray", capsize=3,
                xerr=_p90_error(timed), label="to p90")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_yticks(range(len(timed)), [r.label for r in timed])
    ax.invert_yaxis()
    ax.set_xlabel("median latency (ms)")
    ax.set_title(f"{title} - accuracy n/a ({why})", fontsize=10)
    for i, r in enumerate(timed):
        ax.annotate(f" {r.median_ms:.2f} ms", (r.median_ms, i), va="bottom", fontsize=8)


def _accuracy_scatter(ax, points: list[Row], title: str) -> None:
    from matplotlib.ticker import FuncFormatter
    front = [r for r in points if r.pareto]
    lats, accs = [r.median_ms for r in points], [r.top1 for r in points]
    ax.scatter(lats, accs, s=40, color="tab:blue", label="artifact (median)", zorder=3)
    ax.errorbar(lats, accs, fmt="none", ecolor="gray", alpha=0.6, capsize=2, xerr=_p90_error(points),
                label="to p90 latency", zorder=1)
    ax.scatter([r.median_ms for r in front], [r.top1 for r in front], s=120, facecolors="none",
               edgecolors="tab:red", linewidths=1.5, label="Pareto front", zorder=4)
    if front:
        ax.plot(*_staircase(front), color="tab:red", linestyle="--", linewidth=1, zorder=2)
    if max(lats) / max(min(lats), 1e-9) > 8:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else ""))
    ax.set_ylim(*accuracy_limits(accs))
    _label(ax, points)
    ax.set_xlabel("median latency (ms)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    ax.set_title(title, fontsize=10)


def plot(rows: list[Row], report: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    title = (f"{report['model']} {report['input_size']} px, batch {report['batch']}"
             + (f", {report['data']}" if report.get("data") else "")
             + f"\n{report['cpu_model']} ({report.get('physical_cores')} cores, {report.get('cpu_features', '')}), "
             f"{report['threads']} thread{'s' if report['threads'] != 1 else ''}")
    title = "\n".join(textwrap.fill(line, 110) for line in title.split("\n"))
    fig, ax = plt.subplots(figsize=(9, 6), dpi=120)
    timed = [r for r in rows if isinstance(r.median_ms, float)]
    points = [r for r in timed if isinstance(r.top1, float) and not r.accuracy.get("subset")]  # same images only
    if report["random_weights"] or not points:
        why = "random weights" if report["random_weights"] else \
            "no labels: agreement in the table" if any(r.agreement is not None for r in rows) else "not measured"
        _latency_bars(ax, timed, title, why)
    else:
        _accuracy_scatter(ax, points, title)
        plotted = {id(r) for r in points}
        left_out = [r.label for r in rows if id(r) not in plotted]
        if left_out:
            fig.text(0.01, 0.01, "not plotted (no latency here, or top-1 on a subset): " + ", ".join(left_out),
                     fontsize=7)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path)
    plt.close(fig)
