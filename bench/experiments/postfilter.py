"""Experiment: does a small CNN at the source resolution, after the decoder, recover what the
tokenizer loses? (A post-filter, as conventional codecs' in-loop filters do.)

Run: .venv/bin/python bench/experiments/postfilter.py --train CLIP,... --eval CLIP,... [--quality 4]
        [--width 32] [--depth 4] [--steps 2000] [--frames 33]

Each clip's first FRAMES frames (training clips downscaled to at most 384 pixels wide, as
`tokcodec train` reads them) are coded as one chunk at the ladder point QUALITY with the shipped
weights (hysteresis 0.2) and decoded back to the source size. A residual CNN (3x3 convolutions,
WIDTH channels, DEPTH hidden layers, per frame) is trained on random crops of the training pairs
to map decoded frames to the source (MSE on RGB), then applied to the eval clips: prints each
eval clip's RGB PSNR and PSNR-Y (bench/metrics, as bench/rd.py computes them) before and
after, and the filter's speed on this machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from chunk_coding import decode_to_source, encode_at_point, first_frames, psnr
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from metrics import psnr_y, rgb_to_y

from tokcodec.codec import load_tokenizer
from tokcodec.codec.clips import resize_frames

TRAIN_WIDTH = 384


class PostFilter(nn.Module):
    """x + f(x): WIDTH-channel 3x3 convolutions on one RGB frame in [0, 1]."""

    def __init__(self, width: int, depth: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, width, 3, padding=1), nn.ReLU()]
        for _ in range(depth):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
        layers.append(nn.Conv2d(width, 3, 3, padding=1))
        nn.init.zeros_(layers[-1].weight)  # starts as the identity
        nn.init.zeros_(layers[-1].bias)
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def coded_pair(tok, path: str, frames: int, quality: int, max_width: int | None) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """(decoded, source) uint8 frames (T, H, W, 3) of a clip's start coded at `quality`."""
    source, _ = first_frames(path, frames)
    T, H, W = source.shape[:3]
    if max_width and W > max_width:
        H, W = int(round(H * max_width / W / 2) * 2), max_width
        source = resize_frames(source, H, W)
    tokens, _, bits, coded = encode_at_point(tok, source, quality, 0.2)
    return decode_to_source(tok, tokens, bits, coded, H, W), source


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255


def filtered(model: PostFilter, frames: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out = torch.cat([model(to_tensor(frames[i:i + 4])) for i in range(0, len(frames), 4)])
    return (out.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", required=True)
    ap.add_argument("--eval", required=True)
    ap.add_argument("--quality", type=int, default=4)
    ap.add_argument("--frames", type=int, default=33)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args()
    torch.set_num_threads(2)
    tok = load_tokenizer(None).eval()

    t0 = time.time()
    train = [coded_pair(tok, p, args.frames, args.quality, TRAIN_WIDTH) for p in args.train.split(",")]
    train = [(d, s) for d, s in train if min(s.shape[1:3]) >= args.crop]
    evals = {p.rsplit("/", 1)[-1]: coded_pair(tok, p, args.frames, args.quality, None) for p in args.eval.split(",")}
    print(f"coded {len(train)} training and {len(evals)} eval clips in {time.time() - t0:.0f} s", flush=True)

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = PostFilter(args.width, args.depth)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps)
    t0 = time.time()
    for step in range(1, args.steps + 1):
        xs, ys = [], []
        for _ in range(args.batch):
            d, s = train[rng.integers(len(train))]
            t, y, x = rng.integers(len(d)), rng.integers(d.shape[1] - args.crop + 1), rng.integers(d.shape[2] - args.crop + 1)
            xs.append(d[t, y:y + args.crop, x:x + args.crop])
            ys.append(s[t, y:y + args.crop, x:x + args.crop])
        loss = nn.functional.mse_loss(model(to_tensor(np.stack(xs))), to_tensor(np.stack(ys)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 250 == 0:
            print(f"step {step}: train PSNR {-10 * np.log10(loss.item()):.2f} dB ({time.time() - t0:.0f} s)", flush=True)

    params = sum(p.numel() for p in model.parameters())
    print(f"filter: width {args.width}, depth {args.depth}, {params} parameters, quality {args.quality}")
    for name, (d, s) in evals.items():
        t0 = time.time()
        f = filtered(model, d)
        fps = len(d) / (time.time() - t0)
        print(f"{name}: RGB {psnr(d, s):.2f} -> {psnr(f, s):.2f} dB, Y {psnr_y(rgb_to_y(s), rgb_to_y(d)):.2f} -> "
              f"{psnr_y(rgb_to_y(s), rgb_to_y(f)):.2f} dB ({d.shape[2]}x{d.shape[1]}, filter {fps:.1f} fps)", flush=True)


if __name__ == "__main__":
    main()
