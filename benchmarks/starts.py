"""How far apart fits from different initial weights end, and whether their early loss ranks them.

    python benchmarks/starts.py ../shared/data/tinc_test.tif --ratio 512 --steps 3000 --seeds 7
    python benchmarks/starts.py skimage:cell --ratio 256 --steps 3000 --seeds 5 --marks 150,300

Fits the input once per seed with one start (`--starts 1`, so each seed is one set of initial
weights and one sample order) and prints, per seed, the final PSNR (dtype peak) and the
training loss at the marked steps as a PSNR over the data range (as the progress bar shows it). The defaults try
several starts and keep the one whose loss is lowest after their first steps
(`tinc.training.starts.START_STEPS`); this shows whether that choice is the right one.
"""

from __future__ import annotations

import argparse

import tinc
import tinc.encoder
from tinc.encoder import fit_psnr
from tinc.config import TincConfig
from tinc.metrics import psnr


class _LossAtMarks:
    """Stands in for the progress bar: keeps the loss reported at the marked steps."""

    def __init__(self, marks: list[int]):
        self.marks, self.seen = marks, {}

    def update_fit(self, step: int, loss: float, phase: str | None = None) -> None:
        if step in self.marks:
            self.seen[step] = loss

    def close(self) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input")
    parser.add_argument("--ratio", type=float, default=512)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--marks", default="150,300,600", help="steps whose training loss is shown (multiples of 25)")
    args = parser.parse_args()
    marks = [int(m) for m in args.marks.split(",")]
    array = tinc.read(args.input)
    print(f"\n{args.input}, ratio {args.ratio:g}, {args.steps} steps, one start per seed\n")
    print("| seed | PSNR (dB) | " + " | ".join(f"fit PSNR at step {m} (dB)" for m in marks) + " |")
    print("|---:|---:|" + "---:|" * len(marks))
    for seed in range(args.seeds):
        progress = _LossAtMarks(marks)
        tinc.encoder.FitProgress = lambda config: progress  # noqa: B023 (called within this iteration)
        data = tinc.compress(array, ratio=args.ratio, steps=args.steps, seed=seed, starts=1)
        fit = [fit_psnr(progress.seen[m], TincConfig()) if m in progress.seen else float("nan") for m in marks]
        print(f"| {seed} | {psnr(array, tinc.decompress(data)):.2f} | " + " | ".join(f"{f:.2f}" for f in fit) + " |", flush=True)


if __name__ == "__main__":
    main()
