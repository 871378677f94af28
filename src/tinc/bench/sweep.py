"""Running the benchmark: one codec at one ratio (`run_one`), and the whole sweep (`run_bench`)."""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Iterable

import numpy as np

from .. import metrics
from ..values import check_array
from ..errors import TincConfigError, TincInputError
from ..io import read_with_metadata
from .base import Codec, squeezed_shape
from .registry import make_codec
from .report import CSV_COLUMNS, plot_rd, plot_slices, write_csv, write_markdown
from .search import bisect_quality


def parse_ratios(text: str) -> list[float]:
    """Target ratios from a comma-separated list (TincConfigError unless all are numbers > 1)."""
    try:
        ratios = [float(r) for r in str(text).split(",") if r.strip()]
    except ValueError:
        raise TincConfigError(f"ratios must be comma-separated numbers, got {text!r}") from None
    return checked_ratios(ratios)


def checked_ratios(ratios: Iterable[float]) -> list[float]:
    """`ratios` without repeats, or TincConfigError if empty or one is not finite and > 1."""
    ratios = [float(r) for r in ratios]
    if not ratios:
        raise TincConfigError("no ratios given")
    bad = [r for r in ratios if not (r > 1 and math.isfinite(r))]
    if bad:
        raise TincConfigError(f"ratios must be finite and > 1, got {bad[0]:g}")
    return list(dict.fromkeys(ratios))


def load_input(name: str) -> np.ndarray:
    """An input file or bundled sample (see `tinc.io.resolve`) as a native-endian array
    without length-1 axes; TincInputError for anything tinc would not compress either."""
    return read_input(name)[0]


def read_input(name: str) -> tuple[np.ndarray, int | None]:
    """`load_input`'s array and the channel axis its reader named (a colour image's samples
    per pixel, which `tinc compress` fits as channels), counted in that array's axes."""
    array, metadata = read_with_metadata(name)
    try:
        array = check_array(array)
    except TincInputError as error:
        raise TincInputError(f"{name}: {error}") from None
    if not array.dtype.isnative:  # the codec libraries take native byte order only
        array = array.astype(array.dtype.newbyteorder("="))
    channel = metadata.get("channel_axis")
    if channel is not None:
        channel %= array.ndim
        channel = None if array.shape[channel] == 1 else channel - sum(n == 1 for n in array.shape[:channel])
    return np.ascontiguousarray(array.reshape(squeezed_shape(array.shape))), channel


def _empty_row(label: str, codec: str, target: float, status: str, note: str) -> dict:
    row = {c: None for c in CSV_COLUMNS}
    row.update(input=label, codec=codec, target_ratio=target, status=status, note=note,
               quality=None, nbytes=None, compressed=None)
    return row


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def run_one(codec: Codec, array: np.ndarray, target: float, label: str = "", keep: bool = False) -> dict:
    """Compress `array` with `codec` at ratio >= `target` with the best fidelity found.

    Returns a result row (the CSV columns plus status, note, quality, nbytes, compressed and,
    with `keep`, the decoded array under 'reconstruction').
    """
    reason = codec.unavailable()
    if reason:
        return _empty_row(label, codec.name, target, "unavailable", f"unavailable: {reason}")
    trials = _Trials(codec, array, target)
    try:
        quality = _direct_setting(trials) if codec.direct else _searched_setting(trials)
    except _NoResult as missing:
        return _empty_row(label, codec.name, target, missing.status, missing.note)
    data, encode_s = trials.encoded[quality]
    try:
        rec, decode_s, psnr = trials.reconstruct(quality)
    except Exception as error:  # noqa: BLE001
        return _empty_row(label, codec.name, target, "error", f"error: decode failed ({_one_line(error)})")
    row = {
        "input": label, "codec": codec.name, "target_ratio": target,
        "actual_ratio": array.size * array.dtype.itemsize / len(data), "psnr": psnr,
        "psnr_range": metrics.psnr_range(array, rec), "ssim": metrics.ssim(array, rec),
        "encode_s": encode_s, "decode_s": decode_s,
        "status": "ok", "note": codec.note(data), "quality": quality, "nbytes": len(data), "compressed": data,
    }
    if keep:
        row["reconstruction"] = rec
    return row


class _NoResult(Exception):
    """A run that ends without a result: its status and note for the row."""

    def __init__(self, status: str, note: str):
        super().__init__(note)
        self.status, self.note = status, note


class _Trials:
    """One codec's settings tried on one array: the encodes that reach the target ratio
    (bytes, seconds), the latest reconstruction, and the errors of failed settings."""

    def __init__(self, codec: Codec, array: np.ndarray, target: float):
        self.codec, self.array, self.target = codec, array, target
        self.encoded: dict[float, tuple[bytes, float]] = {}  # feasible settings: bytes, encode seconds
        self.decoded: dict[float, tuple[np.ndarray, float, float]] = {}  # reconstruction, decode seconds, PSNR
        self.errors: list[str] = []

    def measure(self, q: float) -> float | None:
        """The ratio setting `q` gives; None where the codec fails (an infeasible setting)."""
        try:
            t0 = time.perf_counter()
            data = self.codec.encode(self.array, q)
            seconds = time.perf_counter() - t0
        except Exception as error:  # noqa: BLE001 - a failing setting counts as infeasible
            self.errors.append(_one_line(error))
            return None
        ratio = self.array.size * self.array.dtype.itemsize / max(1, len(data))
        if ratio >= self.target:
            self.encoded[q] = (data, seconds)
        return ratio

    def reconstruct(self, q: float) -> tuple[np.ndarray, float, float]:
        """The decode of setting `q`'s bytes, its seconds and PSNR (one kept in memory)."""
        if q not in self.decoded:
            t0 = time.perf_counter()
            rec = np.asarray(self.codec.decode(self.encoded[q][0], self.array.shape, self.array.dtype))
            seconds = time.perf_counter() - t0
            self.decoded.clear()  # keep one reconstruction in memory
            self.decoded[q] = (rec, seconds, metrics.psnr(self.array, rec))
        return self.decoded[q]


