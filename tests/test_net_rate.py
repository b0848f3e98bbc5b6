"""The context net's bits as a torch function (tokcodec.streaming.net_rate), and refinement priced by it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tokcodec.bitstream.context_net import chunk_inputs
from tokcodec.codec.clips import frames_to_video
from tokcodec.codec.model import Tokenizer
from tokcodec.streaming.net_rate import NetRate
from tokcodec.streaming.refine import RefineConfig, encode_refined

from models import jittered_tokenizer
from test_context_net import random_net
from test_entropy import structured_tokens
from test_streaming import median_latent
from media import smooth_frames


def signs_of(tokens: np.ndarray, bits: int) -> torch.Tensor:
    """(K, T, H, W) float signs of (T, H, W) tokens."""
    return torch.as_tensor(((tokens[None] >> np.arange(bits).reshape(-1, 1, 1, 1)) & 1) * 2.0 - 1, dtype=torch.float32)


def ideal_bits(tokens: np.ndarray, net) -> float:
    """-sum log2 p(token) under the integer net: what the coder spends, but for its rounding."""
    w = net.value_weights(chunk_inputs(tokens, net.bits))
    p = w[np.arange(len(w)), tokens.reshape(-1)] / w.sum(axis=1)
    return float(-np.log2(p).sum())


@pytest.mark.parametrize("bits", [3, 6])
def test_the_bits_are_the_integer_nets(bits: int) -> None:
    net = random_net(bits)
    rate = NetRate(net)
    tokens = structured_tokens(bits, 5, 9, 12, bits)
    signs = signs_of(tokens, bits)
    assert torch.equal(rate.inputs(signs, None, 0), torch.from_numpy(chunk_inputs(tokens, bits)))
    whole = rate.chunk_bits(signs)
    assert float(whole) == pytest.approx(ideal_bits(tokens, net), rel=1e-5)
    # a chunk in parts, each with the frames before it as history, costs the same
    parts = sum(rate.chunk_bits(signs[:, a:b], signs[:, :a] if a else None, a) for a, b in ((0, 1), (1, 3), (3, 5)))
    assert float(parts) == pytest.approx(float(whole), rel=1e-5)
    # extra planes (a higher level's) are ignored
    more = torch.cat([signs, torch.ones(2, *signs.shape[1:])])
    assert float(rate.chunk_bits(more)) == float(whole)


def test_a_nan_latent_gives_nan_bits() -> None:
    """A diverged search step (NaN latents, e.g. from a bfloat16 SSIM gradient)
    must score NaN, so that refinement never keeps it, rather than crash."""
    rate = NetRate(random_net(3))
    signs = signs_of(structured_tokens(0, 2, 4, 5, 3), 3)
    signs[0, 1, 2, 3] = float("nan")
    assert torch.isnan(rate.chunk_bits(signs))


def test_the_gradient_points_to_cheaper_tokens() -> None:
    """Flipping the signs whose gradient says they cost most, one at a time, lowers the bits."""
    net = random_net(6, seed=3)
    rate = NetRate(net)
    tokens = structured_tokens(1, 4, 8, 10, 6)
    signs = signs_of(tokens, 6).requires_grad_(True)
    total = rate.chunk_bits(signs)
    total.backward()
    bits = float(total.detach())
    gain = (signs.grad * signs).flatten()  # d bits / d s times s: > 0 where flipping s should save bits
    lowered = 0
    for i in torch.argsort(gain, descending=True)[:20].tolist():
        flipped = signs.detach().clone().flatten()
        flipped[i] = -flipped[i]
        lowered += float(rate.chunk_bits(flipped.view_as(signs))) < bits
    assert lowered >= 15  # measured: 20 of 20 (20 random flips: 9)


def test_refinement_priced_by_a_net_spends_fewer_of_its_bits() -> None:
    """With a rate weight, refinement priced by the net ends with tokens the net
    codes in fewer bits than refinement without a rate term finds."""
    model: Tokenizer = jittered_tokenizer()
    frames = np.stack(smooth_frames(9, 48, 64))
    video = frames_to_video(frames)
    h = median_latent(model, frames)
    net = random_net(4, seed=5)
    rate = NetRate(net)

    def net_bits(tokens: torch.Tensor) -> float:
        return float(rate.chunk_bits(signs_of(tokens[0].numpy(), 4)))

    free = encode_refined(model, video, 4, h, RefineConfig(steps=6, rate=0.0), net=net)
    priced = encode_refined(model, video, 4, h, RefineConfig(steps=6, rate=50.0), net=net)
    assert net_bits(priced) < 0.8 * net_bits(free)  # measured: 0.52 x
    with pytest.raises(ValueError, match="4-bit"):
        encode_refined(model, video, None, h, RefineConfig(steps=1), net=net)  # 10-bit tokens
