"""The small public Python API that ties the parts together."""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from tokcodec.codec import Tokenizer, load_tokenizer
from tokcodec.codec.clips import FrameVideo, video_to_frames
from tokcodec.codec.io import VideoWriter, iter_frames, probe, read_clips
from tokcodec.codec.lfq import DEFAULT_HYSTERESIS
from tokcodec.codec.precision import network_precision, resolve_precision
from tokcodec.streaming.stateful import decoded_segments, encode_chunk

from . import DEFAULT_CHUNK_FRAMES
from .progress import Progress


@dataclass
class RoundTripReport:
    """What a pixels -> tokens -> pixels round trip did."""

    source: str
    output: str
    model: str
    frames: int
    width: int
    height: int
    fps: Fraction
    clips: int
    tokens: int  # number of tokens over all clips
    token_grid: tuple[int, int, int]  # (T', H', W') of a full clip
    bits_per_token: int
    psnr_rgb: float  # over all frames, in dB
    seconds: float

    @property
    def raw_bpp(self) -> float:
        """Bits per pixel per frame if tokens were stored as plain K-bit codes."""
        return self.tokens * self.bits_per_token / (self.frames * self.width * self.height)


def check_output(path: str | os.PathLike, force: bool) -> None:
    """Refuse to overwrite an existing file unless `force` (nothing the user had is lost)."""
    if Path(path).exists() and not force:
        raise FileExistsError(f"{path}: already exists (use --force to overwrite)")


def reconstruct_file(
    source: str | os.PathLike,
    output: str | os.PathLike,
    *,
    model: Tokenizer | str | None = None,
    clip_frames: int = DEFAULT_CHUNK_FRAMES,
    lossless: bool = False,
    hysteresis: float | None = None,
    force: bool = False,
    quiet: bool = True,
    precision: str = "auto",
) -> RoundTripReport:
    """Encode a video to tokens and decode them back to an mp4, clip by clip: the
    model itself at its default LFQ level and native grid (`encode_file`'s
    rate ladder may also resample the frames; this does not).

    Memory is bounded by one clip. The source's audio is copied through. The
    output appears only when the whole video is done. `hysteresis`: a
    threshold as in `encode_file` (None: the fixed default 0.2, what
    streaming uses; `encode` chooses one per chunk, which needs the
    entropy coder this round trip does not run).
    `precision`: what the networks compute in, as in `encode_file`.
    """
    check_output(output, force)
    tokenizer = model if isinstance(model, Tokenizer) else load_tokenizer(model)
    precision = resolve_precision(precision, tokenizer.device)  # refuses a bad value before any work
    bits = tokenizer.level_bits()  # the model's default LFQ level, on its own grid (no ladder scale)
    hysteresis = DEFAULT_HYSTERESIS if hysteresis is None else hysteresis
    info = probe(source)
    start = time.monotonic()
    sq_err, frames, clips, tokens = 0.0, 0, 0, 0
    grid = (0, 0, 0)
    with Progress(info.frames, "round trip", quiet=quiet) as progress, VideoWriter(
        output, info.fps, info.width, info.height, lossless=lossless, audio_from=source
    ) as writer:
        for clip in read_clips(source, clip_frames, tokenizer.temporal_factor):
            video = FrameVideo(clip.frames)  # float a segment at a time, both ways
            with network_precision(precision, tokenizer.device):
                codes = encode_chunk(tokenizer, video, bits, hysteresis)
                decoded = np.concatenate([video_to_frames(segment) for segment in
                                          decoded_segments(tokenizer, codes, tuple(video.shape[-3:]), bits)])
            for frame in decoded[: clip.valid]:
                writer.write(frame)
            diff = decoded[: clip.valid].astype(np.float64) - clip.frames[: clip.valid]
            sq_err += float(np.square(diff).sum())
            frames += clip.valid
            clips += 1
            tokens += codes.numel()
            grid = max(grid, tuple(codes.shape[1:]))
            progress.update(clip.valid)
        if frames == 0:  # raised inside the block, so no empty output is left
            raise ValueError(f"{source}: no frames could be decoded")
    mse = sq_err / (frames * info.width * info.height * 3)
    return RoundTripReport(
        source=str(source),
        output=str(output),
        model=tokenizer.config.name,
        frames=frames,
        width=info.width,
        height=info.height,
        fps=info.fps,
        clips=clips,
        tokens=tokens,
        token_grid=grid,
        bits_per_token=bits,
        psnr_rgb=psnr(mse),
        seconds=time.monotonic() - start,
    )


def psnr(mse: float, peak: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB of a mean squared error on 8-bit samples."""
    return math.inf if mse == 0 else 10 * math.log10(peak * peak / mse)


def video_psnr(reference: str | os.PathLike, test: str | os.PathLike) -> float:
    """PSNR (RGB, dB) of a decoded video against its source, frame by frame.

    Only the frames both files have are compared, so a range decode can be
    checked against the start of its source.
    """
    sq_err, samples = 0.0, 0
    for a, b in zip(iter_frames(reference), iter_frames(test)):
        if a.shape != b.shape:
            raise ValueError(f"{test}: frames of {b.shape[1]}x{b.shape[0]}, the reference has {a.shape[1]}x{a.shape[0]}")
        sq_err += float(np.square(a.astype(np.float64) - b).sum())
        samples += a.size
    if samples == 0:
        raise ValueError(f"{test}: no frames to compare")
    return psnr(sq_err / samples)
