"""Encode and decode speed of the shipped models on a GPU with torch (CUDA).

    python bench/gpu/speed.py [--sizes 1280x720,1920x1080] [--repeat 3] [--json OUT.json]

The same measurement as bench/speed.py's torch rows (the stateful streaming
pipeline on one 17-frame chunk of synthetic frames, best of --repeat, and
`Tokenizer.encode`/`decode` of the whole chunk at once), with the tokenizer
on the GPU: frames cross to it and back at every step, as in a server.
Runs from the checkout on the lent machines (see checkout.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from checkout import ROOT, import_checkout
from runtime import Device


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1280x720,1920x1080")
    ap.add_argument("--models", default="magvit2-4x16x16-k18-stream,magvit2-4x8x8-k30")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    import_checkout(stub_av=True)
    sys.path.insert(0, str(ROOT / "bench"))
    import torch

    from speed import best, frames, pipeline_fps  # bench/speed.py
    from tokcodec.codec import load_tokenizer
    from tokcodec.streaming.stateful import TorchEngine, to_float

    gpu = Device.setup()
    rows = []
    for name in args.models.split(","):
        tok = load_tokenizer(name, device=gpu.device)
        engine = TorchEngine(tok)
        for size in args.sizes.split(","):
            w, h = map(int, size.split("x"))
            clip = frames(17, h, w)
            pipeline_fps(engine, clip, 1)  # warm-up: cuDNN picks its algorithms
            enc, dec = pipeline_fps(engine, clip, args.repeat)
            video = torch.from_numpy(to_float(clip)).to(gpu.device)

            def offline() -> None:
                tok.decode(tok.encode(video))
                gpu.sync()

            offline()
            t = best(offline, args.repeat)
            row = {"model": name, "size": size, "stream_encode_fps": round(enc, 1), "stream_decode_fps": round(dec, 1),
                   "offline_roundtrip_fps": round(17 / t, 1),
                   "peak_gib": gpu.take_peak_gib()}
            rows.append(row)
            print(json.dumps(row), flush=True)
        del engine, tok
        if gpu.cuda:
            torch.cuda.empty_cache()
    gpu.save_rows(args.json, rows)


if __name__ == "__main__":
    main()
