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


def scene_cut_frames(before: int, after: int, height: int = 48, width: int = 64) -> list[np.ndarray]:
    """`smooth_frames` with a scene cut at frame `before`: from there on the colours are inverted and
    the square moves the other way."""
    return smooth_frames(before, height, width) + [255 - f[::-1] for f in smooth_frames(after, height, width)]


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


def make_tone_source(
    path: Path,
    seconds: float,
    onset: float = 0.0,
    codec: str = "aac",
    video: bool = True,
    fps: int = 25,
    format: str | None = None,
) -> None:
    """Silence until ``onset`` seconds, then a 440 Hz tone, ``seconds`` long in all.

    The onset makes audio offsets measurable (see :func:`onset_seconds`).
    ``codec="vorbis"`` uses FFmpeg's experimental encoder (stereo only);
    webm/ogg cannot hold H.264, so pass ``video=False`` for those.
    """
    rate = 48000
    layout = "stereo" if codec == "vorbis" else "mono"
    with av.open(str(path), "w", format=format) as out:
        vs = None
        if video:
            vs = out.add_stream("libx264", rate=fps)
            vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        aus = out.add_stream(codec, rate=rate, options={"strict": "-2"} if codec == "vorbis" else None)
        aus.layout = layout
        if codec.startswith(("pcm", "adpcm")):
            aus.format = "s16"
        total = int(rate * seconds)
        t = np.arange(total) / rate
        samples = np.where(t >= onset, 0.3 * np.sin(2 * np.pi * 440 * t), 0.0).astype(np.float32)
        channels = 2 if layout == "stereo" else 1
        for start in range(0, total, 1024):
            chunk = np.repeat(samples[None, start : start + 1024], channels, axis=0)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout=layout)
            frame.sample_rate, frame.pts = rate, start
            out.mux(aus.encode(frame))
        out.mux(aus.encode(None))
        if vs is not None:
            for f in smooth_frames(int(round(seconds * fps)), 48, 64):
                out.mux(vs.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
            out.mux(vs.encode(None))


def audio_samples(path: Path) -> tuple[np.ndarray, int]:
    """The first audio stream decoded to mono float32 samples, and its sample rate."""
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=stream.rate)
        chunks = [f.to_ndarray()[0] for frame in c.decode(stream) for f in resampler.resample(frame)]
        chunks += [f.to_ndarray()[0] for f in resampler.resample(None)]
        return (np.concatenate(chunks) if chunks else np.zeros(0, np.float32)), stream.rate


def onset_seconds(path: Path, threshold: float = 0.1) -> float:
    """When the decoded audio first gets louder than ``threshold`` (inf if never)."""
    samples, rate = audio_samples(path)
    loud = np.flatnonzero(np.abs(samples) > threshold)
    return float(loud[0]) / rate if loud.size else float("inf")


def superwhite_planes(n: int, height: int = 48, width: int = 64) -> list[np.ndarray]:
    """yuv420p frames (as PyAV's (H*3/2, W) arrays) of a limited-range picture
    whose upper quarter is super-white (Y' 236..255), like an overexposed grey
    sky (grey, so that even the codec's RGB 0..1 in the widened span holds it)."""
    frames = []
    for t in range(n):
        y = np.linspace(40, 300, height)[:, None] + 8 * np.sin(np.arange(width) / 5.0 + t / 3.0)[None, :]
        y = np.clip(np.rint(y), 0, 255).astype(np.uint8)[::-1]  # the bright part on top
        u = np.full((height // 2, width // 2), 128, np.uint8)
        v = np.full((height // 2, width // 2), 128, np.uint8)
        frames.append(np.concatenate([y, u.reshape(-1, width), v.reshape(-1, width)]))
    return frames


def make_superwhite_source(path: Path, n: int = 9, height: int = 48, width: int = 64, fps: int = 25,
                           nominal_first: int = 0) -> list[np.ndarray]:
    """A lossless (qp 0) yuv420p mp4 of `superwhite_planes`, its first
    `nominal_first` frames darkened to Y' <= 200 (a keyframe every 10 frames,
    so that it seeks); returns their Y' planes."""
    planes = superwhite_planes(n, height, width)
    for p in planes[:nominal_first]:
        p[:height] = (p[:height].astype(np.int32) * 200 // 255).astype(np.uint8)
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps, options={"qp": "0", "g": "10", "keyint_min": "10"})
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        for p in planes:
            out.mux(vs.encode(av.VideoFrame.from_ndarray(p, format="yuv420p")))
        out.mux(vs.encode(None))
    return [p[:height] for p in planes]
