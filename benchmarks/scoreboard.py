"""The scoreboard: the whole corpus against SPERR, SZ3, JPEG 2000, JPEG XL and HEVC.

    python benchmarks/scoreboard.py [--time-limit 300] [--ratios 64,128,256,512] [--inputs NAME,...]
        [--codecs sperr,sz3,jpeg2000,jpegxl,hevc,tinc] [--out benchmarks/scoreboard]
        [--doc benchmarks/SCOREBOARD.md] [--baseline OLD.csv] [--resume] [--dry-run]

Every (input, ratio, codec) cell runs through `tinc.bench.run_one`, as `tinc bench` does: each
classic codec's quality setting is bisected for the best PSNR at a ratio >= the target; tinc
takes the ratio as its budget, with default options and `--time-limit` seconds of training.
PSNR is in dB with the dtype's maximum as peak, as `tinc eval`.

The corpus (`--inputs` picks some, by 1-based index, by a unique part of the name, or names
other files): three real-sized inputs (a 197x233x189 uint8 grey-matter map, a 1024x1024
uint16 MR slice, a 1955x1841 uint16 radiograph) and the four small inputs of the earlier
scoreboards. Names resolve through `tinc.io.resolve`; ../shared is taken relative to the
repository root, so any working directory will do. nilearn's T1 and white-matter templates and
pydicom-data's RG3_* and 693_* files are kept aside for independent checks and are refused.

Written in one run: `OUT/results.csv` (one line per cell, rewritten after every cell, so
`--resume` skips what an interrupted run finished), `OUT/results.md` (the full per-input
tables of `tinc bench`), `OUT/rd-NAME.png` (PSNR and SSIM against ratio, one per input), and
the document `--doc`: command, date, commit, how many cells ran on which commit (results.csv
keeps each cell's), machine, a PSNR table per input with tinc's
margins against SPERR and against the best of HEVC / JPEG 2000 / JPEG XL, and the list of
cells where tinc loses, each against the fidelity goal:

- at 128x, 256x and 512x: tinc >= SPERR and >= the best of HEVC, JPEG 2000 and JPEG XL;
- at 64x: tinc >= SPERR - 0.5 dB;
- on the real-sized 3-D input at 256x and 512x: tinc >= SPERR + 1 dB;
- with `--baseline` (an earlier scoreboard's results.csv): no small input's tinc cell more
  than 0.3 dB below the baseline's.

A cell another codec cannot reach is shown as such and is no loss for tinc. A run takes about
inputs x ratios x the time limit (7 x 4 x 300 s: 2 h 20 min on 2 cores) plus the classic
codecs' searches (seconds to a few minutes per input); `--dry-run` prints the cells and the
estimate. The analysis and the document writer (`analyse`, `write_document`) import without
running anything.
"""

# One file, longer than the project's modules, on purpose: it runs as a script with no
# package around it, and tests/test_bench.py imports it by path to check the analysis and
# the document writer on rows of its own.
from __future__ import annotations

import argparse
import csv
import datetime
import math
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

REAL_3D_INPUT = "nilearn:mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz"
# (label, real-sized, the real-sized 3-D input of the goal's SPERR + 1 dB check)
CORPUS: tuple[tuple[str, bool, bool], ...] = (
    (REAL_3D_INPUT, True, True),
    ("pydicom-data:MR2_UNCI.dcm", True, False),
    ("pydicom-data:RG1_UNCI.dcm", True, False),
    ("../shared/data/brain64.tif", False, False),
    ("../shared/data/tinc_test.tif", False, False),
    ("nibabel:example4d.nii.gz", False, False),
    ("skimage:cell", False, False),
)
# kept aside for independent checks: never benchmarked here
HELD_OUT = (re.compile(r"mni_icbm152_(t1|wm)_", re.I), re.compile(r"^(RG3_|693_)", re.I))

DEFAULT_CODECS = "sperr,sz3,jpeg2000,jpegxl,hevc,tinc"
DEFAULT_RATIOS = "64,128,256,512"
DEFAULT_TIME_LIMIT = 300.0
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "scoreboard"
DEFAULT_DOC = REPO_ROOT / "benchmarks" / "SCOREBOARD.md"

# the fidelity goal
OTHERS = ("hevc", "jpeg2000", "jpegxl")
"""tinc must also beat the best of these (at the strict ratios)."""
STRICT_RATIOS = (128.0, 256.0, 512.0)
"""tinc >= SPERR and >= the best of `OTHERS`."""
TOLERANCE_RATIO, TOLERANCE_DB = 64.0, 0.5
"""At 64x: tinc >= SPERR - 0.5 dB."""
LEAD_RATIOS, LEAD_DB = (256.0, 512.0), 1.0
"""On the real-sized 3-D input: tinc >= SPERR + 1 dB."""
REGRESSION_DB = 0.3
"""Small inputs: tinc no more than this below the baseline scoreboard."""

