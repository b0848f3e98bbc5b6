"""Experiment: can a chunk's hysteresis threshold be chosen without decoding every candidate?

Run: .venv/bin/python bench/experiments/hysteresis_proxy.py --out ROWS.jsonl [--quality 2,4,6]
         [--width W] [--thresholds 0,0.1,...] CLIP:FRAMES...
Cuts the first FRAMES frames of each CLIP (resized to W pixels wide when --width is given) into 33-frame
chunks and, per chunk and ladder point of the default model, quantises the one encoder latent with each
threshold of `HysteresisSearch` (bfloat16 networks, as `encode` runs on this CPU). Per threshold it writes
one JSON row: the entropy-coded bytes (`TokWriter.payload_size`), the decoded chunk's squared error at the
coded size over all frames and over the first 17 (the causal decoder gives those from half the work), and
what the latent alone says: the squared distance of the kept channels' latents to the +-1 codes they are
sent as, and how many kept bits differ from sign(z). `hysteresis_policies.py` reads the rows.
"""

import argparse
import json
import math
import sys
from pathlib import Path

import torch
from chunk_coding import first_frames

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tokcodec.bitstream.entropy import EntropyParams, encode_tokens
from tokcodec.codec import load_tokenizer
from tokcodec.codec.clips import coded_size, frames_to_video, resize_frames
from tokcodec.codec.lfq import hysteresis_signs
from tokcodec.codec.precision import network_precision
from tokcodec.ladder import model_ladder
from tokcodec.priors import model_prior
from tokcodec.streaming.rate_control import HysteresisSearch
from tokcodec.streaming.stateful import decode_chunk, encode_latent, latent_tokens

CHUNK, HALF = 33, 17

ap = argparse.ArgumentParser()
ap.add_argument("clips", nargs="+")
ap.add_argument("--out", required=True)
ap.add_argument("--quality", default="2,4,6")
ap.add_argument("--width", type=int, default=0)
ap.add_argument("--thresholds", help="comma-separated (default: HysteresisSearch's)")
args = ap.parse_args()
torch.set_num_threads(2)
tokenizer = load_tokenizer(None).eval()
ladder = model_ladder(tokenizer.config)
thresholds = ([float(h) for h in args.thresholds.split(",")] if args.thresholds
              else HysteresisSearch().thresholds)
with open(args.out, "a") as out:
    for spec in args.clips:
        path, n = spec.rsplit(":", 1)
        frames, _ = first_frames(path, int(n))
        if args.width:
            h = 2 * round(frames.shape[1] * args.width / frames.shape[2] / 2)
            frames = resize_frames(frames, h, args.width)
        T, H, W = frames.shape[:3]
        for c in range(0, T - CHUNK + 1, CHUNK):
            for q in (int(q) for q in args.quality.split(",")):
                point = ladder.for_frame(q, W, H)
                bits = tokenizer.config.lfq.level_bits[point.level]
                cw, ch = coded_size(W, H, point.scale)
                prior = model_prior(tokenizer, bits)
                video = frames_to_video(resize_frames(frames[c : c + CHUNK], ch, cw))
                with torch.no_grad(), network_precision("bf16"):
                    z = encode_latent(tokenizer, video)
                    kept = z[:, :bits].float()
                    for h in thresholds:
                        tokens = latent_tokens(z, bits, h)
                        grid = tokens[0].numpy()
                        params = EntropyParams.for_encoding(prior, grid.shape[1] * grid.shape[2])
                        nbytes = len(encode_tokens(grid, bits, params, prior))
                        err = (decode_chunk(tokenizer, tokens, (CHUNK, ch, cw), bits) - video).square_()
                        codes = hysteresis_signs(z[:, :bits], h).float() * 2 - 1
                        row = dict(clip=Path(path).name, width=W, chunk=c // CHUNK, quality=q, h=h, bytes=nbytes,
                                   pixels=CHUNK * ch * cw, mse=float(err.mean()), mse17=float(err[:, :, :HALF].mean()),
                                   latent_sq=float((codes - kept).square().sum()),
                                   flips=int(((codes > 0) != (kept > 0)).sum()),
                                   flip_abs=float(((codes > 0) != (kept > 0)).float().mul(kept.abs()).sum()),
                                   latents=kept.numel())
                        print(json.dumps(row), file=out, flush=True)
                        print(f"{row['clip']} c{c // CHUNK} q{q} H{h:g}: {nbytes} B "
                              f"{10 * math.log10(4 / row['mse']):.2f} dB", flush=True)
