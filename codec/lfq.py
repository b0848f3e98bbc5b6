"""Lookup-free quantisation (MAGVIT-v2, arXiv 2310.05737, section 3.1).

The codebook is implicit: a K-channel latent z is quantised per channel to
q(z) = sign(z) in {-1, +1}^K, and its token is the integer whose bit i is
1{z_i > 0}. There is no embedding table to look up, so K can reach 18 bits
(262,144 codes) at no cost. Training adds two terms:

- a commitment loss ||z - sg(q(z))||^2 that keeps z near the corners, and
- an entropy penalty E[H(q(z))] - gamma * H[E(q(z))]: each latent should be
  confidently assigned (low per-sample entropy) while the batch as a whole
  uses the codebook evenly (high codebook entropy).

The soft assignment behind both entropies is softmax(-||z - c||^2 / tau)
over codes c. Because ||c||^2 is the same for every code, it factorises into
independent bits, so per-sample entropy is exact group by group; the
codebook entropy is exact when all K bits form one group and, for large K,
approximated by the sum of the entropies of sub-groups of bits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import LFQConfig

Tokens = TypeVar("Tokens", np.ndarray, torch.Tensor)


def bits_to_indices(bits: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Token index sum_i 2^i * 1{bit_i} of a boolean (or 0/1) tensor along `dim`."""
    k = bits.shape[dim]
    shape = [1] * bits.dim()
    shape[dim] = k
    weights = (2 ** torch.arange(k, device=bits.device, dtype=torch.int64)).view(shape)
    return (bits.to(torch.int64) * weights).sum(dim)


def indices_to_bits(indices: torch.Tensor, bits: int, dim: int = 1) -> torch.Tensor:
    """Inverse of bits_to_indices: a bool tensor with a new axis of size `bits` at `dim`."""
    shifts = torch.arange(bits, device=indices.device, dtype=torch.int64)
    out = (indices.to(torch.int64).unsqueeze(-1) >> shifts) & 1
    return out.bool().movedim(-1, dim)


def indices_to_codes(indices: torch.Tensor, bits: int, dim: int = 1) -> torch.Tensor:
    """Tokens to their {-1, +1} code vectors (what the decoder consumes)."""
    return indices_to_bits(indices, bits, dim).float() * 2 - 1


def level_codes(indices: torch.Tensor, bits: int, channels: int, dim: int = 1) -> torch.Tensor:
    """Codes of `bits`-bit tokens for a `channels`-channel latent: +-1 for the
    kept channels, 0 for those a lower level of the rate ladder drops."""
    codes = indices_to_codes(indices, bits, dim)
    if bits == channels:
        return codes
    shape = list(codes.shape)
    shape[dim] = channels - bits
    return torch.cat([codes, codes.new_zeros(shape)], dim=dim)


def split_tokens(tokens: Tokens, bits: int) -> tuple[Tokens, Tokens]:
    """Factorise K-bit tokens into two sub-tokens (MAGVIT-v2 token factorisation).

    The low sub-token holds the first ceil(K/2) bits and the high one the
    remaining floor(K/2), so a 2^18 vocabulary becomes two of 2^9 for the
    generative models. Works on numpy arrays and torch tensors alike.
    """
    low_bits = (bits + 1) // 2
    return tokens & ((1 << low_bits) - 1), tokens >> low_bits