NAMES = {"sperr": "SPERR", "sz3": "SZ3", "zfp": "ZFP", "zfp-accuracy": "ZFP (accuracy)", "jpeg2000": "JPEG 2000",
         "jpegxl": "JPEG XL", "hevc": "HEVC", "h264": "H.264", "tinc": "tinc"}
OTHERS_TEXT = "best of HEVC/JPEG 2000/JPEG XL"

EXTRA_COLUMNS = ("status", "note", "quality", "nbytes", "time_limit", "cell_s", "commit")
NUMERIC = {"target_ratio", "actual_ratio", "psnr", "psnr_range", "ssim", "encode_s", "decode_s",
           "quality", "nbytes", "time_limit", "cell_s"}


def csv_columns() -> tuple[str, ...]:
    """`tinc bench`'s results.csv columns, then what `--resume` and the document need."""
    from tinc.bench import CSV_COLUMNS

    return tuple(CSV_COLUMNS) + EXTRA_COLUMNS


@dataclass
class Input:
    """One input of the scoreboard."""

    label: str
    """As given (and in the CSV and the document), e.g. ../shared/data/brain64.tif."""
    path: str = ""
    """What is read: the label, with ../shared taken from the repository root."""
    real: bool = False
    """Real-sized (the goal's regression check is for the small inputs only)."""
    real_3d: bool = False
    """The real-sized 3-D input: tinc >= SPERR + 1 dB at 256x and 512x."""
    info: str = ""
    """Shape, dtype and bytes, once read."""

    def __post_init__(self):
        self.path = self.path or self.label


@dataclass
class Comparison:
    """tinc against SPERR and the best of `OTHERS` in one cell (input, ratio)."""

    tinc: float | None = None
    sperr: float | None = None
    best: tuple[str, float] | None = None
    """(codec, PSNR) of the best of OTHERS that reached the ratio."""
    others_run: bool = False
    """Whether any of OTHERS has a row in this cell."""

    @property
    def vs_sperr(self) -> float | None:
        return None if self.tinc is None or self.sperr is None else self.tinc - self.sperr

    @property
    def vs_best(self) -> float | None:
        return None if self.tinc is None or self.best is None else self.tinc - self.best[1]


@dataclass
class Loss:
    """One cell where tinc fails one comparison; `goal_missed` where the fidelity goal asks for it."""

    input: str
    ratio: float
    check: str
    """'sperr', 'others', 'sperr-tolerance' (64x), 'sperr-lead' (real 3-D), 'regression', 'no-result'."""
    tinc: float | None
    reference: float | None
    reference_name: str
    margin: float | None
    """tinc - the reference codec's PSNR (for 'sperr-tolerance' and 'sperr-lead': tinc - SPERR)."""
    goal_missed: bool
    text: str = field(default="", compare=False)


# ---------------------------------------------------------------------------- results table
def key(row: dict) -> tuple[str, float, str]:
    return str(row["input"]), float(row["target_ratio"]), str(row["codec"])


def read_rows(path: str | os.PathLike) -> list[dict]:
    """The rows of a scoreboard results.csv (or a `tinc bench` one: status from the metrics)."""
    rows = []
    with open(path, newline="") as handle:
        for line in csv.DictReader(handle):
            row = {}
            for column, value in line.items():
                if column in NUMERIC:
                    row[column] = float(value) if value not in ("", None) else None
                else:
                    row[column] = value or ""
            if not row.get("status"):
                row["status"] = "ok" if row.get("psnr") is not None else "unreachable"
            rows.append(row)
    return rows


def write_rows(rows: list[dict], path: str | os.PathLike) -> None:
    """All rows, atomically (a kill mid-write leaves the previous file)."""
    columns = csv_columns()
    temporary = f"{path}.tmp"
    with open(temporary, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if row.get(c) is None else (repr(float(row[c])) if isinstance(row[c], float) else row[c])
                             for c in columns])
    os.replace(temporary, path)


def _cells(rows: list[dict]) -> dict[tuple[str, float, str], dict]:
    return {key(r): r for r in rows}


def _ok_psnr(row: dict | None) -> float | None:
    if row is None or row.get("status") != "ok" or row.get("psnr") is None:
        return None
    value = float(row["psnr"])
    return None if math.isnan(value) else value


def compare(cells: dict, label: str, ratio: float) -> Comparison:
    """tinc, SPERR and the best of OTHERS in one cell."""
    result = Comparison(tinc=_ok_psnr(cells.get((label, ratio, "tinc"))),
                        sperr=_ok_psnr(cells.get((label, ratio, "sperr"))))
    for codec in OTHERS:
        row = cells.get((label, ratio, codec))
        result.others_run |= row is not None
        value = _ok_psnr(row)
        if value is not None and (result.best is None or value > result.best[1]):
            result.best = (codec, value)
    return result


def _db(value: float) -> str:
    return f"{value:.2f} dB" if math.isfinite(value) else "lossless"


def _signed(value: float) -> str:
    return f"{value:+.2f}" if math.isfinite(value) else ("+inf" if value > 0 else "-inf")


