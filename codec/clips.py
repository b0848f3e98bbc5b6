"""Conversions between uint8 RGB frames and the tokenizer's float tensors."""

from __future__ import annotations

import numpy as np
import torch


def frames_to_video(frames: np.ndarray) -> torch.Tensor:
    """uint8 frames (T, H, W, 3) -> float video (1, 3, T, H, W) in [-1, 1]."""
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2)[None].float() / 127.5 - 1


class FrameVideo:
    """uint8 frames (T, H, W, 3) standing for the float video (1, 3, T, H, W) in [-1, 1] that
    `frames_to_video` makes of them, converted a slice at a time: `video[:, :, a:b, c:d, e:f]`
    is `frames_to_video(frames)[:, :, a:b, c:d, e:f]`, made from those frames only. A chunk read in
    segments (`streaming.stateful.latent_segments`, `streaming.refine.refine_tokens`) so costs its
    uint8 frames, not a float32 copy four times their size (2.7 GB for 129 frames of 1536x1152).
    `padded(size)`: the video padded to (T, H, W) by repeating the last frame, row and column, as
    `Tokenizer.pad` pads a tensor."""

    def __init__(self, frames: np.ndarray, size: tuple[int, int, int] | None = None) -> None:
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
        size = tuple(frames.shape[:3]) if size is None else tuple(size)
        if any(p < n for p, n in zip(size, frames.shape)):
            raise ValueError(f"a FrameVideo pads its frames {frames.shape[:3]}, it cannot crop them to {size}")
        self.frames, self.size = frames, size

    @property
    def shape(self) -> torch.Size:
        return torch.Size((1, 3, *self.size))

    def dim(self) -> int:
        return 5

    def padded(self, size: tuple[int, int, int]) -> FrameVideo:
        """The same frames standing for the video padded to `size` (T, H, W)."""
        return FrameVideo(self.frames, size)

    def __getitem__(self, index: slice | tuple[slice, ...]) -> torch.Tensor:
        index = index if isinstance(index, tuple) else (index,)
        if (len(index) > 5 or not all(isinstance(i, slice) and (i.step or 1) > 0 for i in index)
                or index[:2] != (slice(None),) * len(index[:2])):
            raise IndexError("a FrameVideo is read by slices of its frames, rows and columns: video[:, :, a:b, c:d, e:f]")
        picked = self.frames
        for axis, (s, padded, n) in enumerate(zip(index[2:] + (slice(None),) * (5 - len(index)), self.size, self.frames.shape)):
            a, b, step = s.indices(padded)
            if step == 1 and b <= n:
                picked = picked[(slice(None),) * axis + (slice(a, b),)]
            else:  # past the real frames, rows or columns: the last one again
                picked = picked.take(np.minimum(np.arange(a, b, step), n - 1), axis=axis)
        return frames_to_video(picked)


def video_to_frames(video: torch.Tensor) -> np.ndarray:
    """float video (1, 3, T, H, W) in [-1, 1] -> uint8 frames (T, H, W, 3), rounded."""
    if video.dim() != 5 or video.shape[:2] != (1, 3):
        raise ValueError(f"video must be (1, 3, T, H, W), got {tuple(video.shape)}")
    pixels = ((video[0].float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return pixels.permute(1, 2, 3, 0).contiguous().numpy()


def coded_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """(width, height) a frame is resampled to before tokenization at `scale` (`encode --scale`)."""
    return max(1, round(width * scale)), max(1, round(height * scale))


def resize_video(video: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """float video (B, 3, T, H, W) resampled to (height, width): bicubic, antialiased when
    shrinking, clamped to [-1, 1]; the same tensor when the size is unchanged."""
    if tuple(video.shape[-2:]) == (height, width):
        return video
    b, c, t, h, w = video.shape
    flat = video.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
    out = torch.nn.functional.interpolate(flat, size=(height, width), mode="bicubic", antialias=True,
                                          align_corners=False).clamp(-1, 1)
    return out.reshape(b, t, c, height, width).permute(0, 2, 1, 3, 4)


def round_to_8_bits(video: torch.Tensor) -> torch.Tensor:
    """float video in [-1, 1] snapped to the 256 levels uint8 frames hold (as `resize_frames` returns them)."""
    return video.add(1).mul(127.5).round().div(127.5).sub(1)


def resize_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 frames (T, H, W, 3) resampled as `resize_video` does (rounded back to uint8), a few
    frames at a time: a whole chunk's float copies would take gigabytes (129 frames resampled to
    1536x1152 take 2.7 GB in float32, and the rounding makes more)."""
    if frames.shape[1:3] == (height, width):
        return frames
    out = np.empty((len(frames), height, width, 3), np.uint8)
    for first in range(0, len(frames), RESIZE_FRAMES):
        part = frames[first : first + RESIZE_FRAMES]
        out[first : first + len(part)] = video_to_frames(resize_video(frames_to_video(part), height, width))
    return out


# Frames `resize_frames` resamples at a time (each frame on its own: any number gives the same frames).
RESIZE_FRAMES = 8
