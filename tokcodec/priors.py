"""Entropy priors shipped with the tokenizers, and fitting new ones.

A prior (`bitstream.entropy.EntropyPrior`) holds the initial counts of the
context model, fitted on one tokenizer's tokens of training videos. It ships
beside the weights as ``codec/models/NAME.prior-kB.npz``, one per level of
the model's rate ladder (B bits per token); `tokcodec encode` uses it when
the model has one, and the .tok header names it by its id, so a decoder
either has the same prior or refuses the file with a clear error.

A level of at most 8 bits per token also gets the context net of entropy
model 3 (`tokcodec.context_net_fit`), trained on the tokens `encode` writes
at the model's default quality (its scale, and the hysteresis threshold it
chooses per chunk), and stored in the same file: `encode` codes such a
level with the net. A level of more bits, at most 8 bits above a lower
level with nets, gets the chain of nets of entropy model 4: the lower level's
nets for its low bits and a net for the rest given them, trained on the
tokens `encode` writes at the ladder's points of the level (a level that
only the pixel cap reaches: at the first net's scales).

When a model's priors are fitted again, the ones they replace move to
``codec/models/retired/NAME.prior-kB-ID.npz`` (ID: the prior's id in hex):
new files are coded with the new priors, and files coded before still decode.
"""

from __future__ import annotations

import functools
import itertools
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from tokcodec.bitstream.container import Header
from tokcodec.bitstream.context_net import MAX_NET_BITS
from tokcodec.bitstream.entropy import EntropyParams, EntropyPrior, encode_tokens, fit_prior
from tokcodec.codec import Tokenizer, load_tokenizer
from tokcodec.codec.clips import FrameVideo, coded_size, resize_frames
from tokcodec.codec.io import read_clips
from tokcodec.codec.lfq import DEFAULT_HYSTERESIS
from tokcodec.codec.registry import MODELS_DIR
from tokcodec.streaming.rate_control import HysteresisSearch, encode_searched
from tokcodec.streaming.stateful import encode_chunk

from . import DEFAULT_CHUNK_FRAMES
from .context_net_fit import ContextNetConfig, FitReport, fit_context_net
from .ladder import model_ladder

PRIOR_WEIGHT = 128  # half units: a fitted context starts as if it had seen 64 decisions


RETIRED_DIR = MODELS_DIR / "retired"


def prior_path(model: str, bits: int, directory: Path | None = None) -> Path:
    """Where the prior of a shipped model's `bits`-bit level lives (in `directory`, default the shipped models)."""
    return (directory or MODELS_DIR) / f"{model}.prior-k{bits}.npz"


def retired_prior_path(model: str, bits: int, prior_id: int, directory: Path | None = None) -> Path:
    """Where a prior that a newer one replaced is kept, so that old files still decode
    (in `directory`, default the shipped models' retired/ folder)."""
    return (directory or RETIRED_DIR) / f"{model}.prior-k{bits}-{prior_id:08x}.npz"


@functools.lru_cache(maxsize=16)
def load_prior(model: str, bits: int) -> EntropyPrior | None:
    """The prior shipped with `model` for `bits`-bit tokens, or None if it has none."""
    path = prior_path(model, bits)
    if not path.is_file():
        return None
    prior = EntropyPrior.load(path)
    return prior if prior.bits == bits else None


def prior_for(header: Header) -> EntropyPrior | None:
    """The shipped prior a .tok file names, current or retired, if this tokcodec has it (for TokReader)."""
    wanted = header.entropy.prior
    prior = load_prior(header.model, header.bits)
    if prior is not None and prior.id == wanted:
        return prior
    return _load_retired(header.model, header.bits, wanted)


@functools.lru_cache(maxsize=16)
def _load_retired(model: str, bits: int, prior_id: int) -> EntropyPrior | None:
    path = retired_prior_path(model, bits, prior_id)
    if not prior_id or not path.is_file():
        return None
    prior = EntropyPrior.load(path)
    return prior if prior.bits == bits and prior.id == prior_id else None


def model_prior(tokenizer: Tokenizer, bits: int | None = None) -> EntropyPrior | None:
    """The shipped prior to code `tokenizer`'s `bits`-bit tokens with (default: all bits), or None."""
    return load_prior(tokenizer.config.name, bits or tokenizer.config.bits)


