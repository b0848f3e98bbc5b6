"""Conversions between uint8 RGB frames and the tokenizer's float tensors."""

from __future__ import annotations

import numpy as np
import torch


def frames_to_video(frames: np.ndarray) -> torch.Tensor:
    """uint8 frames (T, H, W, 3) -> float video (1, 3, T, H, W) in [-1, 1]."""
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2)[None].float() / 127.5 - 1


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
    """uint8 frames (T, H, W, 3) resampled as `resize_video` does (rounded back to uint8)."""
    if frames.shape[1:3] == (height, width):
        return frames
    return video_to_frames(resize_video(frames_to_video(frames), height, width))
