"""Experiment: a training run's EMA weights at each level, on the first 33 frames of eval clips.

Run: .venv/bin/python bench/experiments/run_levels.py RUN CLIP[,CLIP...] BITS[,BITS...] [THREADS] [SCALES]
Prints the run's step, then per clip, coding scale (default 1; others resample the frames as
`encode --scale` does and the decoded ones back) and number of bits the RGB PSNR of the decoded
tokens (hysteresis 0.2) and the bpp (per source pixel) of the tokens entropy-coded with the
model's shipped prior, or with the adaptive model alone when the run's model has none yet
(a few % more bits).
"""

import json
import sys
import time
from pathlib import Path

import torch
from chunk_coding import decoded_and_bpp, first_frames, psnr

from tokcodec.codec import Tokenizer
from tokcodec.codec.clips import coded_size, frames_to_video, resize_frames
from tokcodec.codec.train import TrainConfig

torch.set_num_threads(int(sys.argv[4]) if len(sys.argv) > 4 else 1)
scales = [float(x) for x in sys.argv[5].split(",")] if len(sys.argv) > 5 else [1.0]
run = Path(sys.argv[1])
cfg = TrainConfig.from_dict(json.loads((run / "config.json").read_text()))
state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
tok = Tokenizer(cfg.model).eval()
tok.load_state_dict(state["ema"])
print("step", state.get("step"))
for path in sys.argv[2].split(","):
    frames, video = first_frames(path, 33)
    T, H, W = frames.shape[:3]
    for s in scales:
        cw, ch = coded_size(W, H, s)
        coded = video if (cw, ch) == (W, H) else frames_to_video(resize_frames(frames, ch, cw))
        for b in [int(x) for x in sys.argv[3].split(",")]:
            t0 = time.time()
            tokens = tok.encode(coded, bits=b, hysteresis=0.2)
            out, bpp = decoded_and_bpp(tok, tokens, b, tuple(coded.shape[-3:]))
            if (cw, ch) != (W, H):
                out = resize_frames(out, H, W)
            bpp *= cw * ch / (W * H)
            print(f"{Path(path).name} scale {s:g} bits {b}: {psnr(out, frames):.2f} dB, {bpp:.4f} bpp "
                  f"({time.time() - t0:.0f}s)", flush=True)
