"""`tinc bench --max-error`: file size at equal guaranteed maximum error.

For each input and each bound `E = fraction x (max - min)`:

- tinc: one fit per network ratio in `--ratios` (each exactly `tinc compress --ratio R`),
  then `tinc compress --ratio R --max-error E`'s correction added to it
  (`encoder.with_correction`, the same function); the smallest file over the ratios is kept.
  A fit is shared by all bounds, so a ratio costs one fit, not one per bound.
- SZ3 (absolute error mode), SPERR (point-wise error mode) and ZFP (fixed accuracy) through
  imagecodecs, given the bound itself on float data and floor(E) + 0.49 on integer data, whose
  decode is rounded to integers (so they get the same integer rounding tinc uses).

Every decode is checked: a codec whose output breaks the bound is retried with half the
bound (up to 4 times) and the retries are reported. PSNR has the dtype's peak, as `tinc eval`.
"""

from __future__ import annotations

import csv
import math
import os
import sys
import time
from collections.abc import Sequence

import numpy as np

from .. import compress, container, correction, decompress, metrics
from ..encoder import with_correction
from ..errors import TincConfigError
from ..io import atomic_path
from .base import restore_dtype
from .classic import SperrCodec, _at_most_4d

DEFAULT_FRACTIONS = "1e-2,1e-3,1e-4"
DEFAULT_NETWORK_RATIOS = "16,32,64,128,256,512"
COLUMNS = ["input", "shape", "dtype", "fraction", "bound", "codec", "bytes", "ratio", "psnr", "max_error", "note"]


