#!/usr/bin/env python3
"""Writes dequantization reference fixtures under Tests/CondenseModelTests/Fixtures/dequant/.

For every ggml type the Swift loader dequantizes, `<TYPE>.blocks` holds raw little-endian ggml data
and `<TYPE>.f32` the F32 values gguf-py's `gguf.quants.dequantize` (the Python twin of ggml's
reference `dequantize_row_*`) produces from it. Block-32 types and F16/BF16 are produced by
quantizing random data with `gguf.quants.quantize`; gguf-py has no quantizer for the K-quants, so
their blocks are random bytes with finite F16 super-block scales (every bit pattern of the packed
scales and quants is a valid block).

Requires: numpy, gguf (pip install gguf). Run from the package root.
"""
import os

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize, quantize

OUT = os.path.join("Tests", "CondenseModelTests", "Fixtures", "dequant")
SEED = 7
ROW = 512  # elements per row: two K-quant super-blocks, sixteen 32-element blocks


def random_rows(rng, rows):
    data = rng.standard_normal((rows, ROW)).astype(np.float32)
    data[0, :32] = 0.0                       # an all-zero block (scale 0)
    data[0, 32:64] = np.float32(-3.5)        # a constant negative block
    data[1] *= 40.0                          # large magnitudes
    return data


def random_k_blocks(rng, qtype, count):
    block_elements, block_bytes = GGML_QUANT_SIZES[qtype]
    blocks = rng.integers(0, 256, size=(count, block_bytes), dtype=np.uint8)
    scales = (rng.standard_normal((count, 2)) * 0.05).astype(np.float16).view(np.uint8)
    if qtype == T.Q6_K:
        blocks[:, block_bytes - 2:] = scales[:, :2]   # d is the last field
    else:
        blocks[:, 0:4] = scales                       # d and dmin lead the block
    return blocks


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(SEED)
    for qtype in [T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0]:
        raw = quantize(random_rows(rng, 3), qtype)
        write(qtype, raw.view(np.uint8).reshape(-1), dequantize(raw, qtype))
    for qtype in [T.Q4_K, T.Q5_K, T.Q6_K]:
        raw = random_k_blocks(rng, qtype, 6)
        write(qtype, raw.reshape(-1), dequantize(raw.reshape(3, -1), qtype))


def write(qtype, raw_bytes, expected):
    expected = np.ascontiguousarray(expected, dtype="<f4").reshape(-1)
    assert np.all(np.isfinite(expected)), qtype.name
    raw_bytes.astype(np.uint8).tofile(os.path.join(OUT, f"{qtype.name}.blocks"))
    expected.tofile(os.path.join(OUT, f"{qtype.name}.f32"))
    print(f"{qtype.name}: {raw_bytes.size} bytes -> {expected.size} floats")


if __name__ == "__main__":
    main()
