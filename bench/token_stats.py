"""Temporal statistics of a tokenizer's tokens on the corpus eval clips.

    .venv/bin/python bench/token_stats.py [--model NAME] [--hysteresis H]

Tokens come from bench/entropy.py's cache (chunks of 17 frames, 5 latent
frames each), computed there if missing. Per clip it prints how often an LFQ
bit changes between consecutive latent frames, how often a change is undone
in the next latent frame (flicker), and the share of tokens left unchanged.
A temporally stable tokenizer has few changes on static content and few
changes undone.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus import clips  # noqa: E402
from entropy import clip_tokens  # noqa: E402

from tokcodec.codec import load_tokenizer  # noqa: E402
from tokcodec.codec.lfq import DEFAULT_HYSTERESIS  # noqa: E402


def stats(grids: list[np.ndarray], bits: int) -> dict[str, float]:
    full = np.stack([g for g in grids if g.shape == grids[0].shape])  # (N, T, H, W)
    b = ((full[..., None] >> np.arange(bits)) & 1).astype(bool)  # (N, T, H, W, K)
    change = b[:, 1:] != b[:, :-1]
    undone = change[:, 1:] & (b[:, 2:] == b[:, :-2])
    return {
        "bits changed per latent frame": change.mean(),
        "changes undone next frame": undone.sum() / max(change[:, :-1].sum(), 1),
        "tokens unchanged": (~change.any(-1)).mean(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--hysteresis", type=float, default=DEFAULT_HYSTERESIS,
                    help=f"the encoder's hysteresis threshold (default {DEFAULT_HYSTERESIS}, as tokcodec encode)")
    args = ap.parse_args(argv)
    bits = load_tokenizer(args.model).config.bits
    paths = clips("eval")
    if not paths:
        print("no corpus eval clips found: run ../shared/corpus/fetch.sh first", file=sys.stderr)
        return 2
    for path in paths:
        s = stats(clip_tokens(path, args.model, args.hysteresis), bits)
        print(f"{path.name:24} " + "  ".join(f"{k} {v:.3f}" for k, v in s.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
