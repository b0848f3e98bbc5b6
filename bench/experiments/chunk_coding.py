"""What the refinement and weights experiments share: a clip's first frames as one chunk, the
chunk's tokens coded (decoded and entropy-coded) as `tokcodec encode` codes a chunk, and
weights loaded from a safetensors file or a training checkpoint."""

from __future__ import annotations

import itertools

import numpy as np
import torch
from safetensors.torch import load_file

from tokcodec.bitstream.entropy import EntropyParams, encode_tokens
from tokcodec.codec import Tokenizer
from tokcodec.codec.clips import coded_size, frames_to_video, resize_frames, video_to_frames
from tokcodec.codec.io import iter_frames
from tokcodec.ladder import OperatingPoint, model_ladder
from tokcodec.priors import model_prior
from tokcodec.streaming.stateful import decode_chunk, encode_chunk


def first_frames(path: str, n: int) -> tuple[np.ndarray, torch.Tensor]:
    """uint8 frames (n, H, W, 3) of a video's start and the float chunk (1, 3, n, H, W) they make."""
    frames = np.stack(list(itertools.islice(iter_frames(path), n)))
    return frames, frames_to_video(frames)


def decoded_and_bpp(tokenizer: Tokenizer, tokens: torch.Tensor, bits: int, size: tuple[int, int, int]
                    ) -> tuple[np.ndarray, float]:
    """The uint8 frames (T, H, W, 3) a chunk's tokens (1, T', H', W') decode to, and
    the bits per pixel of the tokens entropy-coded with the model's shipped prior."""
    frames = video_to_frames(decode_chunk(tokenizer, tokens, size, bits))
    prior = model_prior(tokenizer, bits)
    grid = tokens[0].numpy()
    coded = encode_tokens(grid, bits, EntropyParams.for_encoding(prior, grid.shape[1] * grid.shape[2]), prior)
    return frames, 8 * len(coded) / np.prod(size)


def encode_at_point(tokenizer: Tokenizer, frames: np.ndarray, quality: int, hysteresis: float
                    ) -> tuple[torch.Tensor, OperatingPoint, int, tuple[int, int, int]]:
    """uint8 frames (T, H, W, 3) coded as one chunk as `tokcodec encode --quality` codes it (resampled to
    the ladder point's scale): the tokens, the point, its bits per token and the coded size (T, h, w)."""
    T, H, W = frames.shape[:3]
    point = model_ladder(tokenizer.config).for_frame(quality, W, H)
    bits = tokenizer.config.lfq.level_bits[point.level]
    cw, ch = coded_size(W, H, point.scale)
    tokens = encode_chunk(tokenizer, frames_to_video(resize_frames(frames, ch, cw)), bits, hysteresis)
    return tokens, point, bits, (T, ch, cw)


def decode_to_source(tokenizer: Tokenizer, tokens: torch.Tensor, bits: int, coded: tuple[int, int, int],
                     height: int, width: int) -> np.ndarray:
    """`encode_at_point`'s tokens decoded and resampled back to the source size, as `tokcodec decode` does."""
    return resize_frames(video_to_frames(decode_chunk(tokenizer, tokens, coded, bits)), height, width)


def psnr(frames: np.ndarray, reference: np.ndarray) -> float:
    """RGB PSNR (dB) of uint8 frames against the reference."""
    return float(10 * np.log10(255**2 / np.mean((frames.astype(np.float64) - reference) ** 2)))


def load_state(spec: str) -> dict[str, torch.Tensor]:
    """float32 weights from W.safetensors, RUN/checkpoint.pt (its EMA weights) or
    RUN/checkpoint.pt:model (its raw weights)."""
    path, _, key = spec.partition(":") if spec.endswith(":model") else (spec, "", "")
    state = (load_file(path) if path.endswith(".safetensors")
             else torch.load(path, map_location="cpu", weights_only=False)[key or "ema"])
    return {k: v.float() for k, v in state.items()}


def load_decoder_state(spec: str, shipped: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`load_state(spec)`, refused (SystemExit) unless its encoder is the shipped one: the
    decoder experiments decode the shipped encoder's tokens with other decoders."""
    state = load_state(spec)
    for key, value in shipped.items():
        if not key.startswith("decoder.") and not torch.equal(value, state[key]):
            raise SystemExit(f"{spec}: another encoder ({key} differs)")
    return state
