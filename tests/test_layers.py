"""norm -> SiLU -> convolution in one pass (`norm_silu_padded`), with and
without autograd, against the plain ops."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tokcodec.codec import LFQConfig, Tokenizer, TokenizerConfig
from tokcodec.codec import layers
from tokcodec.codec.layers import NormSiluPad, frame_group_norm, silu_into_padded, upsample_latent
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


def plain_norm_silu_padded(x, groups, scale, shift, padding, continuing=False):
    """`NormSiluPad` as plain autograd ops."""
    return reference(frame_group_norm(x, groups), padding, scale, shift, continuing)


GRIDS = [((1, 1, 1), False), ((9, 12, 10), False), ((3, 6, 5), False), ((3, 3, 5), False), ((3, 6, 5), True),
         ((1, 6, 5), True)]


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
@pytest.mark.parametrize("padding", [(1, 1, 1, 1, 2), (0, 0, 0, 0, 0), (1, 1, 1, 1, 0), (0, 0, 0, 0, 2)])
@pytest.mark.parametrize("grid,continuing", GRIDS)
@pytest.mark.parametrize("one_frame", [False, True])
def test_norm_silu_pad_backward_is_autograds(layout, padding, grid, continuing, one_frame) -> None:
    """The hand-written backward gives autograd's gradients of the plain ops
    for x, scale and shift, in float64: per channel (a batch of 1, as the
    encoder's norms) or on the latent's grid (frame 0 alone; continuing, each
    latent frame for 3 frames, or one for all), one frame or several, any
    padding, x in either layout or neither (a transposed view)."""
    g = torch.Generator().manual_seed(3)
    frames = (3 if continuing else 1) if one_frame else (12 if continuing else 9)
    if one_frame or grid[0] == 1:
        grid = (1, *grid[1:])
    x = torch.randn(2, 8, frames, 12, 10, generator=g, dtype=torch.float64) * 3 + 1
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last_3d)
    elif layout == "strided":
        x = x.transpose(3, 4).contiguous().transpose(3, 4)
    batch = 1 if grid == (1, 1, 1) else 2
    scale, shift = (torch.randn(batch, 8, *grid, generator=g, dtype=torch.float64) for _ in range(2))
    ours = [v.clone().requires_grad_(True) for v in (x, scale, shift)]
    plain = [v.clone().requires_grad_(True) for v in (x, scale, shift)]
    out = NormSiluPad.apply(*ours, 4, padding, continuing)
    expected = plain_norm_silu_padded(plain[0], 4, plain[1], plain[2], padding, continuing)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    weights = torch.randn(out.shape, generator=g, dtype=torch.float64)
    (out * weights).sum().backward()
    (expected * weights).sum().backward()
    for a, b in zip(ours, plain):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-10)


def test_norm_silu_pad_passes_gradcheck() -> None:
    """Finite differences agree, on a coarse grid with frame 0 alone and every border padded."""
    g = torch.Generator().manual_seed(4)
    x, scale, shift = (torch.randn(1, 4, *size, generator=g, dtype=torch.float64, requires_grad=True)
                       for size in ((5, 4, 6), (2, 2, 3), (2, 2, 3)))
    assert torch.autograd.gradcheck(lambda *v: NormSiluPad.apply(*v, 2, (1, 1, 1, 1, 2), False), (x, scale, shift))


def test_norm_silu_pad_in_bfloat16_channels_last() -> None:
    """In channels-last bfloat16 (sums as products with ones, rounded to
    bfloat16) the gradients are as close to float64's as the plain ops'
    in bfloat16 are (0.5% here), and keep the layout."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(1, 32, 5, 24, 32, generator=g, dtype=torch.float64) * 2 + 0.5
    scale, shift = (torch.randn(1, 32, 2, 12, 16, generator=g, dtype=torch.float64) for _ in range(2))
    weights = torch.randn(1, 32, 5, 26, 34, generator=g, dtype=torch.float64)

    def grads(dtype: torch.dtype, plain: bool) -> list[torch.Tensor]:
        x_, scale_, shift_ = (v.to(dtype).contiguous(memory_format=torch.channels_last_3d).requires_grad_(True)
                              for v in (x, scale, shift))
        if plain:
            out = plain_norm_silu_padded(x_, 8, scale_, shift_, (1, 1, 1, 1, 0))
        else:
            out = NormSiluPad.apply(x_, scale_, shift_, 8, (1, 1, 1, 1, 0), False)
            assert out.dtype == dtype and out.is_contiguous(memory_format=torch.channels_last_3d)
        out.backward(weights.to(dtype))
        if not plain:
            assert x_.grad.is_contiguous(memory_format=torch.channels_last_3d)
        return [v.grad.double() for v in (x_, scale_, shift_)]

    exact = grads(torch.float64, plain=False)
    ours, plain = grads(torch.bfloat16, plain=False), grads(torch.bfloat16, plain=True)
    for e, o, p in zip(exact, ours, plain):
        assert (o - e).norm() / e.norm() < 1.25 * (p - e).norm() / e.norm()


@pytest.mark.parametrize("factorized", [True, False])
def test_one_pass_gives_what_the_plain_ops_give(factorized: bool, monkeypatch) -> None:
    """The networks in one pass (without autograd: in place; with it, as
    `NormSiluPad`) compute what the plain ops (the ONNX export's) compute,
    whole and in streaming segments, and with autograd the same gradients of
    the input, the latent and every weight."""
    model = tokenizer(factorized)
    g = torch.Generator().manual_seed(2)
    video = torch.rand(1, 3, 17, 32, 48, generator=g) * 2 - 1
    latent = model.latent_codes(model.encode(video))

    def run(plain: bool):
        monkeypatch.setattr(layers, "exporting", lambda: plain)
        model.zero_grad()
        v, z = video.clone().requires_grad_(True), latent.clone().requires_grad_(True)
        with torch.enable_grad():
            z_out, frames = model.encoder(v), model.decoder(z)
            (z_out.square().mean() + (frames * video).mean()).backward()
        grads = [v.grad, z.grad] + [p.grad.clone() for p in model.parameters()]
        return z_out.detach(), frames.detach(), grads

    calls = []
    monkeypatch.setattr(layers, "silu_into_padded", lambda *a, **k: calls.append(1) or silu_into_padded(*a, **k))
    z_plain, frames_plain, grads_plain = run(plain=True)
    assert not calls
    z_one, frames_one, grads_one = run(plain=False)
    assert calls
    torch.testing.assert_close(z_one, z_plain, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(frames_one, frames_plain, rtol=1e-4, atol=1e-5)
    for ours, plain in zip(grads_one, grads_plain, strict=True):
        torch.testing.assert_close(ours, plain, rtol=1e-3, atol=1e-6)
    calls.clear()
    with torch.no_grad():
        torch.testing.assert_close(model.encoder(video), z_plain, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(encode_latent(model, video, segment_frames=5), z_plain, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(model.decoder(latent), frames_plain, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(decode_chunk(model, model.encode(video), segment_frames=5),
                                   frames_plain.clamp(-1, 1), rtol=1e-4, atol=1e-5)
    assert calls


@pytest.mark.parametrize("frames", [3, layers.FactorizedConv3d.LEAD_BY_CONVOLUTION])
def test_factorized_conv_takes_its_leading_frames_either_way(frames: int) -> None:
    """Below `LEAD_BY_CONVOLUTION` frames the padded input leaves out the
    temporal convolution's leading frames (it pads its own input), from there
    on it has them (the spatial convolution makes them): forward's result
    either way."""
    torch.manual_seed(6)
    conv = layers.FactorizedConv3d(4, 5)
    x = torch.randn(1, 4, frames, 6, 7)
    padding = conv.input_padding_for(frames)
    assert padding[4] == (0 if frames < conv.LEAD_BY_CONVOLUTION else 2)
    left, right, top, bottom, lead = padding
    padded = F.pad(x, (left, right, top, bottom, lead, 0), mode="replicate")
    with torch.no_grad():
        torch.testing.assert_close(conv.forward_padded(padded, padding), conv(x), rtol=1e-5, atol=1e-6)
