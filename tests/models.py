"""Tiny tokenizers for the tests (no shipped weights needed)."""

from __future__ import annotations

import torch

from tokcodec.codec import LFQConfig, Tokenizer, TokenizerConfig


def jittered_tokenizer(seed: int = 0) -> Tokenizer:
    """A 10-bit tokenizer (levels 4 and 10) of 16-32-32 channels with every weight
    jittered: zero-initialised adaptive norms would hide the decoder's dependence
    on the latent."""
    torch.manual_seed(seed)
    cfg = TokenizerConfig(name="tiny", channels=(16, 32, 32), blocks_per_level=1, norm_groups=8,
                          lfq=LFQConfig(bits=10, levels=(4, 10)))
    model = Tokenizer(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model
