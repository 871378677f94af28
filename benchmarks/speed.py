"""Training and decoding speed against the machine's own limits and a per-node loop.

    python benchmarks/speed.py [--quick]

First measures this machine's fp32 matmul rate and sine rate. For 3D trees of depth 1-3
and widths 16-128 it then times (a) a training step of tinc's batched tree, (b) the same
tree written the straightforward way (one small network per node, a Python loop over
nodes, as the authors' code does), and (c) a full decode. The roofline time of a step
is its matmul FLOPs at the matmul rate plus its sine/cosine evaluations at the sine
rate, backward counted as twice the forward matmuls. The loop's own roofline fraction bounds
any speedup over it: a tree at the roofline is 1 / (loop fraction) times faster. The last line is
`train_speedup=X train_roofline_fraction=Y decode_roofline_fraction=Z`
(speedup at depth 3, fractions at width 64, depth 2).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from torch import nn

from tinc import coding, container
from tinc.allocation import TreePlan
from tinc.config import TincConfig
from tinc.model import TreeINR
from tinc.partition import TreeLayout, choose_splits

SHAPE = (128, 128, 128)
LAYERS = 2
SAMPLES_PER_STEP = TincConfig().batch  # voxels per training step, as tinc's default


def best_time(function, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def machine_rates() -> tuple[float, float]:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    matmul = 2 * 2048**3 / best_time(lambda: a @ b, 5)
    # activation-sized: a level's activations at the default batch (65536 x 32 floats); a far
    # larger probe measures memory bandwidth instead and makes every fraction look too good
    x = torch.randn(1 << 21)
    sine = x.numel() / best_time(lambda: torch.sin(x), 20)
    return matmul, sine


def uniform_plan(depth: int, width: int, shape: tuple[int, ...] = SHAPE) -> TreePlan:
    layout = TreeLayout(shape, choose_splits(shape, depth))
    widths = tuple(np.full(n, width) for n in layout.nodes_per_level)
    return TreePlan(layout, (LAYERS,) * (depth + 1), widths, 1)


def sine_count(plan: TreePlan) -> int:
    """Sine evaluations per local coordinate through the whole tree."""
    return sum(int(w.sum()) * n for w, n in zip(plan.widths, plan.layers))


class PerNodeLoop(nn.Module):
    """The same tree, one nn.Sequential per node, evaluated node by node from Python."""

    def __init__(self, plan: TreePlan, w0: float = 30.0):
        super().__init__()
        self.plan, self.w0 = plan, w0
        self.levels = nn.ModuleList()
        for level, widths in enumerate(plan.widths):
            fan_in = plan.fan_in(level)
            nodes = nn.ModuleList()
            for node in range(len(widths)):
                layers = [nn.Linear(int(fan_in[node]) if i == 0 else int(widths[node]), int(widths[node])) for i in range(plan.layers[level])]
                nodes.append(nn.ModuleList(layers))
            self.levels.append(nodes)
        self.heads = nn.ModuleList(nn.Linear(int(w), plan.channels) for w in plan.widths[-1])

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        outputs = [coords]
        for level, nodes in enumerate(self.levels):
            children = self.plan.layout.children[level - 1] if level else 1
            next_outputs = []
            for index, layers in enumerate(nodes):
                h = outputs[index // children]
                for layer in layers:
                    h = torch.sin(self.w0 * layer(h))
                next_outputs.append(h)
            outputs = next_outputs
        return torch.stack([head(h) for head, h in zip(self.heads, outputs)])


def train_step_time(model: nn.Module, samples: int, leaves: int, repeats: int) -> float:
    coords = torch.rand(samples, 3) * 2 - 1
    target = torch.rand(leaves, samples, 1)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        loss = (model(coords) - target).square().mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    return best_time(step, repeats)


def synthetic_file(shape: tuple[int, ...], depth: int, width: int) -> bytes:
    """A valid .tinc file of a randomly initialised tree: decoding cost does not depend on the fit."""
    plan = uniform_plan(depth, width, shape)
    model = TreeINR(plan)
    tensors = [values[mask] for _, values, mask in model.tensors()]
    header = {"shape": list(shape), "dtype": "<u2", "channel_axis": None, "range": [0.0, 65535.0],
              "value_range": [-1.0, 1.0], "w0": 30.0, "splits": [list(s) for s in plan.layout.splits],
              "layers": list(plan.layers), "widths": [width] * (depth + 1)}
    return container.pack(header, coding.encode(tensors, -8.0))


def region_decode(repeats: int) -> None:
    """Time of a region against a full decode: it should follow the leaves touched, not the volume."""
    from tinc.decoder import Decoder

    decoder = Decoder(synthetic_file((256, 256, 256), 3, 32))
    full = best_time(lambda: decoder.decode(), repeats)
    print("| region | leaves evaluated | seconds | fraction of full decode time |")
    print("|---|---:|---:|---:|")
    print(f"| full 256^3 | {decoder.plan.layout.leaves} | {full:.3f} | 1.000 |")
    for roi in ("0:32,0:32,0:32", "16:48,16:48,16:48", "0:128,0:128,0:128"):
        seconds = best_time(lambda: decoder.decode(roi=roi), repeats)
        print(f"| {roi} | {decoder.leaves_evaluated} | {seconds:.3f} | {seconds / full:.3f} |")


STREAM_CHILD = """
import sys, time
from tinc.decode import write_decoded
from tinc.decoder import Decoder
from tinc.metrics import peak_memory
def peak_mib():
    return peak_memory() / 2**20
