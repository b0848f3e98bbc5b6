"""Training the context network of entropy model 3 on a tokenizer's tokens.

The net (`tokcodec.bitstream.context_net`) is trained in float32 with torch
to minimise the cross-entropy of each token given its inputs, i.e. the bits
the coder will spend, and then quantised to the integer net the coder runs:
weights to 8 bits with one power-of-two scale per layer, activations to
0..255 with a power-of-two scale each, chosen from the activations of the
training tokens. The quantised net's bits per token are measured on the
training tokens and reported next to the float net's.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from tokcodec.bitstream.context_net import ContextNet, chunk_inputs, n_inputs

_WEIGHT_MAX = 127
_ACT_MAX = 255
_GAP_STEPS_PER_NAT = 32  # resolution of the logit-gap table
_TABLE_TOP = 1 << 20


@dataclass(frozen=True)
class ContextNetConfig:
    """How the context net is trained. The shipped net (twenty-fifth session:
    two hidden layers of 256, 20,000 steps, 33 videos) spends 6% to 11% fewer
    bits on the eval clips than the one before (128 x 128, 6,000 steps, 8
    videos); on the same data the width alone gave 3% to 4%, and 512 x 256
    came within 1% of 256 x 256 for twice the compute (bench/RESULTS.md, "A
    wider context net")."""

    hidden: tuple[int, int] = (256, 256)
    steps: int = 20000
    batch: int = 4096
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0


@dataclass(frozen=True)
class FitReport:
    """Bits per token of the training tokens under the float net and the integer net."""

    tokens: int
    float_bits: float
    int_bits: float


def chunk_examples(chunk: np.ndarray, bits: int, side_bits: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(inputs (N, F) int8, token values (N,)) of every token of one (T, H, W)
    chunk: of its bits `side_bits` .. `side_bits + bits - 1`, the bits below
    being side tokens (a net of model 4's chain above its first; 0: whole tokens).
    The inputs are signs and flags, so int8 holds them in a quarter of float32's memory."""
    chunk = np.asarray(chunk, np.int64)
    tokens = (chunk >> side_bits) & ((1 << bits) - 1)
    return chunk_inputs(tokens, bits, chunk, side_bits).astype(np.int8), tokens.reshape(-1)


class _Net(nn.Sequential):
    def __init__(self, bits: int, hidden: tuple[int, int], side_bits: int = 0) -> None:
        super().__init__(nn.Linear(n_inputs(bits, side_bits), hidden[0]), nn.ReLU(), nn.Linear(hidden[0], hidden[1]),
                         nn.ReLU(), nn.Linear(hidden[1], 2 ** bits))


def fit_context_net(chunks: Iterable[np.ndarray], bits: int, config: ContextNetConfig = ContextNetConfig(),
                    side_bits: int = 0) -> tuple[ContextNet, FitReport]:
    """Train the integer context net of entropy model 3 on `bits`-bit token
    chunks; with `side_bits`, a net of model 4's chain above its first: it codes bits
    `side_bits` .. `side_bits + bits - 1` of the chunks' tokens given the
    bits below.

    Use training videos' tokens, never the clips you evaluate on.
    """
    pairs = [chunk_examples(c, bits, side_bits) for c in chunks if np.size(c)]
    if not pairs:
        raise ValueError("no tokens to fit a context net on")
    x = torch.from_numpy(np.concatenate([p[0] for p in pairs]))
    y = torch.from_numpy(np.concatenate([p[1] for p in pairs]))
    gen = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    net = _Net(bits, config.hidden, side_bits)
    opt = torch.optim.AdamW(net.parameters(), config.lr, weight_decay=config.weight_decay)
    # one cycle: warm up over 5% of the steps (at least 2), then anneal
    warmup = min(0.5, max(0.05, 2.5 / config.steps))
    sched = (torch.optim.lr_scheduler.OneCycleLR(opt, config.lr, total_steps=config.steps, pct_start=warmup)
             if config.steps >= 5 else None)
    for _ in range(config.steps):
        idx = torch.randint(len(y), (config.batch,), generator=gen)
        loss = nn.functional.cross_entropy(net(x[idx].float()), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
    net.eval()
    quantised = quantise(net, bits, x, side_bits)
    report = FitReport(len(y), _float_bits(net, x, y), int_bits(quantised, x.numpy(), y.numpy()))
    return quantised, report


def quantise(net: nn.Sequential, bits: int, x: torch.Tensor, side_bits: int = 0) -> ContextNet:
    """The integer net closest to `net`: per-layer power-of-two scales for the
    weights (at most 127 in magnitude) and for the activations (0..255,
    covering their 99.99th percentile on the inputs `x`)."""
    linears = [m for m in net if isinstance(m, nn.Linear)]
    with torch.no_grad():
        sample = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:200_000]].float()
        acts = [torch.relu(linears[0](sample))]
        acts.append(torch.relu(linears[1](acts[0])))
    q = [_weight_exponent(m.weight) for m in linears]
    m = [_act_exponent(a) for a in acts]
    # the scale of each layer's accumulator: inputs (2**m_prev) times weights (2**q)
    acc = [q[0], m[0] + q[1], m[1] + q[2]]
    shifts = [acc[0] - m[0], acc[1] - m[1]]
    if min(shifts) < 0:
        raise ValueError("context net quantisation: activations finer than the weights allow")
    weights, biases = [], []
    for i, lin in enumerate(linears):
        w = torch.round(lin.weight.detach().T * 2.0 ** q[i]).clamp(-_WEIGHT_MAX, _WEIGHT_MAX)
        b = lin.bias.detach() * 2.0 ** acc[i]
        if i < 2 and shifts[i] > 0:
            b = b + 2.0 ** (shifts[i] - 1)  # floor after the shift then rounds to nearest
        weights.append(w.to(torch.int64).numpy().astype(np.int32))
        biases.append(torch.round(b).to(torch.int64).numpy().astype(np.int32))
    g = acc[2] - int(math.log2(_GAP_STEPS_PER_NAT))
    if g < 0:
        raise ValueError("context net quantisation: logits too coarse for the gap table")
    return ContextNet(bits, tuple(weights), tuple(biases), (shifts[0], shifts[1], g), _gap_table(), side_bits)


def _weight_exponent(w: torch.Tensor) -> int:
    """The largest q with max |w| * 2**q <= 127."""
    return int(math.floor(math.log2(_WEIGHT_MAX / max(float(w.detach().abs().max()), 1e-6))))


def _act_exponent(a: torch.Tensor) -> int:
    """The largest m with the 99.99th percentile of a times 2**m <= 255."""
    top = float(torch.quantile(a.flatten()[:1_000_000].float(), 0.9999))
    return int(math.floor(math.log2(_ACT_MAX / max(top, 1e-6))))


def _gap_table() -> np.ndarray:
    """exp(-gap) in fixed point for gaps of 1/32 nat, down to 1."""
    n = int(math.ceil(_GAP_STEPS_PER_NAT * math.log(_TABLE_TOP))) + 1
    i = np.arange(n)
    return np.maximum(1, np.round(_TABLE_TOP * np.exp(-(i + 0.5) / _GAP_STEPS_PER_NAT))).astype(np.int64)


def _float_bits(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        total = sum(float(nn.functional.cross_entropy(net(xb.float()), yb, reduction="sum"))
                    for xb, yb in zip(x.split(65536), y.split(65536)))
    return total / len(y) / math.log(2)


def int_bits(net: ContextNet, x: np.ndarray, y: np.ndarray) -> float:
    """Bits per token the integer net's probabilities give the tokens y with inputs x
    ((N, F), `chunk_inputs` as float32 or int8; ideal coder)."""
    total = 0.0
    for lo in range(0, len(y), 65536):
        p = net.value_weights(x[lo:lo + 65536].astype(np.float32))
        total -= np.log2(p[np.arange(len(p)), y[lo:lo + 65536]] / p.sum(axis=1)).sum()
    return float(total / len(y))
