"""Experiment: does a finer token grid beat more bits per token? The shipped model run on an upscaled clip.

Run: .venv/bin/python bench/experiments/upscaled_coding.py CLIP FRAMES SCALES BITS [REFINE_STEPS]
e.g. ... carphone_pristine.mp4 33 1,1.5,2 6,12,18,30
Upscales the first FRAMES frames of CLIP by each scale (bicubic, antialiased), codes them with the
default model at each number of bits (hysteresis 0.2; with REFINE_STEPS, refined as
`tokcodec encode --refine` does, on the upscaled frames), decodes, scales back to the source size and
prints the RGB PSNR against the source and the bpp of the entropy-coded tokens per *source* pixel.
Result in bench/RESULTS.md ("Where the quality is lost: the patch-4 stem").
"""

import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from chunk_coding import decoded_and_bpp, first_frames, psnr

from tokcodec.codec import load_tokenizer
from tokcodec.streaming.refine import RefineConfig, encode_refined

torch.set_num_threads(2)
path, n = sys.argv[1], int(sys.argv[2])
scales = [float(s) for s in sys.argv[3].split(",")]
refine = RefineConfig(steps=int(sys.argv[5]) if len(sys.argv) > 5 else 0)
tok = load_tokenizer(None).eval()
frames, video = first_frames(path, n)
T, H, W = video.shape[-3:]
for s in scales:
    h, w = int(round(H * s / 2) * 2), int(round(W * s / 2) * 2)
    v = video[0].permute(1, 0, 2, 3)  # T,3,H,W
    up = F.interpolate(v, size=(h, w), mode="bicubic", antialias=True, align_corners=False).clamp(-1, 1) if s != 1 else v
    up = up.permute(1, 0, 2, 3)[None]
    for bits in [int(b) for b in sys.argv[4].split(",")]:
        t0 = time.time()
        tokens = encode_refined(tok, up, bits, 0.2, refine) if refine.steps else tok.encode(up, bits=bits, hysteresis=0.2)
        out, bpp = decoded_and_bpp(tok, tokens, bits, (T, h, w))
        o = torch.from_numpy(out).permute(0, 3, 1, 2).float()
        if s != 1:
            o = F.interpolate(o, size=(H, W), mode="bicubic", antialias=True, align_corners=False)
        o = o.round().clamp(0, 255).numpy().transpose(0, 2, 3, 1).astype(np.uint8)
        print(f"scale {s} ({w}x{h}) bits {bits}: {psnr(o, frames):.2f} dB, {bpp * h * w / (H * W):.4f} bpp, "
              f"{time.time()-t0:.0f}s", flush=True)