def _direct_setting(trials: _Trials) -> float:
    """A codec that takes the ratio itself (tinc): one encode at the target."""
    ratio = trials.measure(float(trials.target))
    if ratio is None:
        note = trials.errors[-1] if trials.errors else "failed"
        status = "unreachable" if "TincConfigError" in note else "error"
        raise _NoResult(status, f"{status}: {note}")
    if float(trials.target) not in trials.encoded:  # the codec broke its ratio promise
        raise _NoResult("error", f"error: ratio {ratio:.2f} below target")
    return float(trials.target)


def _searched_setting(trials: _Trials) -> float:
    """A codec with a quality setting: the best-PSNR setting that reaches the target."""
    codec = trials.codec
    best, smallest = codec.quality_range(trials.array)
    result = bisect_quality(
        trials.measure, trials.target, best, smallest, log=codec.log_scale, integer=codec.integer,
        score=lambda q: trials.reconstruct(q)[2],
    )
    if result.quality is None:
        if result.max_ratio is None:
            raise _NoResult("error", f"error: {trials.errors[-1] if trials.errors else 'failed'}")
        raise _NoResult("unreachable", f"unreachable: at most {result.max_ratio:.1f}x")
    return result.quality


def run_bench(
    inputs: list[str],
    ratios: list[float],
    codecs: list[str | Codec],
    out_dir: str,
    time_limit: float | None = None,
    steps: int | None = None,
    quiet: bool = False,
) -> list[dict]:
    """Run every codec at every ratio on every input; write the reports into `out_dir`.

    `codecs` holds names (see `CODECS`) or `Codec` instances. Returns one dict per run with
    the CSV columns plus status ('ok', 'unreachable', 'unavailable', 'error'), note, quality
    (the codec setting chosen), nbytes and compressed (the bytes).
    """
    if not inputs:
        raise TincInputError("no inputs given")
    ratios = checked_ratios(ratios)
    adapters = [c if isinstance(c, Codec) else make_codec(c, time_limit, steps) for c in codecs]
    if not adapters:
        raise TincConfigError("no codecs given")
    for name in inputs:  # fail on a bad input before hours of work on the others; read again below
        read_input(name)

    from tqdm import tqdm

    show_ratio = sorted(ratios)[(len(ratios) - 1) // 2]  # slices.png shows the median target
    rows: list[dict] = []
    first: tuple[str, np.ndarray] | None = None
    shown: list[dict] = []
    info: dict[str, str] = {}
    total = len(inputs) * len(adapters) * len(ratios)
    with tqdm(total=total, disable=quiet, file=sys.stderr, unit="run", dynamic_ncols=True) as bar:
        for index, name in enumerate(inputs):
            array, channel_axis = read_input(name)
            info[name] = f"{'x'.join(map(str, array.shape))} {array.dtype}, {array.nbytes:,} bytes"
            if index == 0:
                first = (name, array)
            for codec in (adapter.for_input(channel_axis) for adapter in adapters):
                for target in ratios:
                    bar.set_description(f"{os.path.basename(str(name))} {codec.name} {target:g}x")
                    keep = index == 0 and target == show_ratio
                    row = run_one(codec, array, float(target), label=str(name), keep=keep)
                    if keep and row["status"] == "ok":
                        shown.append(row)
                    rows.append({k: v for k, v in row.items() if k != "reconstruction"})
                    if not quiet:
                        tqdm.write(_summary(row), file=sys.stderr)
                    bar.update(1)
    os.makedirs(out_dir, exist_ok=True)
    write_csv(rows, os.path.join(out_dir, "results.csv"))
    write_markdown(rows, os.path.join(out_dir, "results.md"), info)
    plot_rd(rows, os.path.join(out_dir, "rd.png"))
    if first is not None:
        plot_slices(first[1], shown, os.path.join(out_dir, "slices.png"), title=f"{first[0]} at {show_ratio:g}x")
    return rows


def _summary(row: dict) -> str:
    """One progress line for a finished run."""
    head = f"{os.path.basename(str(row['input']))} {row['codec']:>14} {row['target_ratio']:>6g}x:"
    if row["status"] != "ok":
        return f"{head} {row['note']}"
    return (f"{head} {row['actual_ratio']:8.1f}x  PSNR {row['psnr']:6.2f} dB  SSIM {row['ssim']:.4f}"
            f"  enc {row['encode_s']:.3f}s dec {row['decode_s']:.3f}s")