def analyse(rows: list[dict], inputs: list[Input], ratios: list[float],
            baseline: list[dict] | None = None) -> tuple[dict[tuple[str, float], Comparison], list[Loss]]:
    """Each cell's comparison, and every loss of tinc in the order of the tables."""
    cells = _cells(rows)
    base = _cells(baseline or [])
    table: dict[tuple[str, float], Comparison] = {}
    losses: list[Loss] = []
    for item in inputs:
        for ratio in ratios:
            ratio = float(ratio)
            c = table[item.label, ratio] = compare(cells, item.label, ratio)
            where = f"{item.label} at {ratio:g}x"
            strict = ratio in STRICT_RATIOS
            tinc_row = cells.get((item.label, ratio, "tinc"))
            if tinc_row is None:
                continue  # not run
            if c.tinc is None:
                reached = [f"{NAMES['sperr']} {_db(c.sperr)}"] if c.sperr is not None else []
                if c.best is not None:
                    reached.append(f"{NAMES.get(c.best[0], c.best[0])} {_db(c.best[1])}")
                if reached:
                    goal = strict or ratio == TOLERANCE_RATIO
                    text = (f"{where}: tinc has no result ({tinc_row.get('note') or tinc_row.get('status')}) "
                            f"where {' and '.join(reached)} reached it" + ("; goal missed" if goal else ""))
                    losses.append(Loss(item.label, ratio, "no-result", None, None, "", None, goal, text))
                continue
            if c.sperr is not None and c.tinc < c.sperr:
                if strict:
                    tail = "goal missed"
                elif ratio == TOLERANCE_RATIO:
                    tail = (f"within the {TOLERANCE_DB:g} dB the 64x goal allows" if c.tinc >= c.sperr - TOLERANCE_DB
                            else f"beyond the {TOLERANCE_DB:g} dB the 64x goal allows (below)")
                else:
                    tail = f"no goal at {ratio:g}x"
                text = f"{where}: tinc {_db(c.tinc)} < SPERR {_db(c.sperr)} ({_signed(c.vs_sperr)} dB); {tail}"
                losses.append(Loss(item.label, ratio, "sperr", c.tinc, c.sperr, "sperr", c.vs_sperr, strict, text))
            if c.best is not None and c.tinc < c.best[1]:
                tail = "goal missed" if strict else f"no goal at {ratio:g}x"
                text = (f"{where}: tinc {_db(c.tinc)} < {OTHERS_TEXT}: {NAMES.get(c.best[0], c.best[0])} "
                        f"{_db(c.best[1])} ({_signed(c.vs_best)} dB); {tail}")
                losses.append(Loss(item.label, ratio, "others", c.tinc, c.best[1], c.best[0], c.vs_best, strict, text))
            if ratio == TOLERANCE_RATIO and c.sperr is not None and c.tinc < c.sperr - TOLERANCE_DB:
                text = (f"{where}: tinc {_db(c.tinc)} < SPERR - {TOLERANCE_DB:g} dB = {_db(c.sperr - TOLERANCE_DB)} "
                        f"({_signed(c.vs_sperr)} dB against SPERR); goal missed")
                losses.append(Loss(item.label, ratio, "sperr-tolerance", c.tinc, c.sperr - TOLERANCE_DB, "sperr",
                                   c.vs_sperr, True, text))
            if item.real_3d and ratio in LEAD_RATIOS and c.sperr is not None and c.tinc < c.sperr + LEAD_DB:
                text = (f"{where}: tinc {_db(c.tinc)} < SPERR + {LEAD_DB:g} dB = {_db(c.sperr + LEAD_DB)} "
                        f"({_signed(c.vs_sperr)} dB against SPERR; the real-sized 3-D input); goal missed")
                losses.append(Loss(item.label, ratio, "sperr-lead", c.tinc, c.sperr + LEAD_DB, "sperr",
                                   c.vs_sperr, True, text))
            before = _ok_psnr(base.get((item.label, ratio, "tinc")))
            if not item.real and before is not None and c.tinc < before - REGRESSION_DB:
                text = (f"{where}: tinc {_db(c.tinc)} < the baseline's tinc {_db(before)} - {REGRESSION_DB:g} dB "
                        f"({_signed(c.tinc - before)} dB against the baseline); goal missed")
                losses.append(Loss(item.label, ratio, "regression", c.tinc, before, "baseline",
                                   c.tinc - before, True, text))
    return table, losses


# ---------------------------------------------------------------------------- document
def _cell_text(row: dict | None) -> str:
    if row is None:
        return "not run"
    status = row.get("status")
    if status == "ok":
        value = _ok_psnr(row)
        return "n/a" if value is None else (f"{value:.2f}" if math.isfinite(value) else "lossless")
    if status == "unreachable":
        found = re.search(r"at most ([0-9.]+x)", row.get("note") or "")
        return f"unreachable (max {found.group(1)})" if found else "unreachable"
    return status or "?"


