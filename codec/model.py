"""The MAGVIT-v2 video tokenizer: causal 3D CNN encoder, LFQ, decoder.

    video (B, 3, 1+t*k, H, W) in [-1, 1]
      -> Encoder: patch embedding, residual blocks per level, strided causal
         convolutions between levels (space first, time last)
      -> latent z (B, K, 1+k, H/s, W/s)
      -> LFQ: sign(z), token = sum_i 2^i 1{z_i > 0}
      -> Decoder: residual blocks with adaptive group norm conditioned on the
         quantised latent, depth-to-space upsampling (time first, space last)
      -> video (B, 3, 1+t*k, H, W)

Arbitrary clip sizes are accepted by `Tokenizer.encode`: the clip is padded
(replicating the last frame and the right/bottom border) to the model's
stride, and `Tokenizer.decode(tokens, size=...)` crops back.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .clips import FrameVideo
from .config import TokenizerConfig
from .layers import CausalConv3d, FrameGroupNorm, ResBlock, checkpointed, depth_to_space, norm_silu_conv
from .lfq import LFQ, LFQOutput, bits_to_indices, hysteresis_signs, level_codes
from .precision import autocast_input, in_fastest_layout


class Encoder(nn.Module):
    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__()
        ch, p, g = cfg.channels, cfg.patch_size, cfg.norm_groups
        # Patchify first: full-resolution 3D convolutions are unaffordable on a CPU.
        self.stem = nn.Conv3d(3, ch[0], (1, p, p), stride=(1, p, p))
        self.levels = nn.ModuleList()
        self.downs = nn.ModuleList()
        strides = cfg.transition_strides()
        for i, c in enumerate(ch):
            self.levels.append(
                nn.Sequential(*[ResBlock(c, c, g, cfg.factorized) for _ in range(cfg.blocks_per_level)])
            )
            if i < len(strides):
                st, ss = strides[i]
                self.downs.append(CausalConv3d(c, ch[i + 1], 3, stride=(st, ss, ss)))
        self.norm_out = FrameGroupNorm(ch[-1], g)
        self.conv_out = CausalConv3d(ch[-1], cfg.bits, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(in_fastest_layout(self, x))
        for i, level in enumerate(self.levels):
            h = level(h)
            if i < len(self.downs):
                h = self.downs[i](h)
        return norm_silu_conv(self.norm_out, self.conv_out, h)


class Decoder(nn.Module):
    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__()
        ch, p, g, k = cfg.channels, cfg.patch_size, cfg.norm_groups, cfg.bits
        self.patch = p
        self.conv_in = CausalConv3d(k, ch[-1], 3)
        self.levels = nn.ModuleList()
        self.ups = nn.ModuleList()
        # Walk the levels from the lowest resolution up; transition i joins
        # level i and i+1 in encoder order, so it is undone after level i+1.
        self.up_strides = list(reversed(cfg.transition_strides()))
        for j, c in enumerate(reversed(ch)):
            self.levels.append(
                nn.ModuleList([ResBlock(c, c, g, cfg.factorized, cond_channels=k) for _ in range(cfg.blocks_per_level)])
            )
            if j < len(self.up_strides):
                st, ss = self.up_strides[j]
                c_next = ch[len(ch) - 2 - j]
                # A 1x1x1 projection before depth-to-space (a sub-pixel convolution);
                # the 3x3x3 version cost 8x the parameters for no gain the blocks after it lack.
                self.ups.append(CausalConv3d(c, c_next * st * ss * ss, 1))
        self.norm_out = FrameGroupNorm(ch[0], g)
        self.conv_out = CausalConv3d(ch[0], 3 * p * p, 3)
        self.continuing = False  # streaming: zq holds latent frames after a chunk's first
        self.checkpointing = False  # recompute the blocks in the backward pass (memory; see refine)

    def forward(self, zq: torch.Tensor) -> torch.Tensor:
        zq = autocast_input(in_fastest_layout(self, zq))
        h = self.conv_in(zq)
        for j, blocks in enumerate(self.levels):
            for block in blocks:
                h = checkpointed(block, h, zq) if self.checkpointing and torch.is_grad_enabled() else block(h, zq)
            if j < len(self.ups):
                st, ss = self.up_strides[j]
                h = depth_to_space(self.ups[j](h), st, ss, self.continuing)
        h = norm_silu_conv(self.norm_out, self.conv_out, h)
        return depth_to_space(h, 1, self.patch)


@dataclass
class TokenizerOutput:
    """What a training step needs: reconstruction plus the quantiser's output."""

    reconstruction: torch.Tensor
    lfq: LFQOutput


