"""The report files of a sweep: results.csv, results.md, rd.png and slices.png."""

from __future__ import annotations

import csv
import math
import os

import numpy as np

from ..plots import middle_slice, rgb_axis

CSV_COLUMNS = ("input", "codec", "target_ratio", "actual_ratio", "psnr", "psnr_range", "ssim", "encode_s", "decode_s")


def write_csv(rows: list[dict], path: str) -> None:
    """One line per row with `CSV_COLUMNS`; missing values empty, floats at full precision."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for row in rows:
            writer.writerow([_csv_value(row.get(column)) for column in CSV_COLUMNS])


def _csv_value(value):
    if value is None:
        return ""
    return repr(float(value)) if isinstance(value, float) else value


def write_markdown(rows: list[dict], path: str, info: dict[str, str] | None = None) -> None:
    """A table per input; `info` maps an input to a line shown under its heading."""

    def number(value, fmt):
        return "" if value is None else format(value, fmt)

    lines = ["# tinc bench results", ""]
    for name in dict.fromkeys(r["input"] for r in rows):
        lines.append(f"## {name}")
        if info and name in info:
            lines += ["", info[name]]
        lines += [
            "",
            "| codec | target | actual ratio | PSNR (dB) | PSNR range (dB) | SSIM | encode (s) | decode (s) | note |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for r in rows:
            if r["input"] != name:
                continue
            lines.append(
                f"| {r['codec']} | {r['target_ratio']:g} | {number(r['actual_ratio'], '.1f')} | {number(r['psnr'], '.2f')}"
                f" | {number(r['psnr_range'], '.2f')} | {number(r['ssim'], '.4f')} | {number(r['encode_s'], '.3f')}"
                f" | {number(r['decode_s'], '.3f')} | {r.get('note') or ''} |"
            )
        lines.append("")
    with open(path, "w") as handle:
        handle.write("\n".join(lines))


def _figure(width: float, height: float):
    """A matplotlib figure outside pyplot: no global state, no GUI backend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def plot_rd(rows: list[dict], path: str) -> None:
    """PSNR and SSIM against the actual ratio (log axis): one row of panels per input."""
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    names = list(dict.fromkeys(r["input"] for r in rows))
    codecs = list(dict.fromkeys(r["codec"] for r in rows))
    targets = sorted({float(r["target_ratio"]) for r in rows})
    figure = _figure(11, 4 * max(1, len(names)))
    axes = figure.subplots(max(1, len(names)), 2, squeeze=False)
    for i, name in enumerate(names):
        for k, codec in enumerate(codecs):
            points = sorted((r["actual_ratio"], r["psnr"], r["ssim"]) for r in rows
                            if r["input"] == name and r["codec"] == codec and r["status"] == "ok")
            points = [p for p in points if math.isfinite(p[1])]
            if not points:
                continue
            x = [p[0] for p in points]
            # ten colours: dashed lines tell the 11th codec on from the first ten
            style = dict(marker="o", label=codec, color=f"C{k % 10}", linestyle="-" if k < 10 else "--")
            axes[i, 0].plot(x, [p[1] for p in points], **style)
            axes[i, 1].plot(x, [p[2] for p in points], **style)
        for ax, metric in zip(axes[i], ("PSNR (dB)", "SSIM")):
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(FixedLocator(targets))  # ticks at the target ratios
            ax.xaxis.set_major_formatter(lambda value, _: f"{value:g}")
            ax.xaxis.set_minor_locator(NullLocator())
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel("compression ratio")
            ax.set_ylabel(metric)
            ax.set_title(f"{os.path.basename(str(name))}: {metric}")
            ax.grid(True, which="both", alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
    figure.savefig(path)


def _display_slice(array: np.ndarray) -> np.ndarray:
    """The middle slice as float64, keeping the colours of RGB(A) images."""
    return middle_slice(array, channel_axis=rgb_axis(array)).astype(np.float64)


def plot_slices(original: np.ndarray, rows: list[dict], path: str, title: str = "") -> None:
    """The middle slice of the original and of each row's 'reconstruction', errors below."""
    orig = _display_slice(original)
    recs = [_display_slice(r["reconstruction"]) for r in rows]
    lo, hi = float(orig.min()), float(orig.max())
    errors = [np.abs(rec - orig) for rec in recs]
    if errors:  # one colour scale for all error maps; the 99.5th percentile keeps outliers from washing it out
        emax = max(float(np.percentile(e, 99.5)) for e in errors) or max(float(e.max()) for e in errors) or 1.0
    else:
        emax = 1.0
    n = 1 + len(recs)
    figure = _figure(2.6 * n + 0.8, 5.6)
    axes = figure.subplots(2, n, squeeze=False)

    def show(ax, image):
        if image.ndim == 3:  # RGB(A)
            ax.imshow(np.clip((image - lo) / ((hi - lo) or 1.0), 0, 1))
        else:
            ax.imshow(image, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1)

    show(axes[0, 0], orig)
    axes[0, 0].set_title("original", fontsize=9)
    last = None
    for k, (row, rec, err) in enumerate(zip(rows, recs, errors), start=1):
        show(axes[0, k], rec)
        axes[0, k].set_title(f"{row['codec']}\n{row['actual_ratio']:.0f}x  {row['psnr']:.2f} dB", fontsize=9)
        last = axes[1, k].imshow(err.mean(axis=-1) if err.ndim == 3 else err, cmap="inferno", vmin=0, vmax=emax)
        axes[1, k].set_title("|error|", fontsize=9)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    axes[1, 0].axis("off")
    if last is not None:
        figure.colorbar(last, ax=axes[1, -1], fraction=0.046, pad=0.02)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.savefig(path)