def plot_name(label: str, taken: set[str] | None = None) -> str:
    """rd-NAME.png for an input: its file name without folder, sample prefix or extensions."""
    stem = label.rsplit(":", 1)[-1].replace("\\", "/").rsplit("/", 1)[-1]
    stem = re.sub(r"(\.nii\.gz|\.[A-Za-z0-9]{1,4})$", "", stem)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "input"
    name, n = f"rd-{stem}.png", 2
    while taken is not None and name in taken:
        name, n = f"rd-{stem}-{n}.png", n + 1
    if taken is not None:
        taken.add(name)
    return name


def _link(target: str | os.PathLike, doc: str | os.PathLike) -> str:
    return Path(os.path.relpath(Path(target).resolve(), Path(doc).resolve().parent)).as_posix()


def write_document(path: str | os.PathLike, rows: list[dict], inputs: list[Input], ratios: list[float],
                   codecs: list[str], meta: dict | None = None, plots: dict[str, str] | None = None,
                   skipped: dict[str, str] | None = None, baseline: list[dict] | None = None) -> list[Loss]:
    """The scoreboard document; returns the losses it lists.

    `meta`: command, date, commit, machine, time_limit, csv (path), markdown (path), resumed
    (cells taken from an earlier run), elapsed (seconds), baseline (path); any may be absent.
    `plots` maps an input's label to its RD plot's path; `skipped` an input that could not be
    read to why.
    """
    meta = dict(meta or {})
    ratios = [float(r) for r in ratios]
    table, losses = analyse(rows, inputs, ratios, baseline)
    cells = _cells(rows)
    tinc_cells = sum(1 for i in inputs for r in ratios if (i.label, r, "tinc") in cells)
    meta.setdefault("cell_commits", _cell_commits(rows))
    lines = _facts_section(path, meta)
    lines += _goal_section(losses, tinc_cells, codecs, meta, baseline)
    lines += ["## PSNR (dB) per input", ""]
    lines += [f"Margins: tinc - SPERR, and tinc - the {OTHERS_TEXT} (which one in brackets).", ""]
    for item in inputs:
        lines += _input_section(path, item, table, cells, ratios, codecs, plots, skipped)
    lines += _losses_section(losses, tinc_cells)
    if skipped:
        lines += ["## Skipped inputs", ""] + [f"- {name}: {why}" for name, why in skipped.items()] + [""]
    not_run = [f"{i.label} at {r:g}x" for i in inputs if not (skipped and i.label in skipped)
               for r in ratios if any((i.label, r, c) not in cells for c in codecs)]
    if not_run:
        lines += ["## Cells not run", ""] + [f"- {cell}" for cell in not_run] + [""]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    temporary = f"{path}.tmp"
    with open(temporary, "w") as handle:
        handle.write("\n".join(lines))
    os.replace(temporary, path)
    return losses


def _facts_section(path: str | os.PathLike, meta: dict) -> list[str]:
    """The title, the command that made the document, and the run's facts."""
    lines = ["# Scoreboard", ""]
    lines += ["The corpus against the classic codecs, as today's code gives it. Produced by", ""]
    lines += [f"```sh\n{meta.get('command', '(command not recorded)')}\n```", ""]
    facts = [
        ("Date", meta.get("date")),
        ("Commit", meta.get("commit")),
        ("Cells by the commit they ran on", meta.get("cell_commits")),
        ("Machine", meta.get("machine")),
        ("Run time", _duration(meta["elapsed"]) + (f" ({meta['resumed']} cells taken from an earlier run, `--resume`)"
                                                    if meta.get("resumed") else "")
         if meta.get("elapsed") is not None else None),
    ]
    lines += [f"- {name}: {value}" for name, value in facts if value]
    limit = meta.get("time_limit")
    lines.append(f"- tinc: default options, `--time-limit {limit:g}` s per cell" if limit is not None
                 else "- tinc: default options")
    lines += [
        "- Other codecs: the quality setting of each is bisected for the best PSNR at a ratio >= the "
        "target (as `tinc bench`); \"unreachable (max Nx)\": no setting got there.",
        "- PSNR: dB, peak = the dtype's maximum (as `tinc eval`).",
    ]
    if meta.get("csv"):
        link = _link(meta["csv"], path)
        raw = f"[{link}]({link})"
        if meta.get("markdown"):
            link = _link(meta["markdown"], path)
            raw += f"; every metric per cell (ratio reached, SSIM, times, tinc's tree): [{link}]({link})"
        lines.append(f"- Raw results: {raw}")
    lines.append("")
    return lines


