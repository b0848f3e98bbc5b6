"""The bits entropy model 3 spends on tokens, as a differentiable function of their signs.

Refinement (`refine.py`) trades the decoder's error against the bits the
tokens cost. Under entropy model 3 a token's bits are -log2 of the
probability the prior's context net (`bitstream.context_net`) gives its
value from the signs of its decoded neighbours, so they can be computed for
a whole chunk at once, in torch, and differentiated in every sign: through
the token's own value and through the inputs of the neighbours it is a
context of.

The forward pass is the integer net (the same inputs, floors and clips; the
logit gap mapped through the net's table), so `chunk_bits` is what the
coder spends up to the coder's own rounding of the probabilities. Backward,
the floors pass the gradient straight through and the table is read as the
piecewise-linear curve through its logarithms.

Entropy model 4 codes a token's low bits with one net and the bits above
with a chain of nets, each also seeing all the bits below its own (its side
tokens): the token's bits are the sum of the chain's `NetRate`s, each
reading its own planes above its side planes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from tokcodec.bitstream.context_net import CURRENT, PREVIOUS, SIDE, ContextNet
from tokcodec.codec.lfq import bits_to_indices

__all__ = ["NetRate"]


class _Activation(torch.autograd.Function):
    """The net's activation clip(floor(a * scale), 0, 255), its gradient passed
    straight through the floor: scale where 0 <= floor(a * scale) <= 255, else
    0. One function rather than autograd through floor and clamp, whose
    backward makes four passes over the (N, 256) activations instead of one."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, scale: float) -> torch.Tensor:  # type: ignore[override]
        h = (a * scale).floor_()
        ctx.save_for_backward((h >= 0) & (h <= 255))
        ctx.scale = scale
        return h.clamp_(0, 255)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        inside, = ctx.saved_tensors
        return grad * inside * ctx.scale, None


class NetRate(torch.nn.Module):
    """A `ContextNet` as a torch function from token signs to bits. A net with
    side tokens (a net above the first of model 4's chain, ``side_bits`` S) prices the planes
    S .. S + bits - 1 of the signs it is given, planes 0 .. S - 1 being its side tokens."""

    def __init__(self, net: ContextNet):
        super().__init__()
        self.bits, self.side_bits = net.bits, net.side_bits
        self.shifts = tuple(2.0 ** -s for s in net.shifts)
        for i, (w, b) in enumerate(zip(net.weights, net.biases)):
            self.register_buffer(f"w{i + 1}", torch.as_tensor(w, dtype=torch.float32))
            self.register_buffer(f"b{i + 1}", torch.as_tensor(b, dtype=torch.float32))
        self.register_buffer("log_table", torch.log(torch.as_tensor(net.table, dtype=torch.float64)).float())
        self.register_buffer("log_slopes", torch.cat([self.log_table.diff(), self.log_table.new_zeros(1)]))

    def inputs(self, signs: torch.Tensor, history: torch.Tensor | None, first: int,
               side: torch.Tensor | None = None) -> torch.Tensor:
        """(T H W, F) inputs of the tokens of `signs` (K, T, H, W) in {-1, +1}
        (rows in (t, y, x) order), frame 0 of which is frame `first` of its
        chunk; `history` (K, <= 2, H, W): the chunk's frames just before it
        (None or empty: none); `side` (S, T, H, W): the side tokens' signs
        (a net with side tokens); as `context_net.chunk_inputs` builds them."""
        K, T, H, W = signs.shape
        past = signs.new_zeros(K, 0, H, W) if history is None else history[:, -2:].to(signs.dtype)
        past = torch.cat([signs.new_zeros(K, 2 - past.shape[1], H, W), past], dim=1)
        frames = F.pad(torch.cat([past, signs], dim=1), (2, 2, 2, 2))  # frame t at t + 2, 2 zeros around
        parts = [frames[:, 2:2 + T, 2 + dy:2 + dy + H, 2 + dx:2 + dx + W] for dy, dx in CURRENT]
        parts += [frames[:, 1:1 + T, 2 + dy:2 + dy + H, 2 + dx:2 + dx + W] for dy, dx in PREVIOUS]
        parts.append(frames[:, 0:T, 2:2 + H, 2:2 + W])
        x = torch.stack(parts).permute(2, 3, 4, 0, 1).reshape(T * H * W, -1)  # input i*K + k: sign k of input token i
        if self.side_bits:
            padded = F.pad(side, (2, 2, 2, 2))
            near = torch.stack([padded[:, :, 2 + dy:2 + dy + H, 2 + dx:2 + dx + W] for dy, dx in SIDE])
            x = torch.cat([x, near.permute(2, 3, 4, 0, 1).reshape(T * H * W, -1)], dim=1)
        t = torch.arange(first, first + T, device=signs.device).repeat_interleave(H * W)
        flags = torch.stack([t == 0, t == 1], dim=1).to(x.dtype)
        return torch.cat([x, flags], dim=1)

    def log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 2**K) natural-log probabilities of the values from inputs x (N, F)."""
        s1, s2, g = self.shifts
        h = _Activation.apply(torch.addmm(self.b1, x, self.w1), s1)
        h = _Activation.apply(torch.addmm(self.b2, h, self.w2), s2)
        z = torch.addmm(self.b3, h, self.w3)
        last = len(self.log_table) - 1
        u = ((z.max(dim=1, keepdim=True).values - z) * g).clamp(max=last)
        i = torch.floor(u.detach().nan_to_num(nan=0.0)).long()  # a NaN latent gives NaN bits, not a bad index
        # The table's value forward; backward the slope of the curve through its logarithms
        # on the segment [i0, i0 + 1] that holds u.
        slope = self.log_slopes[i.clamp(max=max(last - 1, 0))]
        weight = self.log_table[i] + slope * (u - u.detach())
        return torch.log_softmax(weight, dim=1)

    def chunk_bits(self, signs: torch.Tensor, history: torch.Tensor | None = None, first: int = 0) -> torch.Tensor:
        """The bits of the tokens of `signs` (K, T, H, W) in {-1, +1} (K >= the
        net's bits plus its side bits; only planes side_bits .. side_bits +
        bits - 1 are coded, the planes below being side tokens), a scalar;
        `history` and `first` as in `inputs`. Differentiable in `signs` and
        `history` (straight-through codes give a gradient per latent)."""
        own = slice(self.side_bits, self.side_bits + self.bits)
        side = signs[: self.side_bits].float()
        signs = signs[own].float()
        if history is not None:
            history = history[own].float()
        with torch.autocast(signs.device.type, enabled=False):  # integer sums up to 2**24 need float32
            logp = self.log_probs(self.inputs(signs, history, first, side))
        own = signs.permute(1, 2, 3, 0).reshape(-1, self.bits)  # (N, K)
        # The token's value v and its K neighbours v ^ 2**k (bit k flipped).
        value = bits_to_indices(own.detach() > 0)[:, None]  # (N, 1)
        at_value = logp.gather(1, value)
        flipped = logp.gather(1, value ^ (1 << torch.arange(self.bits, device=own.device))).detach()
        # The token's own signs, read as the multilinear one-hot prod_k (1 + s_k sign_k(v)) / 2 of
        # its value, get d/ds_k = s_k (logp[v] - logp[v ^ 2**k]) / 2 at s = +-1: gathered, not
        # built over all 2**K values (whose product's backward was a quarter of the pricing's time).
        own_grad = own.detach() * (at_value.detach() - flipped) / 2
        return -(at_value.sum() + ((own - own.detach()) * own_grad).sum()) / math.log(2)
