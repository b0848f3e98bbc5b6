"""Experiment: the refinement's SSIM weight against PSNR-Y, MS-SSIM, VMAF and bits.

Run: .venv/bin/python bench/experiments/refine_metrics.py CLIP FRAMES BITS STEPS RATE SSIM[,SSIM...]
Encodes the first FRAMES frames of CLIP as one chunk with `streaming.refine.encode_refined` (default
model, hysteresis 0.2, one thread) for each SSIM weight, decodes the tokens and prints PSNR-Y, MS-SSIM
and VMAF (bench/metrics.py; Y' of the RGB source and output, bt601 limited range: not rd.py's
reference, so compare within a run), the bpp of the entropy-coded tokens and the encoding time.
Result in bench/RESULTS.md ("Rate-distortion with refinement")."""
import sys
import time
from pathlib import Path

import torch
from chunk_coding import decoded_and_bpp, first_frames

from tokcodec.codec import load_tokenizer
from tokcodec.streaming.refine import RefineConfig, encode_refined

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import metrics  # noqa: E402

path, n, bits, steps, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
torch.set_num_threads(1)
tok = load_tokenizer(None).eval()
frames, video = first_frames(path, n)
T, H, W = video.shape[-3:]
vmaf = metrics.Vmaf()
ref_y = metrics.rgb_to_y(frames)
for w in map(float, sys.argv[6].split(",")):
    t0 = time.time()
    tokens = encode_refined(tok, video, bits, 0.2, RefineConfig(steps=steps, rate=rate, ssim=w), (T, H, W))
    sec = time.time() - t0
    out, bpp = decoded_and_bpp(tok, tokens, bits, (T, H, W))
    y = metrics.rgb_to_y(out)
    print(f"ssim {w}: PSNR-Y {metrics.psnr_y(ref_y, y):.3f} MS-SSIM {metrics.ms_ssim(ref_y, y):.4f} "
          f"VMAF {vmaf(ref_y, y):.2f} {bpp:.4f} bpp {sec:.0f} s", flush=True)
