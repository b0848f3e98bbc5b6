"""Building blocks of the causal 3D CNN tokenizer.

Tensors are laid out (B, C, T, H, W). Every layer here is causal in time:
output frame t depends on input frames <= t only. That is what lets the first
frame be encoded on its own (an image is a 1-frame video) and what lets the
streaming encoder run frame by frame with a cache.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
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

    def input_padding_for(self, frames: int) -> tuple[int, int, int, int, int]:
        """`input_padding`, whatever the frames (as `FactorizedConv3d.input_padding_for`)."""
        return self.input_padding

    def forward_padded(self, x: torch.Tensor, padding: tuple[int, int, int, int, int] | None = None) -> torch.Tensor:
        """forward(x) for an x already replicate-padded by `input_padding`
        (which `padding`, if given, is)."""
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

    # From this many frames on, the temporal convolution's two leading frames
    # come out of the spatial one run on two more (replicated) frames; below,
    # from a copy of its output. The copy costs about a frame of convolution
    # for every 12 frames it copies: bfloat16 forward at 3 frames the spatial
    # half run on 5 took 47 ms against 33 padded after, at 33 frames 439
    # against 474 (256 channels, 60x80; bench/RESULTS.md, "The refinement's
    # backward by hand, and two steps").
    LEAD_BY_CONVOLUTION = 12

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(CausalConv3d(cin, cout, (1, 3, 3)), CausalConv3d(cout, cout, (3, 1, 1)))

    @property
    def input_padding(self) -> tuple[int, int, int, int, int]:
        """The spatial convolution's border and the temporal one's leading frames."""
        return (*self[0].input_padding[:4], self[1].input_padding[4])

    def input_padding_for(self, frames: int) -> tuple[int, int, int, int, int]:
        """The padding `forward_padded` takes for an input of `frames` frames:
        `input_padding`, without the leading frames below `LEAD_BY_CONVOLUTION`."""
        left, right, top, bottom, lead = self.input_padding
        return (left, right, top, bottom, lead if frames >= self.LEAD_BY_CONVOLUTION else 0)

    def forward_padded(self, x: torch.Tensor, padding: tuple[int, int, int, int, int] | None = None) -> torch.Tensor:
        """forward(x) for an x already replicate-padded by `padding` (default
        `input_padding`; or `input_padding_for` its frames). With the leading
        frames there, the spatial convolution, which works frame by frame,
        turns them into the replicated first frame the temporal one needs;
        without, the temporal one pads its input itself."""
        y = self[0].conv(x)
        return self[1].forward_padded(y) if (padding or self.input_padding)[4] else self[1](y)


def conv3(cin: int, cout: int, factorized: bool) -> nn.Module:
    return FactorizedConv3d(cin, cout) if factorized else CausalConv3d(cin, cout, 3)


def is_channels_last(x: torch.Tensor) -> bool:
    """Whether x (B, C, T, H, W) is laid out channels-last (`codec.precision.fastest_memory_format`)."""
    return x.is_contiguous(memory_format=torch.channels_last_3d)


def keep_layout(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """y made channels-last where its input x was (an op that copied dropped it); else y as it is."""
    return y.contiguous(memory_format=torch.channels_last_3d) if is_channels_last(x) else y


def frame_group_norm(x: torch.Tensor, groups: int, eps: float = 1e-6) -> torch.Tensor:
    """Group norm with statistics per frame, never across time.

    A group norm over (T, H, W) would let later frames change the
    normalisation of earlier ones and break causality.
    """
    return _unframe(F.group_norm(_frames(x), groups, eps=eps), x)


def _frames(x: torch.Tensor) -> torch.Tensor:
    """x (B, C, T, H, W) as (B * T, C, H, W), a view where x is channels-last;
    one frame stays 5D (the plain group norm keeps it channels-last so, 4D not)."""
    b, c, t, h, w = x.shape
    return x if t == 1 else x.transpose(1, 2).reshape(b * t, c, h, w)


def _unframe(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """`_frames`(x)'s shape back to x's."""
    b, c, t, h, w = x.shape
    return y if t == 1 else y.reshape(b, t, c, h, w).transpose(1, 2)


def exporting() -> bool:
    """Whether a graph is being traced for export (torch.onnx, torch.jit):
    norm -> SiLU -> convolution then runs as plain ops, nothing in place."""
    return torch.onnx.is_in_onnx_export() or torch.jit.is_tracing()


def norm_silu_padded(
    x: torch.Tensor,
    groups: int,
    scale: torch.Tensor,
    shift: torch.Tensor,
    padding: tuple[int, int, int, int, int],
    continuing: bool = False,
) -> torch.Tensor:
    """silu(frame_group_norm(x) * scale + shift), replicate-padded by
    `padding`, in one pass (`silu_into_padded`; scale and shift as there, in
    x's dtype); with autograd on, as `NormSiluPad`, whose backward is written
    out too."""
    # In x's precision (CUDA's autocast would take float32); the kernels sum in float32.
    with torch.autocast(x.device.type, enabled=False):
        if torch.is_grad_enabled():
            return NormSiluPad.apply(x, scale, shift, groups, padding, continuing)
        y, _ = normalize_frames(x, groups)
        return silu_into_padded(y, padding, scale, shift, continuing)


def normalize_frames(x: torch.Tensor, groups: int, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """`frame_group_norm` without affine, and its 1 / std (B * T, groups)."""
    b, c, t, h, w = x.shape
    frames = _frames(x)
    layout = torch.channels_last_3d if frames.dim() == 5 else torch.channels_last
    if not (frames.is_contiguous() or frames.is_contiguous(memory_format=layout)):  # as the kernel requires
        frames = frames.contiguous()
    y, _, rstd = torch.native_group_norm(frames, None, None, b * t, c, h * w, groups, eps)
    return _unframe(y, x), rstd


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
    else:
        _affine_into(inner, y, scale, shift, continuing)
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


def _latent_frames(t: int, tz: int, continuing: bool) -> list[tuple[slice, slice]]:
    """(frames, latent frames) that map onto each other by whole factors
    (`upsample_latent`): all onto all, or frame 0 onto latent frame 0 and the
    others onto the rest."""
    everything = slice(None)
    if continuing or tz in (1, t):
        return [(everything, everything)]
    return [(slice(0, 1), slice(0, 1)), (slice(1, None), slice(1, None))]


def _split_repeats(
    y: torch.Tensor, *params: torch.Tensor, whole: bool = False
) -> tuple[torch.Tensor, list[torch.Tensor], list[int]]:
    """y and the params (whose T, H and W divide y's) as views in which the
    params broadcast: each dimension that needs it (`whole`: also where
    the params have 1) split into (coarse, repeat), the params given a
    repeat dimension of 1. Also the repeat dimensions, as indices of the
    split y, in increasing order."""
    repeats = []
    for d in (4, 3, 2):  # last first, so that the earlier dimensions keep their index
        n, m = y.shape[d], params[0].shape[d]
        if m != n and (whole or m != 1):
            y = y.unflatten(d, (m, n // m))
            params = tuple(p.unsqueeze(d + 1) for p in params)
            repeats = [d + 1] + [r + 1 for r in repeats]
    return y, list(params), repeats


def _affine_into(
    out: torch.Tensor, y: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor | None, continuing: bool = False
) -> None:
    """out = y * scale + shift (or y * scale; out may be y), scale and shift
    broadcast, or nearest-upsampled from a coarser grid (`upsample_latent`)
    through views (`_split_repeats`), never in memory."""
    for fine, coarse in _latent_frames(y.shape[2], scale.shape[2], continuing):
        params = (scale[:, :, coarse],) + (() if shift is None else (shift[:, :, coarse],))
        out_split, _, _ = _split_repeats(out[:, :, fine], *params)
        y_split, params, _ = _split_repeats(y[:, :, fine], *params)
        if shift is None:
            torch.mul(y_split, params[0], out=out_split)
        else:
            torch.addcmul(params[1], y_split, params[0], out=out_split)


def _sum_repeats(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """v summed onto the grid of `like` (whose T, H and W divide v's, or
    are 1: the whole dimension), in float32 at least: the adjoint of
    broadcasting `like` as `_affine_into` does. Repeats are added slice by
    slice: torch's reduction over such strided dimensions is many times slower."""
    if like.shape[2:] == (1, 1, 1):  # per channel
        sums = _pixel_sums(v).sum(2)
        return (sums.sum(0) if like.shape[0] == 1 else sums).view(like.shape[:2] + (1, 1, 1))
    split, _, repeats = _split_repeats(v, like, whole=True)
    parts = [split]
    for d in reversed(repeats):  # the last first, so that the earlier keep their index
        parts = [p.select(d, k) for p in parts for k in range(p.shape[d])]
    total = parts[0].to(torch.promote_types(v.dtype, torch.float32), copy=True)
    for p in parts[1:]:
        total += p
    return total.sum(0, keepdim=True) if like.shape[0] == 1 < v.shape[0] else total


def _pixel_sums(v: torch.Tensor) -> torch.Tensor:
    """(B, C, T): v (B, C, T, H, W) summed over each frame, in float32 at
    least, or channels-last as a product with ones (in v's dtype, if bfloat16:
    20 to 30 times faster than torch's sum over the strided H and W)."""
    b, c, t, h, w = v.shape
    if not is_channels_last(v):
        return v.sum((3, 4), dtype=torch.promote_types(v.dtype, torch.float32))
    pixels = v.permute(0, 2, 3, 4, 1).reshape(b * t, h * w, c)
    return torch.matmul(v.new_ones(1, h * w), pixels).view(b, t, c).transpose(1, 2)


def _fold_padding(grad: torch.Tensor, padding: tuple[int, int, int, int, int]) -> torch.Tensor:
    """The gradient of what `silu_into_padded` replicate-pads, from the
    padded buffer's: each border's gradient added onto the edge it copies,
    in the reverse order of the copies (on a copy of grad, which other
    branches of the graph may share)."""
    left, right, top, bottom, lead = padding
    if not any(padding):
        return grad
    g = grad.clone()
    if lead:
        g[:, :, lead] += g[:, :, :lead].sum(2)
    g = g[:, :, lead:]
    h, w = g.shape[3] - top - bottom, g.shape[4] - left - right
    if right:
        g[..., left + w - 1] += g[..., left + w :].sum(-1)
    if left:
        g[..., left] += g[..., :left].sum(-1)
    g = g[..., left : left + w]
    if bottom:
        g[..., top + h - 1, :] += g[..., top + h :, :].sum(-2)
    if top:
        g[..., top, :] += g[..., :top, :].sum(-2)
    return g[..., top : top + h, :]


def _group_norm_backward(g: torch.Tensor, y: torch.Tensor, rstd: torch.Tensor, groups: int) -> torch.Tensor:
    """The gradient of x for y = `normalize_frames`(x) from y's, g (consumed):
    rstd * (g - mean(g) - y * mean(g * y)), the means over each frame's
    group. (torch's own kernel is several times slower on channels-last
    bfloat16.)"""
    b, c, t, h, w = y.shape
    sums = torch.stack([_pixel_sums(g), _pixel_sums(g * y)]).to(rstd.dtype)  # (2, B, C, T)
    means = sums.view(2, b, groups, c // groups, t).mean(3, keepdim=True) / (h * w)  # (2, B, G, 1, T)
    r = rstd.view(b, t, groups).transpose(1, 2).unsqueeze(2)  # (B, G, 1, T)
    per_channel = torch.stack([r, -r * means[0], -r * means[1]]).expand(3, b, groups, c // groups, t)
    # (B, C, T, 1, 1) in g's layout: broadcast along a strided channel dimension is slow
    layout = torch.channels_last_3d if is_channels_last(g) else torch.contiguous_format
    k_g, k_1, k_y = (k.contiguous(memory_format=layout)
                     for k in per_channel.reshape(3, b, c, t, 1, 1).to(g.dtype).unbind(0))
    torch.addcmul(k_1, g, k_g, out=g)
    return g.addcmul_(y, k_y)


class NormSiluPad(torch.autograd.Function):
    """`norm_silu_padded` under autograd: forward in one pass, backward by
    hand from the normalised x. Autograd through the plain ops stores and
    rereads several full-size tensors (the upsampled latent among them),
    and torch's group-norm and strided-sum kernels are slow on
    channels-last bfloat16: this took a quarter off the refinement's
    gradient step and 40% off its peak memory (bench/RESULTS.md)."""

    @staticmethod
    def forward(ctx, x, scale, shift, groups, padding, continuing):  # type: ignore[override]
        y, rstd = normalize_frames(x, groups)
        ctx.save_for_backward(y, rstd, scale, shift)
        ctx.groups, ctx.padding, ctx.continuing = groups, padding, continuing
        return silu_into_padded(y, padding, scale, shift, continuing)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        y, rstd, scale, shift = ctx.saved_tensors
        need_x, need_scale, need_shift = ctx.needs_input_grad[:3]
        with torch.autocast(grad.device.type, enabled=False):
            g = _fold_padding(grad, ctx.padding).to(y.dtype)
            pre = torch.empty_like(y)  # the activation's input, again
            _affine_into(pre, y, scale, shift, ctx.continuing)
            g = torch.ops.aten.silu_backward(g, pre)
            del pre
            g_scale = g_shift = g_x = None
            if need_scale:
                g_scale = _sum_onto(g * y, scale, ctx.continuing)
            if need_shift:
                g_shift = _sum_onto(g, shift, ctx.continuing)
            if need_x:
                _affine_into(g, g, scale, None, ctx.continuing)
                g_x = _group_norm_backward(g, y, rstd, ctx.groups)
        return g_x, g_scale, g_shift, None, None, None


def _sum_onto(v: torch.Tensor, param: torch.Tensor, continuing: bool) -> torch.Tensor:
    """The gradient of a param that `_affine_into` broadcasts (with
    `continuing`) from v, the output's: `_sum_repeats` onto its grid, in its dtype."""
    parts = _latent_frames(v.shape[2], param.shape[2], continuing)
    if len(parts) == 1:
        return _sum_repeats(v, param).to(param.dtype)
    return torch.cat([_sum_repeats(v[:, :, fine], param[:, :, coarse]) for fine, coarse in parts], 2).to(param.dtype)


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
        """silu(self(x)) replicate-padded by `padding`, in one pass (`norm_silu_padded`)."""
        per_channel = (v.to(x.dtype).view(1, -1, 1, 1, 1) for v in (self.weight, self.bias))
        return norm_silu_padded(x, self.groups, *per_channel, padding)


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
        (`norm_silu_padded`). The 1x1x1 projection commutes with nearest
        upsampling, so it runs on the latent's grid, and stays there."""
        assert cond is not None, "AdaptiveGroupNorm needs the quantised latent"
        scale, shift = self.to_scale_shift(cond).chunk(2, dim=1)
        return norm_silu_padded(x, self.groups, (1 + scale).to(x.dtype), shift.to(x.dtype), padding, self.continuing)


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
    """conv(silu(norm(x, cond))): the norm writes the convolution's padded
    input directly (`norm_silu_padded`); plain ops while `exporting`."""
    if exporting():
        return conv(F.silu(norm(x, cond)))
    padding = conv.input_padding_for(x.shape[2])
    return conv.forward_padded(norm.silu_padded(x, cond, padding), padding)


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


def checkpointed(block: nn.Module, *inputs: torch.Tensor) -> torch.Tensor:
    """block(*inputs), keeping only its inputs for the backward pass, which
    runs the block again (activation checkpointing): a block's activations
    at a large frame size are most of a refinement step's memory. What the
    block's modules hold during a streaming step (`CausalConv3d.stream`'s
    cache, `AdaptiveGroupNorm.continuing`) is captured now and set again
    for the second run, so that it recomputes what it computed; the
    streaming caches are updated as the plain call updates them."""
    convs = [m for m in block.modules() if isinstance(m, CausalConv3d) and m.streaming]
    slots = [conv.stream for conv in convs]
    flags = [(m, m.continuing) for m in block.modules() if isinstance(m, AdaptiveGroupNorm)]

    def run(*args: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
        own = [StreamSlot(cache) for cache in args[: len(convs)]]
        held = [(conv, conv.stream) for conv in convs] + [(m, m.continuing) for m, _ in flags]
        for conv, slot in zip(convs, own):
            conv.stream = slot
        for m, continuing in flags:
            m.continuing = continuing
        try:
            return (block(*args[len(convs) :]), *[slot.cache for slot in own])
        finally:
            for conv, stream in held[: len(convs)]:
                conv.stream = stream
            for m, continuing in held[len(convs) :]:
                m.continuing = continuing

    out, *caches = torch.utils.checkpoint.checkpoint(run, *[slot.cache for slot in slots], *inputs,
                                                     use_reentrant=False)
    for slot, cache in zip(slots, caches):
        slot.cache = cache
    return out
