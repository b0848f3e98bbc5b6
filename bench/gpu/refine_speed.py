"""Encoding speed of `tokcodec encode --refine N` with the tokenizer on a GPU (torch, CUDA).

    python bench/gpu/refine_speed.py [--sizes 640x360,1280x720] [--steps 0,5,20] [--frames 33] [--json OUT.json]

Times `streaming.refine.encode_refined` (what `encode --refine N` runs per chunk: N gradient steps per
decoder segment through the decoder's forward and backward) on one chunk of synthetic frames
(bench/speed.py's), default model, default level, hysteresis 0.2, after a warm-up run. On the CPU
dev VM refinement encodes about 45 times slower than plain encoding (bench/RESULTS.md); this
measures what a GPU makes of it. Runs from the checkout on the lent machines (see checkout.py);
on a machine without CUDA it runs on the CPU, to try the script out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from checkout import ROOT, import_checkout
from runtime import Device


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="640x360,1280x720")
    ap.add_argument("--steps", default="0,5,20")
    ap.add_argument("--frames", type=int, default=33)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    import_checkout(stub_av=True)
    sys.path.insert(0, str(ROOT / "bench"))
    import torch

    from speed import frames  # bench/speed.py
    from tokcodec.codec import load_tokenizer
    from tokcodec.streaming.refine import RefineConfig, encode_refined
    from tokcodec.streaming.stateful import to_float

    gpu = Device.setup()
    tok = load_tokenizer(None, device=gpu.device)
    bits = tok.level_bits(None)
    rows = []
    for size in args.sizes.split(","):
        w, h = map(int, size.split("x"))
        video = torch.from_numpy(to_float(frames(args.frames, h, w))).to(gpu.device)
        for steps in map(int, args.steps.split(",")):
            config = RefineConfig(steps=steps)
            encode_refined(tok, video, bits, 0.2, config)  # warm-up: cuDNN picks its algorithms
            gpu.sync()
            start = time.perf_counter()
            encode_refined(tok, video, bits, 0.2, config)
            gpu.sync()
            seconds = time.perf_counter() - start
            row = {"size": size, "frames": args.frames, "steps": steps, "encode_fps": round(args.frames / seconds, 2),
                   "peak_gib": gpu.take_peak_gib()}
            rows.append(row)
            print(json.dumps(row), flush=True)
    gpu.save_rows(args.json, rows)

if __name__ == "__main__":
    main()
