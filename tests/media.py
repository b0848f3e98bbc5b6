"""Tiny synthetic media for the tests, made with PyAV (no corpus needed)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np


def smooth_frames(n: int, height: int, width: int) -> list[np.ndarray]:
    """Gradients with a moving square: easy for H.264, so lossy error is small."""
    y, x = np.mgrid[:height, :width]
    frames = []
    for i in range(n):
        f = np.empty((height, width, 3), np.uint8)
        f[..., 0] = x * 255 // max(width - 1, 1)
        f[..., 1] = y * 255 // max(height - 1, 1)
        f[..., 2] = (40 + 10 * i) % 256
        f[2 + i % 8 : 10 + i % 8, 3:11] = 255
        frames.append(f)
    return frames


def noise_frames(n: int, height: int, width: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(n)]


def numbered_frames(n: int, height: int = 48, width: int = 64) -> list[np.ndarray]:
    """Frame i is filled with value 10*i (plus noise), so frames are told apart exactly."""
    return [np.clip(f // 8 + 10 * i, 0, 255).astype(np.uint8) for i, f in enumerate(noise_frames(n, height, width))]


def sine_audio(rate: int, seconds: float, frame_size: int = 1024) -> list[av.AudioFrame]:
    total = int(rate * seconds)
    t = np.arange(total) / rate
    samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    frames = []
    for start in range(0, total, frame_size):
        chunk = samples[start : start + frame_size][None, :]
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = rate, start
        frames.append(frame)
    return frames


def make_av_source(path: Path, n: int = 20, fps: int = 25, codec: str = "aac", video: bool = True) -> None:
    """A clip with (optionally) video and a sine audio track of the same length."""
    with av.open(str(path), "w") as out:
        vs = None
        if video:
            vs = out.add_stream("libx264", rate=fps)
            vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        rate = 48000
        aus = out.add_stream(codec, rate=rate)
        aus.layout = "mono"
        if codec.startswith("pcm"):
            aus.format = "s16"
        for frame in sine_audio(rate, n / fps):
            out.mux(aus.encode(frame))
        out.mux(aus.encode(None))
        if vs is not None:
            for f in smooth_frames(n, 48, 64):
                out.mux(vs.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
            out.mux(vs.encode(None))


def audio_seconds(path: Path) -> float:
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        return sum(f.samples for f in c.decode(stream)) / stream.rate


def audio_codec(path: Path) -> str:
    with av.open(str(path)) as c:
        return c.streams.audio[0].codec_context.name