def _goal_section(losses: list[Loss], tinc_cells: int, codecs: list[str], meta: dict,
                  baseline: list[dict] | None) -> list[str]:
    """The fidelity goal, and whether this run meets it."""
    missed = [loss for loss in losses if loss.goal_missed]
    lines = ["## Goal", ""]
    lines += [
        f"- At {', '.join(f'{r:g}x' for r in STRICT_RATIOS)}: tinc >= SPERR and >= the {OTHERS_TEXT}, every input.",
        f"- At {TOLERANCE_RATIO:g}x: tinc >= SPERR - {TOLERANCE_DB:g} dB, every input.",
        f"- The real-sized 3-D input at {' and '.join(f'{r:g}x' for r in LEAD_RATIOS)}: tinc >= SPERR + {LEAD_DB:g} dB.",
        f"- No small input more than {REGRESSION_DB:g} dB below the previous scoreboard: "
        + (f"checked against {meta.get('baseline') or 'the baseline given'}." if meta.get("baseline") or baseline
           else "not checked in this run (`--baseline OLD/results.csv`)."),
        "",
    ]
    if not tinc_cells:
        lines += ["tinc was not run: no goal can be checked.", ""]
    elif missed:
        where = sorted({(loss.input, loss.ratio) for loss in missed}, key=lambda c: (c[0], c[1]))
        lines += [f"**Not met**: {_plural(len(missed), 'goal check')} missed in {len(where)} of "
                  f"{_plural(tinc_cells, 'tinc cell')} (\"goal missed\" below).", ""]
    else:
        lines += [f"**Met** in all {_plural(tinc_cells, 'tinc cell')}.", ""]
    left_out = [NAMES.get(c, c) for c in ("sperr",) + OTHERS if c not in codecs]
    if tinc_cells and left_out:
        lines += [f"This run leaves out {', '.join(left_out)}: the checks against "
                  f"{'it' if len(left_out) == 1 else 'them'} are not made.", ""]
    return lines


