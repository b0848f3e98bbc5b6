"""The inference path of norm -> SiLU -> convolution against the plain one."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tokcodec.codec import LFQConfig, Tokenizer, TokenizerConfig
from tokcodec.codec import layers
from tokcodec.codec.layers import silu_into_padded, upsample_latent
from tokcodec.streaming.stateful import decode_chunk, encode_latent

from models import jittered_tokenizer


def reference(y, padding, scale=None, shift=None, continuing=False):
    """What the plain path computes: upsample, affine, SiLU, replicate padding."""
    if scale is not None:
        if scale.shape[-3:] != (1, 1, 1):  # (1, 1, 1) broadcasts as it is
            scale, shift = (upsample_latent(v, tuple(y.shape[-3:]), continuing) for v in (scale, shift))
        y = y * scale + shift
    left, right, top, bottom, lead = padding
    return F.pad(F.silu(y), (left, right, top, bottom, lead, 0), mode="replicate")


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("padding", [(1, 1, 1, 1, 2), (0, 0, 0, 0, 0), (1, 1, 1, 1, 0), (0, 0, 0, 0, 2)])
@pytest.mark.parametrize(
    "grid,continuing",
    [(None, False), ((1, 1, 1), False), ((9, 12, 10), False), ((3, 6, 5), False), ((3, 3, 5), False), ((3, 6, 5), True)],
)
def test_silu_into_padded_is_the_padded_silu_of_the_affine(channels_last, padding, grid, continuing) -> None:
    """Per channel, on the latent's coarser grid (frame 0 alone, or each latent
    frame for 3 frames while continuing), in either layout."""
    g = torch.Generator().manual_seed(1)
    frames = 12 if continuing else 9
    y = torch.randn(2, 4, frames, 12, 10, generator=g)
    if channels_last:
        y = y.contiguous(memory_format=torch.channels_last_3d)
    scale = shift = None
    if grid is not None:
        scale, shift = (torch.randn(2, 4, *grid, generator=g) for _ in range(2))
        if grid == (1, 1, 1):
            scale, shift = scale[:1], shift[:1]  # (1, C, 1, 1, 1): a per-channel affine
    out = silu_into_padded(y, padding, scale, shift, continuing)
    expected = reference(y, padding, scale, shift, continuing)
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    assert out.is_contiguous(memory_format=torch.channels_last_3d if channels_last else torch.contiguous_format)


def tokenizer(factorized: bool) -> Tokenizer:
    if factorized:
        return jittered_tokenizer()
    torch.manual_seed(0)
    cfg = TokenizerConfig(name="tiny-full", channels=(8, 16, 16), blocks_per_level=1, norm_groups=4, factorized=False,
                          spatial_downsample=4, patch_size=2, lfq=LFQConfig(bits=6))
    model = Tokenizer(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


@pytest.mark.parametrize("factorized", [True, False])
def test_inference_path_gives_what_the_autograd_path_gives(factorized: bool, monkeypatch) -> None:
    """Without autograd the norms write each convolution's padded input in
    place; with it (training, the encoder's refinement) the plain path runs.
    Both compute the same networks, whole and in streaming segments."""
    calls = []
    monkeypatch.setattr(layers, "silu_into_padded", lambda *a, **k: calls.append(1) or silu_into_padded(*a, **k))
    model = tokenizer(factorized)
    g = torch.Generator().manual_seed(2)
    video = torch.rand(1, 3, 17, 32, 48, generator=g) * 2 - 1
    tokens = model.encode(video)
    calls.clear()
    with torch.enable_grad():
        z_plain = model.encoder(video).detach()
        frames_plain = model.decoder(model.latent_codes(tokens)).detach()
    assert not calls
    with torch.no_grad():
        torch.testing.assert_close(model.encoder(video), z_plain, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(encode_latent(model, video, segment_frames=5), z_plain, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(model.decoder(model.latent_codes(tokens)), frames_plain, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(decode_chunk(model, tokens, segment_frames=5), frames_plain.clamp(-1, 1),
                                   rtol=1e-4, atol=1e-5)
    assert calls
