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


def reference_log_probs(rate: NetRate, x: torch.Tensor) -> torch.Tensor:
    """`NetRate.log_probs` through plain autograd: floors straight through, clamps, and
    the table's piecewise-linear curve, as it was written before its fused activation."""
    def floor(v: torch.Tensor) -> torch.Tensor:
        return v + (torch.floor(v) - v).detach()

    s1, s2, g = rate.shifts
    h = floor((x @ rate.w1 + rate.b1) * s1).clamp(0, 255)
    h = floor((h @ rate.w2 + rate.b2) * s2).clamp(0, 255)
    z = h @ rate.w3 + rate.b3
    last = len(rate.log_table) - 1
    u = ((z.max(dim=1, keepdim=True).values - z) * g).clamp(max=last)
    i = torch.floor(u.detach()).long()
    i0 = i.clamp(max=max(last - 1, 0))
    lo, hi = rate.log_table[i0], rate.log_table[(i0 + 1).clamp(max=last)]
    smooth = lo + (hi - lo) * (u - i0)
    return torch.log_softmax(smooth + (rate.log_table[i] - smooth).detach(), dim=1)


def product_form_bits(rate: NetRate, net, signs: torch.Tensor) -> torch.Tensor:
    """The bits as the multilinear one-hot of each token's value (prod_k (1 + s_k sign_k(v)) / 2
    over all 2**K values v) times the net's log-probabilities (`reference_log_probs`): what
    `chunk_bits` computed before it gathered; its gradient is the reference."""
    logp = reference_log_probs(rate, rate.inputs(signs, None, 0))
    value_signs = torch.as_tensor(net.signs_of(np.arange(2 ** net.bits)), dtype=torch.float32)
    own = signs.permute(1, 2, 3, 0).reshape(-1, 1, net.bits)
    one_hot = ((1 + own * value_signs) / 2).prod(dim=2)
    return -(one_hot * logp).sum() / np.log(2)


@pytest.mark.parametrize("bits", [3, 6])
def test_the_gradient_is_the_product_forms(bits: int) -> None:
    """`chunk_bits` gathers each token's log-probability and its bits' flips instead of
    building the one-hot product over every value, and runs the activations' floor and
    clip as one function: the same bits, the same gradient (through the token's own
    signs and through its neighbours' inputs)."""
    net = random_net(bits, seed=7)
    rate = NetRate(net)
    signs = signs_of(structured_tokens(2, 4, 7, 9, bits), bits)
    grads = []
    for f in (rate.chunk_bits, lambda s: product_form_bits(rate, net, s)):
        s = signs.clone().requires_grad_(True)
        total = f(s)
        total.backward()
        grads.append((float(total.detach()), s.grad))
    (bits_now, g_now), (bits_ref, g_ref) = grads
    assert bits_now == pytest.approx(bits_ref, rel=1e-6)
    assert g_ref.abs().max() > 0
    torch.testing.assert_close(g_now, g_ref, rtol=1e-5, atol=1e-5)


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