def _parse_floats(text: str, name: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise TincConfigError(f"{name} must be comma-separated numbers, got {text!r}") from None
    if not values or any(not (v > 0 and math.isfinite(v)) for v in values):
        raise TincConfigError(f"{name} must be positive numbers, got {text!r}")
    return values


def classic_bound(bound: float, dtype: np.dtype) -> float:
    """The error bound a classic codec is given for a guaranteed `bound` after rounding to `dtype`."""
    return math.floor(bound) + 0.49 if dtype.kind in "ui" else bound


def _classic(name: str, array: np.ndarray, bound: float) -> tuple[bytes, np.ndarray]:
    import imagecodecs

    x = np.asarray(array, dtype=np.float64)
    if name == "sz3":
        data = bytes(imagecodecs.sz3_encode(x.reshape(_at_most_4d(array.shape)), mode="abs", abs=bound))
        values = np.asarray(imagecodecs.sz3_decode(data, shape=_at_most_4d(array.shape), dtype=np.float64))
    elif name == "zfp":
        data = bytes(imagecodecs.zfp_encode(x.reshape(_at_most_4d(array.shape)), bound, mode="accuracy"))
        values = np.asarray(imagecodecs.zfp_decode(data))
    elif name == "sperr":
        order, volume = SperrCodec._volume(array.shape)
        squeezed = tuple(s for s in array.shape if s > 1) or (1,)
        data = bytes(imagecodecs.sperr_encode(x.reshape(squeezed).transpose(order).reshape(volume), bound, "pwe"))
        values = np.asarray(imagecodecs.sperr_decode(data)).reshape([squeezed[a] for a in order]).transpose(np.argsort(order))
    else:
        raise TincConfigError(f"unknown codec {name}")
    return data, restore_dtype(values.reshape(array.shape), array.dtype)


def run_bounded(inputs: Sequence[str], fractions: Sequence[float], network_ratios: Sequence[float], out: str,
                codecs: Sequence[str] = ("sz3", "sperr", "zfp"), time_limit: float | None = None,
                steps: int | None = None, quiet: bool = False) -> list[dict]:
    """Run the comparison; write `max_error.csv` and `max_error.md` into `out`; return the rows."""
    from .sweep import read_input

    os.makedirs(out, exist_ok=True)
    rows: list[dict] = []
    say = (lambda message: None) if quiet else (lambda message: print(message, file=sys.stderr, flush=True))
    options = dict(quiet=True)
    if time_limit is not None:
        options["time_limit"] = time_limit
    if steps is not None:
        options["steps"] = steps
    for name in inputs:
        array, channel_axis = read_input(name)
        low, high = float(np.min(array)), float(np.max(array))
        base = dict(input=name, shape="x".join(map(str, array.shape)), dtype=str(array.dtype))
        networks = []
        for ratio in network_ratios:
            started = time.perf_counter()
            try:
                networks.append((ratio, compress(array, ratio=ratio, channel_axis=channel_axis, **options)))
            except TincConfigError as error:
                say(f"{name}: network ratio {ratio:g} fails ({error})")
                continue
            say(f"{name}: network at {ratio:g}x, {len(networks[-1][1])} bytes, {time.perf_counter() - started:.0f} s")
        for fraction in fractions:
            bound = fraction * (high - low)
            row = dict(base, fraction=fraction, bound=bound)
            best = None
            for ratio, network in networks:
                data, measured = with_correction(network, array, bound)
                if best is None or len(data) < len(best[1]):
                    best = (ratio, data, len(network))
            if best is not None:
                ratio, data, network_bytes = best
                restored = decompress(data)
                method = correction.METHOD_NAMES[container.unpack(data).correction[0]]
                rows.append(dict(row, codec="tinc", bytes=len(data), ratio=array.nbytes / len(data),
                                 psnr=metrics.psnr(array, restored), max_error=metrics.max_abs_error(array, restored),
                                 note=f"network {ratio:g}x: {network_bytes} B + correction {len(data) - network_bytes} B ({method})"))
                say(f"{name} at {fraction:g} of the range: tinc {len(data)} bytes ({rows[-1]['note']})")
            for codec in codecs:
                given, note = classic_bound(bound, array.dtype), ""
                for attempt in range(5):
                    data, restored = _classic(codec, array, given)
                    measured = metrics.max_abs_error(array, restored)
                    if measured <= bound:
                        break
                    note = f"broke the bound at {given:g} ({measured:g}); given {given / 2:g}"
                    given /= 2
                rows.append(dict(row, codec=codec, bytes=len(data), ratio=array.nbytes / len(data),
                                 psnr=metrics.psnr(array, restored), max_error=measured, note=note))
                say(f"{name} at {fraction:g} of the range: {codec} {len(data)} bytes")
        _write(rows, out)
    return rows


def _write(rows: list[dict], out: str) -> None:
    with atomic_path(os.path.join(out, "max_error.csv")) as temporary:
        with open(temporary, "w", newline="") as handle:
            writer = csv.DictWriter(handle, COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
    with atomic_path(os.path.join(out, "max_error.md")) as temporary:
        with open(temporary, "w") as handle:
            handle.write(markdown(rows))


def markdown(rows: list[dict]) -> str:
    """One table row per (input, bound): each codec's bytes (PSNR), and tinc against the smallest other."""
    codecs = list(dict.fromkeys(r["codec"] for r in rows))
    lines = ["| input | bound (of range) | E | " + " | ".join(f"{c} bytes (PSNR)" for c in codecs) + " | tinc / smallest other |",
             "|---|---:|---:|" + "---:|" * len(codecs) + "---:|"]
    losses = []
    for key in dict.fromkeys((r["input"], r["fraction"]) for r in rows):
        cells = {r["codec"]: r for r in rows if (r["input"], r["fraction"]) == key}
        others = [r["bytes"] for c, r in cells.items() if c != "tinc"]
        relative = cells["tinc"]["bytes"] / min(others) if "tinc" in cells and others else float("nan")
        first = next(iter(cells.values()))
        text = " | ".join(f"{cells[c]['bytes']} ({cells[c]['psnr']:.2f})" if c in cells else "-" for c in codecs)
        lines.append(f"| {key[0]} {first['shape']} {first['dtype']} | {key[1]:g} | {first['bound']:.4g} | {text} | {relative:.3f} |")
        if relative > 1:
            smallest = min((c for c in cells if c != "tinc"), key=lambda c: cells[c]["bytes"])
            losses.append(f"- {key[0]} at {key[1]:g} of the range: tinc {cells['tinc']['bytes']} bytes, "
                          f"{smallest} {cells[smallest]['bytes']} bytes ({100 * (relative - 1):.1f}% larger)")
    notes = [f"- {r['input']} at {r['fraction']:g}, {r['codec']}: {r['note']}" for r in rows if r["note"]]
    return "\n".join(lines + ["", "Where tinc loses (file larger than the smallest other codec's at the same bound):", ""]
                     + (losses or ["- nowhere"]) + ["", "Notes:", ""] + notes) + "\n"