def merge_tokens(low: Tokens, high: Tokens, bits: int) -> Tokens:
    """Inverse of split_tokens."""
    return low | (high << ((bits + 1) // 2))


# Encoder-side rate control (no decoder change): a latent whose magnitude is
# below the threshold is barely decided between its two signs, so keeping the
# sign it had in the previous latent frame costs little distortion and makes
# that bit predictable for the entropy coder's temporal contexts. The default
# was chosen by measurement (bench/RESULTS.md, "Encoder hysteresis"): at 0.2
# the second run's tokens of natural video cost 5-9% fewer bits at an
# unchanged PSNR. With the GPU-trained weights it is a draw that depends on
# the clip and the metric (BD-rate against off: -19% to +29% by VMAF, +9% to
# +46% by PSNR-Y on natural clips, -12% to -32% on a static card); kept.
# `encode --hysteresis auto` chooses per chunk (streaming/rate_control.py).
DEFAULT_HYSTERESIS = 0.2


def hysteresis_signs(z: torch.Tensor, threshold: float, previous: torch.Tensor | None = None) -> torch.Tensor:
    """The bits 1{z > 0} of latents z (B, K, T, H, W), except that where |z| <
    `threshold` a bit repeats the one of the previous latent frame.

    `previous` (B, K, H, W) bool: the bits of the frame before z's first (a
    streaming encoder's last step); None starts afresh (a chunk's first frame
    is plain sign quantisation). `threshold` 0 gives plain 1{z > 0}.
    """
    if threshold < 0:
        raise ValueError(f"hysteresis threshold must be >= 0, got {threshold}")
    positive = z > 0
    if threshold == 0:
        return positive
    weak = z.abs() < threshold
    out = positive.clone()
    for t in range(z.shape[2]):
        prev = previous if t == 0 else out[:, :, t - 1]
        if prev is not None:
            out[:, :, t] = torch.where(weak[:, :, t], prev, positive[:, :, t])
    return out


def bit_changes(codes: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """How many kept bits differ between consecutive latent frames of `codes`
    (B, K, T, H, W) of +-1 (straight-through codes: differentiable); `mask`
    (broadcastable to codes) is 1 for kept channels, 0 for dropped ones.

    The entropy coder's temporal contexts make a repeated bit cheap and a
    changed one expensive, so this counts what a latent costs to send: the
    rate term of training (`TrainConfig.rate`) and of refinement."""
    change = (1 - codes[:, :, 1:] * codes[:, :, :-1]) / 2
    return (change * mask).sum()


def level_mask(keep: torch.Tensor, channels: int, like: torch.Tensor) -> torch.Tensor:
    """(B, channels, 1, 1, 1) mask, 1 for the first keep[b] channels of sample b."""
    idx = torch.arange(channels, device=like.device).view(1, -1, 1, 1, 1)
    return (idx < keep.to(like.device).view(-1, 1, 1, 1, 1)).to(like.dtype)


def _group_code_matrix(g: int, device: torch.device) -> torch.Tensor:
    """All 2^g codes of g bits as a (2^g, g) matrix of {-1, +1}, in index order."""
    return indices_to_codes(torch.arange(2**g, device=device), g, dim=-1)


def entropy_terms(z: torch.Tensor, temperature: float, group_bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean per-sample entropy, codebook entropy) of the soft code assignment.

    z: (N, K) latents. Bits are split into consecutive groups of at most
    `group_bits`; both entropies are sums over groups (exact for per-sample
    entropy, exact for codebook entropy when there is one group).
    """
    per_sample = z.new_zeros(())
    codebook = z.new_zeros(())
    for start in range(0, z.shape[1], group_bits):
        zg = z[:, start : start + group_bits]
        codes = _group_code_matrix(zg.shape[1], z.device).to(z.dtype)
        # -||z - c||^2 / tau up to a per-row constant, which softmax ignores.
        logits = 2 * zg @ codes.t() / temperature
        logp = F.log_softmax(logits, dim=-1)
        p = logp.exp()
        per_sample = per_sample - (p * logp).sum(-1).mean()
        avg = p.mean(0)
        codebook = codebook - (avg * torch.log(avg.clamp_min(1e-12))).sum()
    return per_sample, codebook


@dataclass
class LFQOutput:
    """Quantised latent (straight-through), tokens, auxiliary loss and diagnostics."""

    quantized: torch.Tensor  # (B, K, T, H, W), values +-1 forward, gradient of z backward
    tokens: torch.Tensor  # (B, T, H, W) int64
    loss: torch.Tensor  # commitment + entropy penalty, already weighted
    commitment: torch.Tensor
    per_sample_entropy: torch.Tensor
    codebook_entropy: torch.Tensor


class LFQ(nn.Module):
    """Lookup-free quantiser over the channel axis of (B, K, T, H, W) latents."""

    def __init__(self, config: LFQConfig) -> None:
        super().__init__()
        self.config = config

    def forward(
        self, z: torch.Tensor, with_entropy: bool | None = None, mix: float = 1.0, keep: torch.Tensor | None = None,
        hysteresis: float = 0.0,
    ) -> LFQOutput:
        """Quantise z. `mix` < 1 blends towards the continuous latent (a
        training warm-up: z + mix * (q - z) forward, identity gradient).
        `keep` (B,) = channels kept per sample (nested dropout): the others
        are 0 in `quantized`, as a decoder sees them at a lower level.
        `hysteresis` > 0 picks the signs as the encoder does (`hysteresis_signs`),
        so a decoder can be trained on the tokens that `encode` writes."""
        cfg = self.config
        if z.shape[1] != cfg.bits:
            raise ValueError(f"LFQ expects {cfg.bits} channels, got {z.shape[1]}")
        positive = hysteresis_signs(z.detach(), hysteresis)
        q = positive.to(z.dtype) * 2 - 1
        quantized = z + (mix * (q - z)).detach()  # straight-through estimator
        if keep is not None:
            quantized = quantized * level_mask(keep, cfg.bits, z)
        tokens = bits_to_indices(positive, dim=1)
        commitment = F.mse_loss(z, q.detach())
        zero = z.new_zeros(())
        per_sample, codebook = zero, zero
        if self.training if with_entropy is None else with_entropy:
            flat = z.movedim(1, -1).reshape(-1, cfg.bits)
            per_sample, codebook = entropy_terms(flat, cfg.entropy_temperature, cfg.entropy_group_bits)
        loss = cfg.commit_weight * commitment + cfg.entropy_weight * (
            per_sample - cfg.codebook_entropy_gamma * codebook
        )
        return LFQOutput(quantized, tokens, loss, commitment, per_sample, codebook)
