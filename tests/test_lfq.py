"""Lookup-free quantisation: index/bit maps, entropy penalty, gradients, factorisation."""

import itertools

import numpy as np
import pytest
import torch

from tokcodec.codec import LFQ, LFQConfig, bits_to_indices, indices_to_bits, merge_tokens, split_tokens
from tokcodec.codec.lfq import bit_changes, entropy_terms, hysteresis_signs, indices_to_codes


@pytest.mark.parametrize("k", [1, 4, 10])
def test_index_bits_round_trip_all_codes(k):
    idx = torch.arange(2**k)
    bits = indices_to_bits(idx, k, dim=-1)
    assert bits.shape == (2**k, k)
    assert torch.equal(bits_to_indices(bits, dim=-1), idx)
    # Bit i of token n is exactly (n >> i) & 1: the MAGVIT-v2 index sum_i 2^i 1{z_i > 0}.
    expected = torch.tensor([[(n >> i) & 1 for i in range(k)] for n in range(2**k)], dtype=torch.bool)
    assert torch.equal(bits, expected)
    assert len(set(map(tuple, bits.tolist()))) == 2**k  # all codes distinct


def test_quantiser_tokens_follow_sign_rule():
    torch.manual_seed(0)
    z = torch.randn(2, 10, 3, 4, 5)
    out = LFQ(LFQConfig(bits=10)).eval()(z)
    assert out.tokens.shape == (2, 3, 4, 5) and out.tokens.dtype == torch.int64
    assert torch.equal(out.quantized, torch.where(z > 0, 1.0, -1.0))
    assert torch.equal(out.tokens, (((z > 0).long()) * (2 ** torch.arange(10)).view(1, -1, 1, 1, 1)).sum(1))
    assert torch.equal(indices_to_codes(out.tokens, 10), out.quantized)