def video_token_chunks(
    videos: Sequence[str | os.PathLike],
    tokenizer: Tokenizer,
    chunk_frames: int,
    max_chunks: int | None,
    hysteresis: float | HysteresisSearch = DEFAULT_HYSTERESIS,
    scale: float | None | Sequence[float | None] = 1.0,
    bits: int | None = None,
    quality: int | None = None,
) -> Iterator[np.ndarray]:
    """Token grids of `bits` bits (default: all) of the first `max_chunks`
    chunks of each video, as `encode` cuts and codes them, resampled by
    `scale` as `encode --scale` (None: the scale `encode` picks for the
    video at `quality`, default the default quality); a sequence of scales codes each chunk at
    each distinct size they give (a video is read once, and a scale that
    comes to the same size as another is not coded twice). `hysteresis`: a threshold, or a search
    that picks one per chunk as `encode --hysteresis auto` does, pricing the
    chunk's bits by the model's shipped prior for `bits`-bit tokens (the one
    `encode` codes them with; counts alone where it has none). Unrefined:
    `encode`'s refinement (two steps by default) prices bits by a context
    net, the very model these tokens fit."""
    ladder = model_ladder(tokenizer.config)
    scales = tuple(scale) if isinstance(scale, Sequence) else (scale,)
    bits = tokenizer._check_bits(bits)
    prior = model_prior(tokenizer, bits) if isinstance(hysteresis, HysteresisSearch) else None

    def payload_bytes(tokens: np.ndarray) -> int:
        params = EntropyParams.for_encoding(prior, tokens.shape[1] * tokens.shape[2])
        return len(encode_tokens(tokens, bits, params, prior))

    for video in videos:
        clips = read_clips(video, chunk_frames, tokenizer.temporal_factor)
        for clip in itertools.islice(clips, max_chunks):
            h, w = clip.frames.shape[1:3]
            sizes = dict.fromkeys(coded_size(w, h, ladder.for_frame(quality, w, h).scale if s is None else s)
                                  for s in scales)
            for cw, ch in sizes:
                with torch.no_grad():
                    video_in = FrameVideo(resize_frames(clip.frames, ch, cw))  # float a segment at a time
                    if isinstance(hysteresis, HysteresisSearch):
                        size = (clip.valid, ch, cw)
                        tokens = encode_searched(tokenizer, video_in, bits, size, payload_bytes, hysteresis).tokens
                    else:
                        tokens = encode_chunk(tokenizer, video_in, bits, hysteresis=hysteresis)
                yield tokens[0].numpy()


def fit_model_priors(
    videos: Sequence[str | os.PathLike],
    directory: str | os.PathLike,
    model: str | None = None,
    chunk_frames: int = DEFAULT_CHUNK_FRAMES,
    max_chunks: int | None = 3,
    weight: int = PRIOR_WEIGHT,
    hysteresis: float = DEFAULT_HYSTERESIS,
    net: ContextNetConfig | None = ContextNetConfig(),
    report: "Callable[[int, FitReport], None] | None" = None,
    net_hysteresis: float | HysteresisSearch = HysteresisSearch(),
    net_scales: Sequence[float | None] = (None, 1.0),
) -> list[tuple[Path, EntropyPrior]]:
    """Fit the entropy prior of every level of a tokenizer's rate ladder on
    videos and write them into `directory` as NAME.prior-kB.npz (atomically).
    The counts are fitted on tokens of threshold `hysteresis`. Levels of at
    most 8 bits also get a context net (entropy model 3) unless `net` is
    None, trained on the tokens `encode` writes at each of `net_scales`
    (None: the default quality's scale; the net codes every point of the
    ladder, 0.5x to 3x) with `net_hysteresis` (default: chosen per chunk, as
    `encode` does, `video_token_chunks`). A level of more bits, at most 8
    bits above a lower level with nets, gets entropy model 4's chain: the lower
    level's nets and one for its bits above them, trained on the tokens
    `encode` writes at the ladder's points of the level (a level that only
    the pixel cap reaches: at `net_scales`).
    `report(bits, fit_report)` hears how each net fits.

    Use training videos, never the clips you evaluate on.
    """
    tokenizer = load_tokenizer(model)
    levels = tokenizer.config.lfq.level_bits
    ladder = model_ladder(tokenizer.config)
    chunks = list(video_token_chunks(videos, tokenizer, chunk_frames, max_chunks, hysteresis))
    chains = {}  # bits -> the nets that code that level, low bits first
    out = []
    for level, bits in enumerate(levels):
        mask = (1 << bits) - 1
        prior = fit_prior((c & mask for c in chunks), bits, weight)
        low = max((b for b in chains if bits - b <= MAX_NET_BITS), default=None)
        if net is not None and (bits <= MAX_NET_BITS or low is not None):
            side = 0 if bits <= MAX_NET_BITS else low
            # a top net learns from the tokens of its level's points; the first net, and a top
            # net of a level that only the pixel cap reaches (large frames' top points), at net_scales
            qualities = [q for q, point in enumerate(ladder.points) if point.level == level] if side else []
            net_chunks = [c for q in qualities or [None] for c in video_token_chunks(
                videos, tokenizer, chunk_frames, max_chunks, net_hysteresis,
                None if qualities else net_scales, bits, q)]
            fitted, fit = fit_context_net(net_chunks, bits - side, net, side_bits=side)
            chains[bits] = chains[low] + (fitted,) if side else (fitted,)
            prior = EntropyPrior(bits, prior.tables, chains[bits][0], chains[bits][1:])
            if report is not None:
                report(bits, fit)
        path = prior_path(tokenizer.config.name, bits, Path(directory))
        _retire(path, tokenizer.config.name, bits, prior.id)
        _save_atomically(prior, path)
        out.append((path, prior))
    return out


def _retire(path: Path, model: str, bits: int, new_id: int) -> None:
    """Move the prior at `path` (if any, and unless it is the new one) to the
    retired/ folder beside it, so that files coded with it still decode."""
    if not path.is_file():
        return
    old = EntropyPrior.load(path)
    if old.id == new_id:
        return
    target = retired_prior_path(model, bits, old.id, path.parent / RETIRED_DIR.name)
    target.parent.mkdir(exist_ok=True)
    os.replace(path, target)


def _save_atomically(prior: EntropyPrior, output: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    os.close(fd)
    try:
        prior.save(tmp)
        os.replace(tmp, output)
    except BaseException:
        os.unlink(tmp)
        raise
