"""The PSNR of predicting every leaf block's mean: where a fit that never trained stays.

    python benchmarks/leaf_means.py nibabel:example4d.nii.gz --depth 3
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from tinc.io import read_with_metadata
from tinc.partition import TreeLayout, choose_splits
from tinc.training import leaf_mean_loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input")
    parser.add_argument("--depth", type=int, required=True)
    args = parser.parse_args()
    array, _ = read_with_metadata(args.input)
    data = np.squeeze(array).astype(np.float64)  # a length-1 axis is not partitioned
    layout = TreeLayout(data.shape, choose_splits(data.shape, args.depth))
    blocks = torch.as_tensor(layout.to_blocks(data[..., None]))
    valid = torch.as_tensor(layout.valid_mask(), dtype=torch.float64)
    mse, span = leaf_mean_loss(blocks, valid), float(data.max() - data.min())
    print(f"{args.input}: {layout.leaves} leaves at depth {layout.depth}; "
          f"their means give {10 * np.log10(span * span / mse):.2f} dB PSNR over the data range")


if __name__ == "__main__":
    main()
