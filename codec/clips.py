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