with open(sys.argv[1], "rb") as handle:
    decoder = Decoder(handle.read())
before = peak_mib()
start = time.perf_counter()
write_decoded(sys.argv[2], decoder)
seconds = time.perf_counter() - start
print(seconds, before, peak_mib())
"""


def streaming_decode() -> None:
    """Peak memory of a 512^3 decode streamed into a memory-mapped .npy, in a fresh process
    that only reads the file and decodes it."""
    with tempfile.TemporaryDirectory() as directory:
        source = os.path.join(directory, "volume.tinc")
        with open(source, "wb") as handle:
            handle.write(synthetic_file((512, 512, 512), 3, 32))
        result = subprocess.run([sys.executable, "-c", STREAM_CHILD, source, os.path.join(directory, "out.npy")],
                                capture_output=True, text=True, check=True)
    seconds, before_mib, peak_mib = (float(x) for x in result.stdout.split())
    float_mib = 512**3 * 4 / 2**20
    print(f"512^3 uint16 decode streamed to .npy: {seconds:.1f} s, peak RSS {peak_mib:.0f} MiB, {peak_mib - before_mib:.0f} MiB "
          f"above the process before decoding (torch and the model: {before_mib:.0f} MiB; the float32 volume alone would be {float_mib:.0f} MiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer trees and repeats")
    args = parser.parse_args()
    torch.manual_seed(0)
    matmul_rate, sine_rate = machine_rates()
    print(f"machine: {torch.get_num_threads()} threads, fp32 matmul {matmul_rate / 1e9:.1f} GFLOP/s, sine {sine_rate / 1e9:.2f} G/s\n")
    widths = (16, 64) if args.quick else (16, 32, 64, 128)
    repeats = 2 if args.quick else 3
    print("| depth | width | nodes | params | tinc train (samples/s) | loop train (samples/s) | speedup | train roofline | loop roofline | decode (voxels/s) | decode roofline |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    results = {}
    for depth in (1, 2, 3):
        for width in widths:
            plan = uniform_plan(depth, width)
            leaves = plan.layout.leaves
            samples = max(1, SAMPLES_PER_STEP // leaves)  # local coordinates per step
            model = TreeINR(plan)
            tinc_step = train_step_time(model, samples, leaves, repeats)
            loop_step = train_step_time(PerNodeLoop(plan), samples, leaves, 1) if (depth == 3 or not args.quick) else float("nan")
            roofline_step = 6 * samples * plan.params / matmul_rate + 2 * samples * sine_count(plan) / sine_rate
            coords = torch.as_tensor(plan.layout.block_coordinates())
            decode = best_time(lambda: model.render(coords), repeats)
            roofline_decode = 2 * coords.shape[0] * plan.params / matmul_rate + coords.shape[0] * sine_count(plan) / sine_rate
            row = {
                "train": samples * leaves / tinc_step,
                "loop": samples * leaves / loop_step,
                "speedup": loop_step / tinc_step,
                "train_fraction": roofline_step / tinc_step,
                "loop_fraction": roofline_step / loop_step,
                "decode": np.prod(SHAPE) / decode,
                "decode_fraction": roofline_decode / decode,
            }
            results[depth, width] = row
            print(f"| {depth} | {width} | {sum(plan.layout.nodes_per_level)} | {plan.params} | {row['train']:.3g} | {row['loop']:.3g} | "
                  f"{row['speedup']:.1f} | {row['train_fraction']:.2f} | {row['loop_fraction']:.2f} | {row['decode']:.3g} | {row['decode_fraction']:.2f} |", flush=True)
    print()
    region_decode(repeats)
    print()
    streaming_decode()
    at_64 = results[2, 64]
    print(f"\ntrain_speedup={results[3, 64]['speedup']:.1f} train_roofline_fraction={at_64['train_fraction']:.2f} "
          f"decode_roofline_fraction={at_64['decode_fraction']:.2f}")


if __name__ == "__main__":
    main()
