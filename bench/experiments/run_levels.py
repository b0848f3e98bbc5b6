"""Experiment: a training run's EMA weights at each level, on the first 33 frames of eval clips.

Run: .venv/bin/python bench/experiments/run_levels.py RUN CLIP[,CLIP...] BITS[,BITS...] [THREADS]
Prints the run's step, then per clip and number of bits the RGB PSNR of the decoded tokens
(hysteresis 0.2) and the bpp of the tokens entropy-coded with the model's shipped prior, or
with the adaptive model alone when the run's model has none yet (a few % more bits).
"""

import json
import sys
import time
from pathlib import Path

import torch
from chunk_coding import decoded_and_bpp, first_frames, psnr

from tokcodec.codec import Tokenizer
from tokcodec.codec.train import TrainConfig

torch.set_num_threads(int(sys.argv[4]) if len(sys.argv) > 4 else 1)
run = Path(sys.argv[1])
cfg = TrainConfig.from_dict(json.loads((run / "config.json").read_text()))
state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
tok = Tokenizer(cfg.model).eval()
tok.load_state_dict(state["ema"])
print("step", state.get("step"))
for path in sys.argv[2].split(","):
    frames, video = first_frames(path, 33)
    for b in [int(x) for x in sys.argv[3].split(",")]:
        t0 = time.time()
        tokens = tok.encode(video, bits=b, hysteresis=0.2)
        out, bpp = decoded_and_bpp(tok, tokens, b, tuple(video.shape[-3:]))
        print(f"{Path(path).name} bits {b}: {psnr(out, frames):.2f} dB, {bpp:.4f} bpp ({time.time() - t0:.0f}s)",
              flush=True)
