"""Building blocks of the causal 3D CNN tokenizer.

Tensors are laid out (B, C, T, H, W). Every layer here is causal in time:
output frame t depends on input frames <= t only. That is what lets the first
frame be encoded on its own (an image is a 1-frame video) and what lets the
streaming encoder run frame by frame with a cache.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _triple(v: int | tuple[int, int, int]) -> tuple[int, int, int]:
    return (v, v, v) if isinstance(v, int) else tuple(v)  # type: ignore[return-value]


class CausalConv3d(nn.Module):
    """3D convolution padded k_t - 1 frames before and none after.

    The temporal padding repeats the first frame, so a still image behaves
    like a static video. Spatial padding replicates the border (MAGVIT-v2
    replaces zero padding, which leaks a dark frame into every tile edge).
    With kernel 3 and temporal stride 2, 1 + 2m frames become 1 + m.
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int | tuple[int, int, int] = 3,
        stride: int | tuple[int, int, int] = 1,
    ) -> None:
        super().__init__()
        kt, kh, kw = _triple(kernel)
        self.kt, self.st = kt, _triple(stride)[0]
        self.pad = ((kw - 1) // 2, kw // 2, (kh - 1) // 2, kh // 2, kt - 1, 0)
        self.conv = nn.Conv3d(cin, cout, (kt, kh, kw), stride=_triple(stride))
        self.stream: StreamSlot | None = None  # set while a streaming wrapper drives the model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left, right, top, bottom, lead = self.input_padding
        if left or right or top or bottom or lead:
            x = F.pad(x, (left, right, top, bottom, lead, 0), mode="replicate")
        return self.forward_padded(x)

    def _after_cache(self, x: torch.Tensor, slot: "StreamSlot") -> torch.Tensor:
        """[cached frames, x], streaming; the frames that later outputs still
        need (kt - stride of them) become the new cache. With no cache yet (a
        chunk's first step) the first frame is replicated, as offline."""
        past = [slot.cache] if slot.cache is not None else [x[:, :, :1]] * (self.kt - 1)  # slices keep x's layout
        x = torch.cat([*past, x], dim=2)
        n = (x.shape[2] - self.kt) // self.st + 1
        slot.cache = x[:, :, n * self.st :]
        return x

    @property
    def streaming(self) -> bool:
        return self.stream is not None and self.kt > 1

    @property
    def input_padding(self) -> tuple[int, int, int, int, int]:
        """(left, right, top, bottom, leading frames): what `forward_padded`
        expects its input replicate-padded by. Streaming, the leading frames
        come from the cache instead."""
        return (*self.pad[:4], 0 if self.streaming else self.kt - 1)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        """forward(x) for an x already replicate-padded by `input_padding`."""
        return self.conv(self._after_cache(x, self.stream) if self.streaming else x)


class StreamSlot:
    """The temporal cache of one CausalConv3d while streaming (see streaming/)."""

    __slots__ = ("cache",)

    def __init__(self, cache: torch.Tensor | None = None) -> None:
        self.cache = cache


class FactorizedConv3d(nn.Sequential):
    """A (1,3,3) spatial convolution followed by a (3,1,1) temporal one.

    Same receptive field as a 3x3x3 convolution for 12/27 of its cost.
    """

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(CausalConv3d(cin, cout, (1, 3, 3)), CausalConv3d(cout, cout, (3, 1, 1)))

    @property
    def input_padding(self) -> tuple[int, int, int, int, int]:
        """The spatial convolution's border and the temporal one's leading frames."""
        return (*self[0].input_padding[:4], self[1].input_padding[4])

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        """forward(x) for an x already replicate-padded by `input_padding`. The
        spatial convolution works frame by frame, so the leading frames come
        out of it as the replicated first frame the temporal one needs: no copy."""
        return self[1].forward_padded(self[0].conv(x))


def conv3(cin: int, cout: int, factorized: bool) -> nn.Module:
    return FactorizedConv3d(cin, cout) if factorized else CausalConv3d(cin, cout, 3)


def is_channels_last(x: torch.Tensor) -> bool:
    """Whether x (B, C, T, H, W) is laid out channels-last (`codec.precision.fastest_memory_format`)."""
    return x.is_contiguous(memory_format=torch.channels_last_3d)


def keep_layout(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """y made channels-last where its input x was (an op that copied dropped it); else y as it is."""
    return y.contiguous(memory_format=torch.channels_last_3d) if is_channels_last(x) else y


def frame_group_norm(
    x: torch.Tensor,
    groups: int,
    eps: float = 1e-6,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Group norm with statistics per frame, never across time (and a
    per-channel affine where `weight` and `bias` are given).

    A group norm over (T, H, W) would let later frames change the
    normalisation of earlier ones and break causality.
    """
    b, c, t, h, w = x.shape
    if t == 1:  # one frame: the plain group norm, which keeps a channels-last input so (as 4D it does not)
        return F.group_norm(x, groups, weight, bias, eps)
    y = x.transpose(1, 2).reshape(b * t, c, h, w)
    y = F.group_norm(y, groups, weight, bias, eps)
    return y.reshape(b, t, c, h, w).transpose(1, 2)


def one_pass_inference() -> bool:
    """Whether norm -> SiLU -> convolution may take its inference path
    (`norm_silu_conv`), which writes into a buffer in place: nothing for
    autograd to record and no ONNX graph being traced."""
    return not (torch.is_grad_enabled() or torch.onnx.is_in_onnx_export() or torch.jit.is_tracing())


def silu_into_padded(
    y: torch.Tensor,
    padding: tuple[int, int, int, int, int],
    scale: torch.Tensor | None = None,
    shift: torch.Tensor | None = None,
    continuing: bool = False,
) -> torch.Tensor:
    """silu(y * scale + shift), replicate-padded by (left, right, top, bottom,
    leading frames), written once into the padded buffer.

    The plain path makes a full-size tensor for each of: the latent
    upsampled (in float32) and cast for its projection, the projection, the
    affine's product and sum, SiLU and the padding; this one reads y once
    and writes the buffer twice (affine, then SiLU in place: SiLU commutes
    with replication). `scale` and `shift` (together) broadcast
    to y, or lie on a coarser grid that `upsample_latent` (with `continuing`)
    maps onto y: the decoder's latent, never upsampled in memory.
    """
    b, c, t, h, w = y.shape
    left, right, top, bottom, lead = padding
    layout = torch.channels_last_3d if is_channels_last(y) else torch.contiguous_format
    out = torch.empty(
        (b, c, lead + t, top + h + bottom, left + w + right), dtype=y.dtype, device=y.device, memory_format=layout
    )
    inner = out[:, :, lead:, top : top + h, left : left + w]
    if scale is None:
        inner.copy_(y)
    elif continuing or scale.shape[2] in (1, t):
        _affine_into(inner, y, scale, shift)
    else:  # latent frame 0 stands for frame 0 alone, the others for r frames each
        _affine_into(inner[:, :, :1], y[:, :, :1], scale[:, :, :1], shift[:, :, :1])
        _affine_into(inner[:, :, 1:], y[:, :, 1:], scale[:, :, 1:], shift[:, :, 1:])
    if top:
        out[:, :, lead:, :top, left : left + w] = out[:, :, lead:, top : top + 1, left : left + w]
    if bottom:
        out[:, :, lead:, top + h :, left : left + w] = out[:, :, lead:, top + h - 1 : top + h, left : left + w]
    if left:
        out[:, :, lead:, :, :left] = out[:, :, lead:, :, left : left + 1]
    if right:
        out[:, :, lead:, :, left + w :] = out[:, :, lead:, :, left + w - 1 : left + w]
    if lead:
        out[:, :, :lead] = out[:, :, lead : lead + 1]
    return F.silu(out, inplace=True)


def _affine_into(out: torch.Tensor, y: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> None:
    """out = y * scale + shift, with scale and shift nearest-upsampled by whole
    factors in T, H and W: each such dimension is split into (coarse, repeat)
    and the parameters broadcast over the repeats."""
    for d in (4, 3, 2):  # last first, so that the earlier dimensions keep their index
        n, m = y.shape[d], scale.shape[d]
        if m not in (1, n):
            y, out = (v.unflatten(d, (m, n // m)) for v in (y, out))
            scale, shift = scale.unsqueeze(d + 1), shift.unsqueeze(d + 1)
    torch.addcmul(shift, y, scale, out=out)


class FrameGroupNorm(nn.Module):
    """Per-frame group norm with a learned per-channel affine."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.groups = groups
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        y = frame_group_norm(x, self.groups)
        return y * self.weight.view(1, -1, 1, 1, 1) + self.bias.view(1, -1, 1, 1, 1)

    def silu_padded(
        self, x: torch.Tensor, cond: torch.Tensor | None, padding: tuple[int, int, int, int, int]
    ) -> torch.Tensor:
        """silu(self(x)) replicate-padded by `padding`, in one pass (`silu_into_padded`)."""
        # In x's precision (CUDA's autocast would take float32); the kernel sums in float32.
        with torch.autocast(x.device.type, enabled=False):
            y = frame_group_norm(x, self.groups, weight=self.weight, bias=self.bias)
        return silu_into_padded(y, padding)


def upsample_latent(z: torch.Tensor, size: tuple[int, int, int], continuing: bool = False) -> torch.Tensor:
    """Nearest upsampling of a latent to (T, H, W) that respects causality.

    Latent frame 0 stands for video frame 0 alone and latent frame j >= 1 for
    the r frames (j-1)*r + 1 .. j*r, so frame 0 is kept and the rest repeated.
    `continuing`: z holds later latent frames only (a streaming step), each
    standing for T / T_z frames.
    """
    t, h, w = size
    tz, hz, wz = z.shape[-3:]
    latent = z
    if continuing:
        z = z.repeat_interleave(t // tz, dim=2)
    elif t != tz:
        r, rem = divmod(t - 1, max(tz - 1, 1))
        if rem or tz == 1 and t != 1:
            raise ValueError(f"cannot map {tz} latent frames onto {t} frames")
        z = torch.cat([z[:, :, :1], z[:, :, 1:].repeat_interleave(r, dim=2)], dim=2)
    if (h, w) != (hz, wz):
        z = z.repeat_interleave(h // hz, dim=3).repeat_interleave(w // wz, dim=4)
    return keep_layout(z, latent)  # repeat_interleave drops channels-last


class AdaptiveGroupNorm(nn.Module):
    """Per-frame group norm whose scale and shift come from the quantised latent.

    MAGVIT-v2 conditions every decoder resolution on the quantised latent this
    way, so that the code is re-injected after each upsampling.
    """

    def __init__(self, channels: int, groups: int, cond_channels: int) -> None:
        super().__init__()
        self.groups = groups
        self.continuing = False  # True during a streaming step after a chunk's first
        self.to_scale_shift = nn.Conv3d(cond_channels, 2 * channels, 1)
        # Start as a plain group norm with unit scale.
        nn.init.zeros_(self.to_scale_shift.weight)
        nn.init.zeros_(self.to_scale_shift.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        assert cond is not None, "AdaptiveGroupNorm needs the quantised latent"
        scale, shift = self.to_scale_shift(upsample_latent(cond, x.shape[-3:], self.continuing)).chunk(2, dim=1)
        return frame_group_norm(x, self.groups) * (1 + scale) + shift

    def silu_padded(
        self, x: torch.Tensor, cond: torch.Tensor | None, padding: tuple[int, int, int, int, int]
    ) -> torch.Tensor:
        """silu(self(x, cond)) replicate-padded by `padding`, in one pass
        (`silu_into_padded`). The 1x1x1 projection commutes with nearest
        upsampling, so it runs on the latent's grid, and stays there."""
        assert cond is not None, "AdaptiveGroupNorm needs the quantised latent"
        scale, shift = self.to_scale_shift(cond).chunk(2, dim=1)
        # In x's precision (CUDA's autocast would take float32); the kernel sums in float32.
        with torch.autocast(x.device.type, enabled=False):
            y = frame_group_norm(x, self.groups)
        return silu_into_padded(y, padding, (1 + scale).to(y.dtype), shift.to(y.dtype), self.continuing)


class ResBlock(nn.Module):
    """Pre-activation residual block: norm, SiLU, conv, norm, SiLU, conv.

    With `cond_channels` set, both norms are adaptive (decoder blocks).
    """

    def __init__(
        self, cin: int, cout: int, groups: int, factorized: bool, cond_channels: int | None = None
    ) -> None:
        super().__init__()

        def norm(c: int) -> nn.Module:
            return AdaptiveGroupNorm(c, groups, cond_channels) if cond_channels else FrameGroupNorm(c, groups)

        self.norm1, self.conv1 = norm(cin), conv3(cin, cout, factorized)
        self.norm2, self.conv2 = norm(cout), conv3(cout, cout, factorized)
        self.skip = nn.Identity() if cin == cout else CausalConv3d(cin, cout, 1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        h = norm_silu_conv(self.norm1, self.conv1, x, cond)
        h = norm_silu_conv(self.norm2, self.conv2, h, cond)
        return self.skip(x) + h


def norm_silu_conv(
    norm: FrameGroupNorm | AdaptiveGroupNorm, conv: nn.Module, x: torch.Tensor, cond: torch.Tensor | None = None
) -> torch.Tensor:
    """conv(silu(norm(x, cond))): in inference (`one_pass_inference`) the
    norm writes the convolution's padded input directly."""
    if one_pass_inference():
        return conv.forward_padded(norm.silu_padded(x, cond, conv.input_padding))
    return conv(F.silu(norm(x, cond)))


def depth_to_space(x: torch.Tensor, t: int, s: int, continuing: bool = False) -> torch.Tensor:
    """(B, C*t*s*s, T, H, W) -> (B, C, T*t - (t-1), H*s, W*s).

    The first latent frame stands for one frame only, so the t-1 frames it
    would expand to before it are dropped (causal temporal upsampling);
    `continuing` (a streaming step without the first frame) drops none.
    """
    b, c, tt, h, w = x.shape
    c_out = c // (t * s * s)
    channels_last = is_channels_last(x)
    x = x.reshape(b, c_out, t, s, s, tt, h, w)
    if channels_last:  # one copy straight into that layout
        x = x.permute(0, 5, 2, 6, 3, 7, 4, 1).reshape(b, tt * t, h * s, w * s, c_out).permute(0, 4, 1, 2, 3)
    else:
        x = x.permute(0, 1, 5, 2, 6, 3, 7, 4).reshape(b, c_out, tt * t, h * s, w * s)
    x = x if continuing else x[:, :, t - 1 :]
    # (reshape is a view, not that copy, where size-1 dimensions allow: then copy)
    return x.contiguous(memory_format=torch.channels_last_3d) if channels_last else x
