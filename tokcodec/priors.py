"""Entropy priors shipped with the tokenizers, and fitting new ones.

A prior (`bitstream.entropy.EntropyPrior`) holds the initial counts of the
context model, fitted on one tokenizer's tokens of training videos. It ships
beside the weights as ``codec/models/NAME.prior-kB.npz``, one per level of
the model's rate ladder (B bits per token); `tokcodec encode` uses it when
the model has one, and the .tok header names it by its id, so a decoder
either has the same prior or refuses the file with a clear error.
"""

from __future__ import annotations

import functools
import itertools
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from tokcodec.bitstream.container import Header
from tokcodec.bitstream.entropy import EntropyPrior, fit_prior
from tokcodec.codec import Tokenizer, load_tokenizer
from tokcodec.codec.clips import frames_to_video
from tokcodec.codec.io import read_clips
from tokcodec.codec.registry import MODELS_DIR

PRIOR_WEIGHT = 128  # half units: a fitted context starts as if it had seen 64 decisions


def prior_path(model: str, bits: int, directory: Path = MODELS_DIR) -> Path:
    """Where the prior of a shipped model's `bits`-bit level lives."""
    return directory / f"{model}.prior-k{bits}.npz"


@functools.lru_cache(maxsize=16)
def load_prior(model: str, bits: int) -> EntropyPrior | None:
    """The prior shipped with `model` for `bits`-bit tokens, or None if it has none."""
    path = prior_path(model, bits)
    if not path.is_file():
        return None
    prior = EntropyPrior.load(path)
    return prior if prior.bits == bits else None


def prior_for(header: Header) -> EntropyPrior | None:
    """The shipped prior a .tok file names, if this tokcodec has it (for TokReader)."""
    prior = load_prior(header.model, header.bits)
    return prior if prior is not None and prior.id == header.entropy.prior else None


def model_prior(tokenizer: Tokenizer, bits: int | None = None) -> EntropyPrior | None:
    """The shipped prior to code `tokenizer`'s `bits`-bit tokens with (default: all bits), or None."""
    return load_prior(tokenizer.config.name, bits or tokenizer.config.bits)


def video_token_chunks(
    videos: Sequence[str | os.PathLike], tokenizer: Tokenizer, chunk_frames: int, max_chunks: int | None
) -> Iterator[np.ndarray]:
    """Token grids (all bits) of the first `max_chunks` chunks of each video, as `encode` cuts them."""
    for video in videos:
        clips = read_clips(video, chunk_frames, tokenizer.temporal_factor)
        for clip in itertools.islice(clips, max_chunks):
            with torch.no_grad():
                yield tokenizer.encode(frames_to_video(clip.frames))[0].numpy()


def fit_model_priors(
    videos: Sequence[str | os.PathLike],
    directory: str | os.PathLike,
    model: str | None = None,
    chunk_frames: int = 17,
    max_chunks: int | None = 6,
    weight: int = PRIOR_WEIGHT,
) -> list[tuple[Path, EntropyPrior]]:
    """Fit the entropy prior of every level of a tokenizer's rate ladder on
    videos and write them into `directory` as NAME.prior-kB.npz (atomically).

    Use training videos, never the clips you evaluate on.
    """
    tokenizer = load_tokenizer(model)
    levels = tokenizer.config.lfq.level_bits
    chunks = list(video_token_chunks(videos, tokenizer, chunk_frames, max_chunks))
    out = []
    for bits in levels:
        mask = (1 << bits) - 1
        prior = fit_prior((c & mask for c in chunks), bits, weight)
        path = prior_path(tokenizer.config.name, bits, Path(directory))
        _save_atomically(prior, path)
        out.append((path, prior))
    return out


def _save_atomically(prior: EntropyPrior, output: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    os.close(fd)
    try:
        prior.save(tmp)
        os.replace(tmp, output)
    except BaseException:
        os.unlink(tmp)
        raise