def _brute_force_entropies(z: np.ndarray, temperature: float) -> tuple[float, float]:
    """E[H(q(z))] and H[E(q(z))] over every code of a small codebook, in float64."""
    k = z.shape[1]
    codes = np.array(list(itertools.product([-1.0, 1.0], repeat=k)))
    logits = -((z[:, None, :] - codes[None]) ** 2).sum(-1) / temperature
    logits -= logits.max(1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(1, keepdims=True)
    per_sample = -(p * np.log(np.maximum(p, 1e-300))).sum(1).mean()
    avg = p.mean(0)
    codebook = -(avg * np.log(np.maximum(avg, 1e-300))).sum()
    return per_sample, codebook


@pytest.mark.parametrize("temperature", [0.5, 0.05])
def test_entropy_penalty_exact_matches_brute_force(temperature):
    torch.manual_seed(1)
    z = torch.randn(200, 5) * 0.3
    per_sample, codebook = entropy_terms(z.double(), temperature, group_bits=5)
    bf_ps, bf_cb = _brute_force_entropies(z.double().numpy(), temperature)
    assert per_sample.item() == pytest.approx(bf_ps, rel=1e-9, abs=1e-12)
    assert codebook.item() == pytest.approx(bf_cb, rel=1e-9, abs=1e-12)


def test_entropy_penalty_subgroups_match_brute_force_per_group():
    # Large codebooks split the bits into groups; per-sample entropy stays
    # exact (the soft assignment factorises over bits), codebook entropy
    # becomes the sum of the groups' entropies.
    torch.manual_seed(2)
    z = torch.randn(300, 6) * 0.4
    per_sample, codebook = entropy_terms(z.double(), 0.3, group_bits=3)
    exact_ps, _ = _brute_force_entropies(z.double().numpy(), 0.3)
    groups = [_brute_force_entropies(z[:, i : i + 3].double().numpy(), 0.3) for i in (0, 3)]
    assert per_sample.item() == pytest.approx(exact_ps, rel=1e-9)
    assert codebook.item() == pytest.approx(sum(g[1] for g in groups), rel=1e-9)


def test_lfq_loss_combines_commitment_and_entropy():
    cfg = LFQConfig(bits=4, commit_weight=0.3, entropy_weight=0.2, codebook_entropy_gamma=0.7,
                    entropy_temperature=0.5, entropy_group_bits=4)
    torch.manual_seed(3)
    z = torch.randn(2, 4, 1, 3, 3, dtype=torch.float64)
    out = LFQ(cfg).train()(z)
    flat = z.movedim(1, -1).reshape(-1, 4).numpy()
    bf_ps, bf_cb = _brute_force_entropies(flat, 0.5)
    commit = ((z - torch.where(z > 0, 1.0, -1.0)) ** 2).mean().item()
    assert out.loss.item() == pytest.approx(0.3 * commit + 0.2 * (bf_ps - 0.7 * bf_cb), rel=1e-9)


def test_large_codebook_entropy_is_finite_and_bounded():
    torch.manual_seed(4)
    out = LFQ(LFQConfig(bits=18)).train()(torch.randn(1, 18, 2, 4, 4))
    assert torch.isfinite(out.loss)
    # Two groups of 9 bits: the codebook entropy is at most 18 ln 2.
    assert 0 <= out.codebook_entropy.item() <= 18 * np.log(2) + 1e-6


def test_straight_through_gradient_is_nonzero():
    z = torch.randn(1, 10, 2, 3, 3, requires_grad=True)
    lfq = LFQ(LFQConfig(bits=10, commit_weight=0.0, entropy_weight=0.0))
    (lfq(z).quantized * torch.arange(1.0, 11).view(1, -1, 1, 1, 1)).sum().backward()
    # sign() has zero gradient; the straight-through estimator passes it as identity.
    assert torch.equal(z.grad, torch.arange(1.0, 11).view(1, -1, 1, 1, 1).expand_as(z))


def test_entropy_and_commitment_have_gradients():
    z = (torch.randn(1, 8, 1, 4, 4) * 0.1).requires_grad_()
    LFQ(LFQConfig(bits=8, entropy_group_bits=4)).train()(z).loss.backward()
    assert z.grad.abs().sum() > 0


@pytest.mark.parametrize("k", [10, 9, 18])
def test_token_factorisation_round_trip(k):
    rng = np.random.default_rng(k)
    tokens = np.arange(2**k) if k <= 10 else rng.integers(0, 2**k, size=5000)
    low, high = split_tokens(tokens, k)
    assert low.max() < 2 ** ((k + 1) // 2) and high.max() < 2 ** (k // 2)
    assert np.array_equal(merge_tokens(low, high, k), tokens)
    t = torch.from_numpy(tokens)
    lt, ht = split_tokens(t, k)
    assert torch.equal(merge_tokens(lt, ht, k), t)
    assert np.array_equal(lt.numpy(), low) and np.array_equal(ht.numpy(), high)
    if k <= 10:  # every (low, high) pair occurs exactly once
        assert len(set(zip(low.tolist(), high.tolist()))) == 2**k


def test_hysteresis_holds_weak_latents_and_only_those():
    torch.manual_seed(0)
    z = torch.randn(2, 6, 9, 4, 5)
    plain = z > 0
    held = hysteresis_signs(z, 0.5)
    assert torch.equal(hysteresis_signs(z, 0.0), plain)
    strong = z.abs() >= 0.5
    assert torch.equal(held[strong], plain[strong])  # decided latents keep their sign
    assert torch.equal(held[:, :, 0], plain[:, :, 0])  # nothing to hold on a chunk's first frame
    weak = ~strong[:, :, 1:]
    assert torch.equal(held[:, :, 1:][weak], held[:, :, :-1][weak])  # weak ones repeat the previous frame
    # so the bits change over time less often than plain signs do
    changes = lambda b: (b[:, :, 1:] != b[:, :, :-1]).sum()  # noqa: E731
    assert changes(held) < changes(plain)


def test_hysteresis_continues_from_a_previous_step():
    torch.manual_seed(1)
    z = torch.randn(1, 4, 6, 3, 3)
    whole = hysteresis_signs(z, 0.7)
    first = hysteresis_signs(z[:, :, :2], 0.7)
    rest = hysteresis_signs(z[:, :, 2:], 0.7, previous=first[:, :, -1])
    assert torch.equal(torch.cat([first, rest], dim=2), whole)
    with pytest.raises(ValueError, match=">= 0"):
        hysteresis_signs(z, -0.1)


def test_bit_changes_counts_kept_bits_that_flip_between_latent_frames():
    codes = torch.tensor([1.0, 1, -1, -1, 1]).view(1, 1, 5, 1, 1).repeat(1, 3, 1, 1, 1)
    codes[:, 1] = 1  # a channel that never changes
    mask = torch.tensor([1.0, 1, 0]).view(1, 3, 1, 1, 1)  # the third channel is dropped
    assert bit_changes(codes, mask).item() == 2  # channel 0 flips twice; channel 2 is not counted
    z = codes.clone().requires_grad_(True)
    bit_changes(z, mask).backward()
    assert z.grad[:, 2].abs().sum() == 0 and z.grad[:, 0].abs().sum() > 0