class Tokenizer(nn.Module):
    """MAGVIT-v2 causal video tokenizer with lookup-free quantisation.

    `encode(video) -> tokens` and `decode(tokens) -> video`, with video float
    in [-1, 1] shaped (B, 3, T, H, W) and tokens int64 (B, T', H', W').
    T' = 1 + ceil((T - 1) / t), H' = ceil(H / s), W' = ceil(W / s) for the
    config's temporal factor t and spatial factor s.
    """

    def __init__(self, config: TokenizerConfig | None = None) -> None:
        super().__init__()
        self.config = config or TokenizerConfig()
        self.encoder = Encoder(self.config)
        self.quantizer = LFQ(self.config.lfq)
        self.decoder = Decoder(self.config)

    # -- geometry ---------------------------------------------------------
    @property
    def temporal_factor(self) -> int:
        return self.config.temporal_downsample

    @property
    def spatial_factor(self) -> int:
        return self.config.spatial_downsample

    def padded_size(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        """The (T, H, W) a clip is padded to: T = 1 + t*k, H and W multiples of s."""
        t, s = self.temporal_factor, self.spatial_factor
        return 1 + -(-(frames - 1) // t) * t, -(-height // s) * s, -(-width // s) * s

    def token_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        """(T', H', W') of the token grid for a clip of (T, H, W)."""
        t, h, w = self.padded_size(frames, height, width)
        return 1 + (t - 1) // self.temporal_factor, h // self.spatial_factor, w // self.spatial_factor

    def pad(self, video: torch.Tensor | FrameVideo) -> torch.Tensor | FrameVideo:
        """Pad a (B, 3, T, H, W) clip to the stride by replicating the last frame and borders
        (a `FrameVideo`: the same frames, standing for the padded video)."""
        if isinstance(video, FrameVideo):
            return video.padded(self.padded_size(*video.size))
        _check_video(video)
        t, h, w = video.shape[-3:]
        tp, hp, wp = self.padded_size(t, h, w)
        if (tp, hp, wp) == (t, h, w):
            return video
        return F.pad(video, (0, wp - w, 0, hp - h, 0, tp - t), mode="replicate")

    # -- training ---------------------------------------------------------
    def forward(
        self, video: torch.Tensor, quant_mix: float = 1.0, keep: torch.Tensor | None = None, hysteresis: float = 0.0
    ) -> TokenizerOutput:
        """Encode, quantise and decode a padded clip (training and evaluation).

        `quant_mix` < 1 only during the continuous warm-up of training;
        `keep` (B,): latent channels kept per sample (the rate ladder's levels);
        `hysteresis` as in `encode`.
        """
        z = self.encoder(video)
        with torch.autocast(video.device.type, enabled=False):  # mixed-precision training: LFQ's entropy terms in float32
            q = self.quantizer(z.float(), mix=quant_mix, keep=keep, hysteresis=hysteresis)
        return TokenizerOutput(self.decoder(q.quantized), q)

    def level_bits(self, quality: int | None = None) -> int:
        """Bits per token of a quality level (None: the model's default level)."""
        levels = self.config.lfq.level_bits
        if quality is None:
            quality = self.config.lfq.default_quality
        if not 0 <= quality < len(levels):
            raise ValueError(f"quality {quality} is not available for {self.config.name} (levels 0..{len(levels) - 1})")
        return levels[quality]

    # -- codec ------------------------------------------------------------
    @torch.no_grad()
    def encode(self, video: torch.Tensor, bits: int | None = None, hysteresis: float = 0.0) -> torch.Tensor:
        """Tokens (B, T', H', W') int64 of a float video (B, 3, T, H, W) in [-1, 1].

        Any T >= 1, H and W are accepted; the clip is padded to the stride.
        `bits` < config.bits keeps only the first `bits` channels (a lower
        level of the rate ladder): tokens are then in [0, 2^bits).
        `hysteresis` > 0: a channel whose latent is smaller than it in
        magnitude keeps its previous latent frame's bit (`hysteresis_signs`;
        fewer bits after entropy coding, for a little distortion).
        """
        bits = self._check_bits(bits)
        z = self.encoder(self.pad(video))
        tokens = bits_to_indices(hysteresis_signs(z, hysteresis), dim=1)
        return tokens if bits == self.config.bits else tokens & ((1 << bits) - 1)

    @torch.no_grad()
    def decode(
        self, tokens: torch.Tensor, size: tuple[int, int, int] | None = None, bits: int | None = None
    ) -> torch.Tensor:
        """Video (B, 3, T, H, W) in [-1, 1] from tokens (B, T', H', W') of `bits` bits
        (default: all); missing channels are decoded as 0.

        `size` = (T, H, W) of the original clip crops the padding away;
        without it the padded size is returned.
        """
        return crop(self.decoder(self.latent_codes(tokens, bits)).clamp(-1, 1), size)

    def latent_codes(self, tokens: torch.Tensor, bits: int | None = None) -> torch.Tensor:
        """The decoder's input (B, K, T', H', W') for tokens (B, T', H', W') of
        `bits` bits: +-1 per kept channel, 0 for those a lower level drops."""
        bits = self._check_bits(bits)
        if tokens.dim() != 4:
            raise ValueError(f"tokens must be (B, T', H', W'), got shape {tuple(tokens.shape)}")
        if tokens.dtype.is_floating_point or tokens.min() < 0 or tokens.max() >= 2**bits:
            raise ValueError(f"tokens must be integers in [0, 2^{bits})")
        return level_codes(tokens, bits, self.config.bits).to(self._dtype)

    def _check_bits(self, bits: int | None) -> int:
        if bits is None:
            return self.config.bits
        if not 1 <= bits <= self.config.bits:
            raise ValueError(f"bits must be in 1..{self.config.bits}, got {bits}")
        return bits

    @property
    def _dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def device(self) -> torch.device:
        """Where the weights are (and so where the networks run)."""
        return next(self.parameters()).device


def crop(video: torch.Tensor, size: tuple[int, int, int] | None) -> torch.Tensor:
    """A decoded (padded) video cropped to `size` = (T, H, W); None keeps it whole."""
    if size is None:
        return video
    if any(a > b for a, b in zip(size, video.shape[-3:])):
        raise ValueError(f"size {size} is larger than the decoded clip {tuple(video.shape[-3:])}")
    t, h, w = size
    return video[:, :, :t, :h, :w]


def _check_video(video: torch.Tensor) -> None:
    if video.dim() != 5 or video.shape[1] != 3:
        raise ValueError(f"video must be (B, 3, T, H, W), got shape {tuple(video.shape)}")
    if not video.dtype.is_floating_point:
        raise ValueError(f"video must be float in [-1, 1], got {video.dtype}")
