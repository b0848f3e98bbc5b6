"""Experiment: would a 6-bit entropy prior fitted on tokens at the ladder's default point code them in fewer bits?

Run: .venv/bin/python bench/experiments/prior_at_scale.py [CHUNKS_PER_VIDEO]

The shipped priors were fitted on tokens of the train videos coded at 1x (`tokcodec fit-prior`);
since the rate ladder, `encode` codes 6-bit tokens at 2x by default, whose statistics differ
(smoother latents: fewer bits per token). This fits a 6-bit prior on the first CHUNKS_PER_VIDEO
(default 1) 33-frame chunks of each train video coded at the default point (`Ladder.for_frame`),
then entropy-codes the default point's tokens of the first 33 frames of each eval clip with the
shipped prior and with the new one, and prints the bytes of each.
"""

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from corpus import clips  # noqa: E402

from tokcodec import DEFAULT_CHUNK_FRAMES  # noqa: E402
from tokcodec.bitstream.entropy import EntropyParams, encode_tokens, fit_prior  # noqa: E402
from tokcodec.codec import load_tokenizer  # noqa: E402
from tokcodec.codec.clips import coded_size, frames_to_video, resize_frames  # noqa: E402
from tokcodec.codec.io import probe, read_clips  # noqa: E402
from tokcodec.codec.lfq import DEFAULT_HYSTERESIS  # noqa: E402
from tokcodec.ladder import model_ladder  # noqa: E402
from tokcodec.priors import PRIOR_WEIGHT, model_prior  # noqa: E402
from tokcodec.streaming.stateful import encode_chunk  # noqa: E402

torch.set_num_threads(2)
chunks_per_video = int(sys.argv[1]) if len(sys.argv) > 1 else 1
tok = load_tokenizer(None)
ladder = model_ladder(tok.config)


def default_point_tokens(path: Path, max_chunks: int) -> list:
    """6-bit token grids of the first chunks of a video, coded as `encode` does at the default point."""
    info = probe(path)
    point = ladder.for_frame(None, info.width, info.height)
    w, h = coded_size(info.width, info.height, point.scale)
    bits = tok.config.lfq.level_bits[point.level]
    out = []
    for i, clip in enumerate(read_clips(path, DEFAULT_CHUNK_FRAMES, tok.temporal_factor)):
        if i == max_chunks:
            break
        video = frames_to_video(resize_frames(clip.frames, h, w))
        out.append(encode_chunk(tok, video, bits=bits, hysteresis=DEFAULT_HYSTERESIS)[0].numpy())
    return out, bits, point


t0 = time.time()
train = []
for path in clips("train"):
    grids, bits, point = default_point_tokens(path, chunks_per_video)
    assert bits == 6, (path, point)
    train += grids
    print(f"train {path.name}: {len(grids)} chunk(s) at {point.scale:g}x, {time.time() - t0:.0f} s", flush=True)
fitted = fit_prior(iter(train), 6, PRIOR_WEIGHT)
shipped = model_prior(tok, 6)
for path in clips("eval"):
    (grid,), bits, point = default_point_tokens(path, 1)
    sizes = []
    for prior in (shipped, fitted):
        params = EntropyParams.for_encoding(prior, grid.shape[1] * grid.shape[2])
        sizes.append(len(encode_tokens(grid, bits, params, prior)))
    print(f"eval {path.name} at {point.scale:g}x: shipped prior {sizes[0]} bytes, fitted at the default point "
          f"{sizes[1]} bytes ({100 * (sizes[1] / sizes[0] - 1):+.1f}%)", flush=True)