def _input_section(path: str | os.PathLike, item: Input, table: dict[tuple[str, float], Comparison], cells: dict,
                   ratios: list[float], codecs: list[str], plots: dict[str, str] | None,
                   skipped: dict[str, str] | None) -> list[str]:
    """One input's PSNR table: a row per ratio, a column per codec, then tinc's margins."""
    title = item.label + (" (real-sized)" if item.real else "")
    lines = [f"### {title}", ""]
    if skipped and item.label in skipped:
        return lines + [f"Skipped: {skipped[item.label]}", ""]
    about = [item.info] if item.info else []
    if plots and item.label in plots:
        about.append(f"RD plot: [{_link(plots[item.label], path)}]({_link(plots[item.label], path)})")
    if about:
        lines += ["; ".join(about), ""]
    header = ["ratio"] + [NAMES.get(c, c) for c in codecs] + ["tinc - SPERR", f"tinc - {OTHERS_TEXT}"]
    if "tinc" in codecs:
        header += ["tinc encode (s)", "tinc's tree"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---:|" * (len(header) - 1) + "---|"]
    notes: list[str] = []
    for ratio in ratios:
        values = _table_row(item, ratio, table[item.label, ratio], cells, codecs, notes)
        lines.append(f"| {ratio:g}x | " + " | ".join(values) + " |")
    lines.append("")
    if notes:
        lines += [f"- {note}" for note in notes] + [""]
    return lines


def _table_row(item: Input, ratio: float, c: Comparison, cells: dict, codecs: list[str], notes: list[str]) -> list[str]:
    """One ratio's cells of an input's table; what a failed cell said goes to `notes`."""
    values = []
    for codec in codecs:
        row = cells.get((item.label, ratio, codec))
        values.append(_cell_text(row))
        if row is not None and row.get("status") in ("error", "unavailable") or (
                codec == "tinc" and row is not None and row.get("status") == "unreachable"):
            notes.append(f"{ratio:g}x {NAMES.get(codec, codec)}: {row.get('note')}")
    if c.tinc is None:
        vs_sperr = vs_best = "—"
    else:
        vs_sperr = _signed(c.vs_sperr) if c.vs_sperr is not None else (
            "SPERR unreachable" if (item.label, ratio, "sperr") in cells else "SPERR not run")
        if c.best is not None:
            vs_best = f"{_signed(c.vs_best)} ({NAMES.get(c.best[0], c.best[0])})"
        else:
            vs_best = "none reach it" if c.others_run else "not run"
    values += [vs_sperr, vs_best]
    if "tinc" in codecs:
        tinc_row = cells.get((item.label, ratio, "tinc"))
        ok = tinc_row is not None and tinc_row.get("status") == "ok"
        values += [f"{tinc_row['encode_s']:.0f}" if ok and tinc_row.get("encode_s") is not None else "",
                   (tinc_row.get("note") or "") if ok else ""]
    return values


def _losses_section(losses: list[Loss], tinc_cells: int) -> list[str]:
    lines = ["## Where tinc loses", ""]
    if not tinc_cells:
        return lines + ["tinc was not run.", ""]
    if losses:
        return lines + [f"- {loss.text}" for loss in losses] + [""]
    return lines + ["Nowhere: tinc is ahead of SPERR and of the best of HEVC, JPEG 2000 and JPEG XL in every cell "
                    "it was run, and every goal check holds.", ""]


def _cell_commits(rows: list[dict]) -> str:
    """How many cells ran on each commit (a --resume run's document mixes several)."""
    counts = Counter(row.get("commit") or "not recorded" for row in rows)
    return "; ".join(f"{commit}: {count}" for commit, count in sorted(counts.items(), key=lambda item: -item[1]))


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    if hours:
        return f"{hours} h {rest // 60:02d} min"
    return f"{rest // 60} min {rest % 60:02d} s" if rest >= 60 else f"{rest} s"


def _plural(n: int, word: str, plural: str = "") -> str:
    return f"{n} {word if n == 1 else plural or word + 's'}"


# ---------------------------------------------------------------------------- the run's facts
def git_commit() -> str:
    """`git rev-parse --short HEAD`, plus ' + local changes' when the tree is dirty."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO_ROOT, capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head + (" + local changes" if dirty else "")


def machine() -> str:
    cores = os.cpu_count() or 0
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = cores
    text = f"{cores} CPU cores" + (f" ({usable} usable)" if usable != cores else "") + f", {platform.machine()}"
    try:
        with open("/proc/cpuinfo") as handle:
            model = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), "")
        if model:
            text += f" ({model})"
    except OSError:
        pass
    try:
        text += f", {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB"
    except (ValueError, OSError, AttributeError):
        pass
    try:
        import torch

        text += f", PyTorch {torch.__version__} ({torch.get_num_threads()} threads"
        text += ", CUDA available but unused)" if torch.cuda.is_available() else ", CPU)"
    except ImportError:
        pass
    if os.environ.get("OMP_NUM_THREADS"):
        text += f", OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}"
    return text


# ---------------------------------------------------------------------------- inputs
class ScoreboardError(Exception):
    """A bad command line: one line, exit code 2."""


def held_out(label: str) -> bool:
    name = label.rsplit(":", 1)[-1].replace("\\", "/").rsplit("/", 1)[-1]
    return any(pattern.search(name) for pattern in HELD_OUT)


def corpus_input(label: str, real: bool = False, real_3d: bool = False) -> Input:
    path = str((REPO_ROOT / label).resolve()) if label.startswith("../shared/") else label
    return Input(label, path, real, real_3d)


def select_inputs(text: str | None) -> list[Input]:
    """The corpus, or the entries `text` names: 1-based indices, unique parts of names, or other inputs."""
    corpus = [corpus_input(*entry) for entry in CORPUS]
    if not text:
        return corpus
    chosen: list[Input] = []
    for token in (t.strip() for t in text.split(",")):
        if not token:
            continue
        if held_out(token):
            raise ScoreboardError(f"{token} is kept aside for independent checks; it is not benchmarked here")
        if token.isdigit():
            index = int(token)
            if not 1 <= index <= len(corpus):
                raise ScoreboardError(f"input index {index} is not in 1..{len(corpus)} (see --dry-run)")
            match = corpus[index - 1]
        else:
            exact = [i for i in corpus if i.label == token]
            partial = exact or [i for i in corpus if token.lower() in i.label.lower()]
            if len(partial) > 1:
                raise ScoreboardError(f"{token!r} names several inputs: {', '.join(i.label for i in partial)}")
            match = partial[0] if partial else Input(token)
        if all(match.label != i.label for i in chosen):
            chosen.append(match)
    if not chosen:
        raise ScoreboardError("no inputs selected")
    return chosen


# ---------------------------------------------------------------------------- the run
def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _short(label: str) -> str:
    return label.rsplit(":", 1)[-1].replace("\\", "/").rsplit("/", 1)[-1]


def _progress(row: dict) -> str:
    if row.get("status") == "ok":
        return f"{row['psnr']:.2f} dB at {row['actual_ratio']:.1f}x"
    return row.get("note") or row.get("status") or "?"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scoreboard.py", description="The scoreboard: the corpus against the classic codecs.",
        epilog="Inputs (for --inputs): " + "; ".join(f"{n}: {label}" for n, (label, *_) in enumerate(CORPUS, 1)),
    )
    parser.add_argument("--time-limit", type=float, default=DEFAULT_TIME_LIMIT,
                        help=f"seconds of training per tinc cell (default {DEFAULT_TIME_LIMIT:g})")
    parser.add_argument("--ratios", default=DEFAULT_RATIOS, help=f"target ratios (default {DEFAULT_RATIOS})")
    parser.add_argument("--inputs", help="a subset: 1-based indices, unique parts of names, or other inputs (comma-separated)")
    parser.add_argument("--codecs", default=DEFAULT_CODECS, help=f"codecs (default {DEFAULT_CODECS})")
    parser.add_argument("--out", default=None, help="folder for results.csv, results.md and the RD plots "
                        "(default benchmarks/scoreboard)")
    parser.add_argument("--doc", default=None, help="the results document (default benchmarks/SCOREBOARD.md)")
    parser.add_argument("--baseline", help="an earlier scoreboard's results.csv: flag small inputs whose tinc "
                        f"cell fell more than {REGRESSION_DB:g} dB")
    parser.add_argument("--resume", action="store_true", help="skip the cells already in OUT/results.csv")
    parser.add_argument("--dry-run", action="store_true", help="print the cells that would run, then exit")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    try:
        return run(args, argv)
    except ScoreboardError as error:
        _log(f"scoreboard: error: {error}")
        return 2


def run(args: argparse.Namespace, argv: list[str]) -> int:
    plan = _plan(args)
    if args.dry_run:
        _print_dry_run(plan)
        return 0
    if plan.csv_path.exists() and not args.resume:
        _log(f"scoreboard: starting over ({plan.csv_path} is replaced; --resume keeps its cells)")
        plan.rows = {}
    plan.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    _log(f"scoreboard: {len(plan.todo)} cells to run"
         + (f" ({plan.resumed} already in {plan.csv_path})" if plan.resumed else "")
         + (f"; about {_duration(len(plan.tinc_like) * plan.time_limit)} of tinc fits" if plan.tinc_like else ""))
    skipped = _run_cells(plan, start)
    if skipped is None:
        return 130
    _write_reports(plan, skipped, argv, start)
    return 0


@dataclass
class _Plan:
    """A run's settings, the cells an earlier run left (`rows`, with `--resume`) and those to run."""

    inputs: list[Input]
    ratios: list[float]
    codecs: list[str]
    time_limit: float
    out: Path
    doc: Path
    baseline_path: str | None
    baseline: list[dict] | None
    rows: dict[tuple[str, float, str], dict]
    todo: list[tuple[Input, float, str]]
    tinc_like: list[tuple[Input, float, str]]
    """The cells of `todo` whose codec takes the ratio itself (tinc): they take the time limit."""

    @property
    def csv_path(self) -> Path:
        return self.out / "results.csv"

    @property
    def resumed(self) -> int:
        """Cells taken from an earlier run (`--resume` only)."""
        return len(self.inputs) * len(self.ratios) * len(self.codecs) - len(self.todo)


def _plan(args: argparse.Namespace) -> _Plan:
    """The run the command line asks for; a bad command line is a ScoreboardError."""
    from tinc.bench import make_codec, parse_codecs, parse_ratios
    from tinc.errors import TincError

    try:
        ratios = parse_ratios(args.ratios)
        codecs = parse_codecs(args.codecs)
    except TincError as error:
        raise ScoreboardError(str(error)) from None
    if not args.time_limit > 0:
        raise ScoreboardError(f"--time-limit must be > 0, got {args.time_limit:g}")
    inputs = select_inputs(args.inputs)
    out = Path(args.out) if args.out else DEFAULT_OUT
    csv_path = out / "results.csv"
    baseline = None
    if args.baseline:
        try:
            baseline = read_rows(args.baseline)
        except (OSError, csv.Error, ValueError) as error:
            raise ScoreboardError(f"cannot read --baseline {args.baseline}: {error}") from None
    rows: dict[tuple[str, float, str], dict] = {}
    if csv_path.exists() and (args.resume or args.dry_run):
        try:
            rows = _cells(read_rows(csv_path))
        except (OSError, csv.Error, ValueError, KeyError) as error:
            raise ScoreboardError(f"cannot read {csv_path} to resume: {error}") from None

    def done(label: str, ratio: float, codec: str) -> bool:
        row = rows.get((label, ratio, codec))
        if row is None or not args.resume or row.get("status") == "unavailable":
            return False
        if make_codec(codec).direct and row.get("time_limit") != args.time_limit:
            return False  # a tinc cell of another time limit runs again
        return True

    todo = [(i, r, c) for i in inputs for r in ratios for c in codecs if not done(i.label, r, c)]
    return _Plan(inputs, ratios, codecs, args.time_limit, out, Path(args.doc) if args.doc else DEFAULT_DOC,
                 args.baseline, baseline, rows, todo, [cell for cell in todo if make_codec(cell[2]).direct])


def _print_dry_run(plan: _Plan) -> None:
    """`--dry-run`: the inputs (and whether they can be read), the cells to run and the time they take."""
    from tinc.io import resolve

    print("inputs:")
    for item in plan.inputs:
        try:
            resolve(item.path)
            state = ""
        except Exception as error:  # noqa: BLE001 - a missing package: said, not raised
            state = f"  [cannot be read: {_one_line(error)}]"
        index = next((n for n, (label, *_) in enumerate(CORPUS, 1) if label == item.label), None)
        print(f"  {index or '-'}  {item.label}{' (real-sized)' if item.real else ''}{state}")
    every = len(plan.inputs) * len(plan.ratios) * len(plan.codecs)
    print(f"cells to run: {len(plan.todo)} of {every} "
          f"({len(plan.inputs)} inputs x {len(plan.ratios)} ratios x {len(plan.codecs)} codecs"
          + (", the others are in the CSV (--resume)" if len(plan.todo) < every else "") + ")")
    for item, ratio, codec in plan.todo:
        print(f"  {item.label} {ratio:g}x {codec}")
    estimate = len(plan.tinc_like) * plan.time_limit
    print(f"estimate: about {_duration(estimate)} of tinc fits ({len(plan.tinc_like)} x {plan.time_limit:g} s), "
          "plus the other codecs' searches (seconds to a few minutes per input)")
    print(f"would write: {plan.csv_path}, {plan.out / 'results.md'}, {plan.out}/rd-*.png and {plan.doc}")


def _run_cells(plan: _Plan, start: float) -> dict[str, str] | None:
    """Run the cells to run, saving the CSV after each; returns the inputs skipped (unreadable)
    and why, or None when interrupted."""
    from tinc.bench import make_codec, read_input

    adapters = {c: make_codec(c, time_limit=plan.time_limit) for c in plan.codecs}
    commit = git_commit()
    pending = {(i.label, r, c) for i, r, c in plan.todo}
    total = len(plan.todo)
    skipped: dict[str, str] = {}
    finished = 0
    try:
        for item in plan.inputs:
            try:
                array, channel_axis = read_input(item.path)
            except Exception as error:  # noqa: BLE001 - a missing package or file skips one input
                why = _one_line(error)
                skipped[item.label] = why[len(item.label) + 2:] if why.startswith(f"{item.label}: ") else why
                total -= sum(1 for cell in pending if cell[0] == item.label)
                _log(f"scoreboard: skipping {item.label}: {skipped[item.label]}")
                continue
            item.info = f"{'x'.join(map(str, array.shape))} {array.dtype}, {array.nbytes:,} bytes"
            for ratio in plan.ratios:
                for codec in plan.codecs:
                    if (item.label, ratio, codec) not in pending:
                        continue
                    row = _run_cell(adapters[codec].for_input(channel_axis), array, item.label, ratio, plan.time_limit, commit)
                    plan.rows[key(row)] = row
                    write_rows(list(plan.rows.values()), plan.csv_path)
                    finished += 1
                    _log(f"[{finished}/{total}] {_short(item.label)} {ratio:g}x {codec}: {_progress(row)} "
                         f"({row['cell_s']:.1f} s; {_duration(time.perf_counter() - start)} elapsed)")
    except KeyboardInterrupt:
        _log(f"scoreboard: interrupted after {finished} cells; they are in {plan.csv_path}: rerun with --resume")
        return None
    return skipped


def _run_cell(adapter, array, label: str, ratio: float, time_limit: float, commit: str) -> dict:
    """One cell through `tinc.bench.run_one`, as a CSV row with its time, time limit and commit."""
    from tinc.bench import run_one

    t0 = time.perf_counter()
    row = run_one(adapter, array, float(ratio), label=label)
    row = {k: v for k, v in row.items() if k not in ("compressed", "reconstruction")}
    row["cell_s"] = time.perf_counter() - t0
    row["time_limit"] = time_limit if adapter.direct else None
    row["target_ratio"] = float(ratio)
    row["commit"] = commit
    return row


def _write_reports(plan: _Plan, skipped: dict[str, str], argv: list[str], start: float) -> None:
    """results.md, an RD plot per input and the document, over the cells of this run's selection."""
    from tinc.bench.report import plot_rd, write_markdown

    cells = ((i.label, r, c) for i in plan.inputs for r in plan.ratios for c in plan.codecs)
    selected = [plan.rows[cell] for cell in cells if cell in plan.rows]
    info = {i.label: i.info for i in plan.inputs if i.info}
    write_markdown(selected, str(plan.out / "results.md"), info)
    plots: dict[str, str] = {}
    taken: set[str] = set()
    for item in plan.inputs:
        mine = [r for r in selected if r["input"] == item.label]
        if item.label in skipped or not mine:
            continue
        target = plan.out / plot_name(item.label, taken)
        plot_rd(mine, str(target))
        plots[item.label] = str(target)
    meta = dict(
        command=_command(argv), date=datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        commit=git_commit(), machine=machine(), time_limit=plan.time_limit, csv=plan.csv_path,
        markdown=plan.out / "results.md", resumed=plan.resumed, elapsed=time.perf_counter() - start,
        baseline=plan.baseline_path,
    )
    losses = write_document(plan.doc, selected, plan.inputs, plan.ratios, plan.codecs, meta, plots, skipped, plan.baseline)
    missed = sum(loss.goal_missed for loss in losses)
    _log(f"scoreboard: wrote {plan.doc} ({_plural(len(losses), 'loss', 'losses')} listed, {_plural(missed, 'goal check')} missed), "
         f"{plan.csv_path}, {plan.out / 'results.md'} and {_plural(len(plots), 'RD plot')} in {_duration(time.perf_counter() - start)}")


def _command(argv: list[str]) -> str:
    """The command line that reruns this run, from the repository root or the working directory."""
    command = "python " + shlex.join([os.path.relpath(__file__, REPO_ROOT)] + argv)
    if Path.cwd().resolve() != REPO_ROOT:
        command = f"cd {shlex.quote(str(Path.cwd()))} && " + shlex.join(["python", str(Path(__file__).resolve())] + argv)
    return command


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


if __name__ == "__main__":
    sys.exit(main())
