"""Training clips: random spatio-temporal crops from a folder of videos.

All frames are decoded once into memory (downscaled so that the longer side
is at most `max_side`), and batches are cut from them at random: a video,
a start frame, a crop and a horizontal flip. Files with fewer frames than a
clip (images among them) only give 1-frame clips, which MAGVIT-v2 uses to
train images and videos in one vocabulary.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .graphics import graphics_clips
from .io import VideoError, iter_frames

VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".y4m", ".ogv"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


@dataclass(frozen=True)
class DataConfig:
    """Where training clips come from and how they are cut."""

    paths: tuple[str, ...] = ()
    clip_frames: int = 9  # 1 + 4k
    crop: int = 64
    image_prob: float = 0.1  # share of batches made of 1-frame clips
    max_side: int = 384
    max_frames_per_video: int = 1200
    graphics: float = 0.0  # share of clips drawn from procedural graphics (codec.graphics) instead
    graphics_clips: int = 48  # how many such clips are rendered (seed 0)

    def __post_init__(self) -> None:
        if not 0 <= self.graphics <= 1:
            raise ValueError(f"the share of graphics clips must be in [0, 1], got {self.graphics}")


def find_media(paths: tuple[str, ...] | list[str]) -> list[Path]:
    """Video and image files named in `paths`, folders searched recursively."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(f for f in p.rglob("*") if f.suffix.lower() in VIDEO_SUFFIXES | IMAGE_SUFFIXES)
        elif p.is_file():
            found.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    return found


def _downscale(frames: np.ndarray, max_side: int) -> np.ndarray:
    t, h, w, _ = frames.shape
    scale = max_side / max(h, w)
    if scale >= 1:
        return frames
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    x = F.interpolate(x, size=size, mode="area")
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def training_frames(path: Path, config: DataConfig) -> np.ndarray | None:
    """The frames training reads from one video or image: at most
    `max_frames_per_video`, area-downscaled so that the longer side is at most
    `max_side`, as (T, H, W, 3) uint8; None when it has no frames. Raises
    VideoError for a file that cannot be read."""
    frames = list(itertools.islice(iter_frames(path), config.max_frames_per_video))
    return _downscale(np.stack(frames), config.max_side) if frames else None


class ClipSampler:
    """Random training batches (B, 3, T, crop, crop) in [-1, 1] from decoded media."""

    def __init__(self, config: DataConfig, log: bool = True) -> None:
        self.config = config
        self.videos: list[np.ndarray] = []
        for path in find_media(config.paths):
            try:
                arr = training_frames(path, config)
            except VideoError as exc:
                if log:
                    print(f"skipping {exc}")
                continue
            if arr is None:
                continue
            if min(arr.shape[1:3]) < config.crop:
                if log:
                    print(f"skipping {path}: smaller than the {config.crop}px crop")
                continue
            self.videos.append(arr)
            if log:
                print(f"loaded {path.name}: {arr.shape[0]} frames of {arr.shape[2]}x{arr.shape[1]}")
        if not self.videos:
            raise ValueError(f"no usable training media in {', '.join(config.paths) or '(nothing given)'}")
        self.clip_videos = [i for i, v in enumerate(self.videos) if len(v) >= config.clip_frames]
        if not self.clip_videos:
            raise ValueError(f"no training video has {config.clip_frames} frames")
        self.graphics: list[np.ndarray] = []
        if config.graphics:
            side = max(config.max_side, config.crop)  # 4:3 frames as large as the videos'
            height = max(side * 3 // 4, config.crop)
            self.graphics = graphics_clips(config.graphics_clips, max(config.clip_frames, 17), height, side)
            if log:
                print(f"rendered {len(self.graphics)} graphics clips ({config.graphics:.0%} of the training clips)")

    @property
    def frames(self) -> int:
        return sum(len(v) for v in self.videos)

    def sample(self, batch: int, rng: np.random.Generator, frames: int | None = None,
               device: torch.device | str = "cpu") -> torch.Tensor:
        """One batch on `device`; all clips share one length (1 frame with
        probability image_prob). The pixels cross to the device as uint8 (a
        quarter of the bytes) and become floats there."""
        return to_unit(self.sample_uint8(batch, rng, frames).to(device))

    def sample_uint8(self, batch: int, rng: np.random.Generator, frames: int | None = None) -> torch.Tensor:
        """`sample` before its conversion to float: (B, 3, T, crop, crop) uint8."""
        cfg = self.config
        if frames is None:
            frames = 1 if rng.random() < cfg.image_prob else cfg.clip_frames
        pool = range(len(self.videos)) if frames == 1 else self.clip_videos
        clips = []
        for _ in range(batch):
            if self.graphics and rng.random() < cfg.graphics:
                v = self.graphics[rng.integers(len(self.graphics))]
            else:
                v = self.videos[pool[rng.integers(len(pool))]]
            t0 = rng.integers(len(v) - frames + 1)
            y0 = rng.integers(v.shape[1] - cfg.crop + 1)
            x0 = rng.integers(v.shape[2] - cfg.crop + 1)
            clip = v[t0 : t0 + frames, y0 : y0 + cfg.crop, x0 : x0 + cfg.crop]
            if rng.random() < 0.5:
                clip = clip[:, :, ::-1]
            clips.append(clip)
        x = torch.from_numpy(np.ascontiguousarray(np.stack(clips)))  # (B, T, H, W, 3)
        return x.permute(0, 4, 1, 2, 3)


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float in [-1, 1]."""
    return x.float().div_(127.5).sub_(1)
