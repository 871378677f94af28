"""Does imagecodecs' SZ3 decoder survive forged streams? (Why `--max-error` does not store SZ3.)

Mutates a valid SZ3 stream (truncations, byte edits, random bytes, header edits) and
decodes each; a Python exception is fine, a process abort is not. Run it in a shell that
reports the exit status:

    python benchmarks/sz3_forged.py --seed 1; echo "exit $?"   # 134 = aborted (SIGABRT)
"""

from __future__ import annotations

import argparse
import random

import imagecodecs
import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--inputs", type=int, default=3000)
    args = parser.parse_args()
    x = np.random.default_rng(0).laplace(0, 5, (16, 16, 16))
    good = bytes(imagecodecs.sz3_encode(x, mode="abs", abs=0.5))
    rng = random.Random(args.seed)
    raised = decoded = 0
    for i in range(args.inputs):
        data = bytearray(good)
        kind = rng.randrange(4)
        if kind == 0:
            data = data[:rng.randrange(len(data))]
        elif kind == 1:
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif kind == 2:
            data = bytearray(rng.randbytes(rng.randint(0, 200)))
        else:
            data[rng.randrange(min(64, len(data)))] = rng.randrange(256)
        print(f"input {i}: mutation {kind}", flush=True)
        try:
            imagecodecs.sz3_decode(bytes(data), shape=(16, 16, 16), dtype=np.float64)
            decoded += 1
        except Exception:
            raised += 1
    print(f"survived {args.inputs} inputs: {decoded} decoded, {raised} raised")


if __name__ == "__main__":
    main()
