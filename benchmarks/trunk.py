"""Does a frozen, shared trunk pay in chunked compression? A probe before any format work.

A trunk is the top of one tree over the whole volume: fitted once on a few sample chunks,
then frozen and stored once, while every other chunk fits only its own nodes below it. This
script measures that design against what chunked compression does today (every chunk its
own tree, from random weights or from the samples' mean weights, `tinc.chunk_starts`), on
64^3 chunks of the ultrasound cine of `benchmarks/scale.py` at the parameters a chunk gets
at 64x (6328: a 48-wide root and 8 leaves 8 wide, as `tinc compress` plans such a chunk).

Every fit here is unquantized (float32 weights, no rate terms), so the comparison is of
parameters, not bytes: a trunk variant's chunk holds at most a chunk's parameters less its
share of the trunk (the trunk's parameters / the cine's 80 chunks). Each trunk is fitted
jointly on 4 sample chunks (the shared trunk and each sample's own nodes, batches 4x a
chunk's, `--joint` x a chunk's steps), then frozen; each of 8 other chunks then fits its own
nodes below it for `--steps`, starting from the mean of the samples' own nodes. Learned
starts use the same 4 samples, fitted on their own with 4x the steps (tinc's default when this
was measured; 2x since 43beaaf).

`--coarse 4:0.1,8:0.05` measures another trunk instead: the volume at a coarser scale. The
cine, averaged over S^3 blocks, is compressed by `tinc.compress` into SHARE of the store's
bytes at 64x, decoded at scale S back to full resolution, and each evaluated chunk codes only
its residual from it in the bytes left (1 - SHARE of its own); against each chunk coded on its
own at 64x. These fits are tinc's own (quantized, real bytes); the trunk's fit is timed apart.

`--deltas` asks whether the learned start could serve as a stored dictionary: if every chunk
coded its weights as differences from the start (stored once), how many bits would that
save? It fits the 4 samples (2x the steps) and the 8 chunks from their mean as `tinc
compress --chunks` does (without its halo), and prints, per chunk, log2(the spread of a tensor's weights / the spread of
their differences from the start), averaged over the parameters: the bits per parameter
that coding differences would save at the same steps, where steps are fine against the
spreads (an upper bound otherwise), against the bits per parameter the chunk's file spends.

    .venv/bin/python benchmarks/trunk.py
    .venv/bin/python benchmarks/trunk.py --coarse 2:0.2,4:0.1,4:0.25,8:0.05
    .venv/bin/python benchmarks/trunk.py --deltas
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

import tinc
from tinc import metrics
from tinc.config import TincConfig
from tinc.encoder import LearnedStart, encode
from tinc.model import TreeINR
from tinc.partition import TreeLayout
from tinc.training.loop import fit
from tinc.tree import TreePlan
from tinc.values import normalise

from scale import cine_volume  # the script's own folder is on the path when it runs

CHUNK, VOLUME_CHUNKS = 64, 80  # the cine's 64 x 480 x 640 in 64^3 chunks
SAMPLES = [(64, 256), (256, 384), (320, 192), (128, 384)]  # (row, column) of busy chunks, frame 0-63
EVALUATED = [(192, 256), (320, 320), (256, 256), (384, 320), (128, 256), (256, 320), (320, 256), (64, 320)]
CHUNK_LAYOUT = TreeLayout((CHUNK,) * 3, ((2, 2, 2),))
BASELINE = TreePlan(CHUNK_LAYOUT, (2, 2), (np.array([48]), np.full(8, 8)), 1)
# (trunk width, own nodes per chunk, their width): the trunk as the root of 8 leaves per
# chunk, or of one node per chunk covering all of it (a wide trunk leaves only that room)
VARIANTS = [(48, 8, 12), (128, 1, 36), (256, 1, 19)]
COARSE_STEPS = 2000
PEAK = 255.0  # the cine's uint8 range


def trunk_params(width: int) -> int:
    return BASELINE.node.params(width, 3, 2, 0)


def own_plan(trunk_width: int, nodes: int, width: int, chunks: int = 1) -> TreePlan:
    """One chunk's tree below the trunk (`chunks` > 1: the samples' joint tree, side by side along axis 0)."""
    splits = ((2 * chunks, 2, 2),) if nodes == 8 else ((chunks, 1, 1),)
    return TreePlan(TreeLayout((chunks * CHUNK, CHUNK, CHUNK), splits), (2, 2), (np.array([trunk_width]), np.full(nodes * chunks, width)), 1)


class Probe:
    def __init__(self, steps: int):
        self.volume = cine_volume()
        self.config = TincConfig(ratio=64, weight_bits=32, steps=steps)

    def chunk(self, corner: tuple[int, int]) -> np.ndarray:
        return self.volume[:, corner[0]:corner[0] + CHUNK, corner[1]:corner[1] + CHUNK]

    def data(self, array: np.ndarray) -> np.ndarray:
        return normalise(array.astype(np.float32), 0.0, 255.0, self.config.value_range)[..., None].astype(np.float32)

    def fit(self, plan: TreePlan, array: np.ndarray, config: TincConfig, flat=None, frozen: int = 0) -> tuple[TreeINR, float, float]:
        """(model, PSNR over the range, seconds): `flat` starts it, its first `frozen` weights stay."""
        torch.manual_seed(0)
        model = TreeINR(plan, w0=config.w0, generator=torch.Generator().manual_seed(0))
        if flat is not None:
            with torch.no_grad():
                model.flat.copy_(torch.as_tensor(flat))
        if frozen:
            keep = torch.ones_like(model.flat)
            keep[:frozen] = 0
            model.flat.register_hook(lambda gradient: gradient * keep)
        blocks = torch.as_tensor(plan.layout.to_blocks(self.data(array)))
        coords = torch.as_tensor(plan.layout.block_coordinates())
        started = time.perf_counter()
        fit(model, blocks, torch.ones(blocks.shape[:2]), coords, config)
        seconds = time.perf_counter() - started
        with torch.no_grad():
            mse = float(((model(coords) - blocks) ** 2).mean())
        span = self.config.value_range[1] - self.config.value_range[0]
        return model, 10 * math.log10(span * span / mse), seconds


def mean_psnr(psnrs: list[float]) -> float:
    """PSNR of the evaluated chunks together (their mean squared error)."""
    return -10 * math.log10(np.mean([10 ** (-p / 10) for p in psnrs]))


def coarse_trunks(probe: Probe, specs: str) -> None:
    """Each chunk on its own at 64x against a coarse trunk of the whole cine plus each chunk's residual."""
    volume, steps = probe.volume.astype(np.float32), probe.config.steps
    chunks = [probe.chunk(c) for c in EVALUATED]
    started = time.perf_counter()
    own = [metrics.psnr(c, tinc.decompress(tinc.compress(c, ratio=64, steps=steps)), PEAK) for c in chunks]
    print(f"{'each chunk on its own at 64x':<52}{mean_psnr(own):8.2f}{'':>39}{time.perf_counter() - started:10.1f}", flush=True)
    for spec in specs.split(","):
        scale, share = int(spec.split(":")[0]), float(spec.split(":")[1])
        shape = [n // scale for n in volume.shape]
        coarse = volume[:shape[0] * scale, :shape[1] * scale, :shape[2] * scale].reshape(
            shape[0], scale, shape[1], scale, shape[2], scale).mean(axis=(1, 3, 5)).astype(np.float32)
        started = time.perf_counter()
        stored = tinc.compress(coarse, ratio=coarse.nbytes / (share * volume.size / 64), steps=COARSE_STEPS)
        base = tinc.decompress(stored, scale=scale).astype(np.float32)
        trunk_seconds = time.perf_counter() - started
        started, psnrs = time.perf_counter(), []
        for corner, chunk in zip(EVALUATED, chunks):
            below = base[:, corner[0]:corner[0] + CHUNK, corner[1]:corner[1] + CHUNK]
            residual = chunk.astype(np.float32) - below
            coded = tinc.compress(residual, ratio=residual.nbytes / ((1 - share) * residual.size / 64), steps=steps)
            psnrs.append(metrics.psnr(chunk, below + tinc.decompress(coded), PEAK))
        name = f"coarse trunk 1/{scale} scale, {share:.0%} of the store"
        print(f"{name:<52}{mean_psnr(psnrs):8.2f}{len(stored):>12d} B{'':>12}{trunk_seconds:13.1f}{time.perf_counter() - started:10.1f}", flush=True)
        print(f"{'':<4}the trunk alone on these chunks: {mean_psnr([metrics.psnr(c, base[:, y:y + CHUNK, x:x + CHUNK], PEAK) for c, (y, x) in zip(chunks, EVALUATED)]):.2f} dB", flush=True)


def deltas(probe: Probe) -> None:
    """Bits per parameter saved by coding each chunk's weights as differences from the learned start."""
    config = TincConfig(ratio=64, steps=probe.config.steps, quiet=True)
    samples = [encode(probe.chunk(c), config.replace(steps=2 * config.steps))[1].fitted for c in SAMPLES]
    starts = LearnedStart.means(samples)
    print(f"{'chunk':<14}{'file bytes':>12}{'bits per parameter':>20}{'saved by differences':>22}")
    for corner in EVALUATED:
        data, report = encode(probe.chunk(corner), config.replace(starts=1), starts=starts)
        start = next(s.weights for s in starts if s.signature == report.fitted.signature)
        model = TreeINR(report.plan)
        weights = [p.detach().numpy() for p in model.split(torch.as_tensor(report.fitted.weights))]
        differences = [p.detach().numpy() for p in model.split(torch.as_tensor(report.fitted.weights - start))]
        params = sum(w.size for w in weights)
        saved = sum(w.size * math.log2(w.std() / d.std()) for w, d in zip(weights, differences) if w.std() > 0 and d.std() > 0)
        print(f"{str(corner):<14}{len(data):>12d}{8 * len(data) / params:>20.2f}{saved / params:>22.3f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="steps per chunk (default 300)")
    parser.add_argument("--joint", default="4,16", help="the trunk's joint fit: these multiples of --steps (default 4,16)")
    parser.add_argument("--coarse", help="coarse trunks instead, SCALE:SHARE,... (e.g. 4:0.1,8:0.05)")
    parser.add_argument("--deltas", action="store_true", help="the bits that coding weights as differences from the learned start would save")
    args = parser.parse_args()
    torch.set_num_threads(2)
    probe = Probe(args.steps)
    config, k = probe.config, len(SAMPLES)
    if args.deltas:
        print(f"{len(EVALUATED)} chunks of {CHUNK}^3 of the cine at 64x, {args.steps} steps each from the mean of {k} samples")
        deltas(probe)
        return
    if args.coarse:
        print(f"{len(EVALUATED)} chunks of {CHUNK}^3 of the cine, {args.steps} steps each; coarse trunks fitted for {COARSE_STEPS} steps")
        print(f"{'run':<52}{'PSNR':>8}{'trunk bytes':>14}{'':>12}{'trunk fit s':>13}{'chunks s':>10}")
        coarse_trunks(probe, args.coarse)
        return
    print(f"{len(EVALUATED)} chunks of {CHUNK}^3 of the cine, {args.steps} steps each, {BASELINE.params} parameters per chunk; "
          f"{k} samples; unquantized")
    print(f"{'run':<52}{'PSNR':>8}{'own params':>12}{'trunk params':>14}{'trunk fit s':>13}{'chunks s':>10}")

    def row(name: str, psnrs: list[float], own: int, trunk: int, trunk_seconds: float, seconds: float) -> None:
        print(f"{name:<52}{mean_psnr(psnrs):8.2f}{own:12d}{trunk:14d}{trunk_seconds:13.1f}{seconds:10.1f}", flush=True)

    runs = [probe.fit(BASELINE, probe.chunk(c), config) for c in EVALUATED]
    row("own trees, random starts", [r[1] for r in runs], BASELINE.params, 0, 0.0, sum(r[2] for r in runs))
    started = time.perf_counter()
    learned = np.mean([probe.fit(BASELINE, probe.chunk(c), config.replace(steps=4 * args.steps))[0].flat.detach().numpy()
                       for c in SAMPLES], axis=0)
    sample_seconds = time.perf_counter() - started
    runs = [probe.fit(BASELINE, probe.chunk(c), config.replace(starts=1), flat=learned) for c in EVALUATED]
    row("own trees, learned starts (today's default)", [r[1] for r in runs], BASELINE.params, 0, sample_seconds, sum(r[2] for r in runs))

    mosaic = np.concatenate([probe.chunk(c) for c in SAMPLES], axis=0)
    for trunk_width, nodes, width in VARIANTS:
        shared = trunk_params(trunk_width)
        plan = own_plan(trunk_width, nodes, width)
        own = plan.params - shared
        assert own + shared / VOLUME_CHUNKS <= BASELINE.params, (trunk_width, nodes, width)
        for multiple in (int(m) for m in args.joint.split(",")):
            if nodes == 1 and multiple != 4:
                continue  # the wide trunks' joint fits are the slow ones: one length shows their fate
            joint, joint_psnr, joint_seconds = probe.fit(own_plan(trunk_width, nodes, width, k), mosaic,
                                                         config.replace(steps=multiple * args.steps, batch=config.batch * k))
            pieces = [p.detach().numpy() for p in joint.split(joint.flat)]
            below = [p.reshape(k, nodes, *p.shape[1:]).mean(axis=0) for p in pieces[4:]]  # the samples' own nodes, averaged
            start = np.concatenate([p.ravel() for p in pieces[:4] + below]).astype(np.float32)
            runs = [probe.fit(plan, probe.chunk(c), config.replace(starts=1), flat=start, frozen=shared) for c in EVALUATED]
            name = f"trunk {trunk_width} wide, {nodes} x {width} own, joint {multiple}x steps"
            row(name, [r[1] for r in runs], own, shared, joint_seconds, sum(r[2] for r in runs))
            print(f"{'':<4}its joint fit on the {k} samples: {joint_psnr:.2f} dB", flush=True)


if __name__ == "__main__":
    main()
