"""The arithmetic the networks run in: float32, or bfloat16 where the hardware has it.

On a CPU with native bfloat16 (AVX512-BF16 or AMX) the tokenizer's
convolutions run about twice as fast under bfloat16 autocast, and what comes
out is what float32 gives to within a level or two of 8 bits: measured on
the natural eval clips at the default ladder point (bench/RESULTS.md,
"bfloat16 networks on the CPU"), PSNR-Y within 0.02 dB, the same bits,
98.5% to 98.7% of the tokens equal.
Elsewhere bfloat16 is emulated and slower, so "auto" takes it only where it
is native. Only the networks change: quantisation, entropy coding and the
bitstream are the same in every precision, and a file written in one
decodes in any other.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

PRECISIONS = ("auto", "fp32", "bf16")


def bf16_native(device: torch.device | str = "cpu") -> bool:
    """Whether `device` computes bfloat16 in hardware (a CUDA GPU that supports
    it; a CPU with AVX512-BF16 or AMX tiles)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:  # private helpers, present since torch 2.1; a torch without them gets float32
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:
        return False


def resolve_precision(precision: str, device: torch.device | str = "cpu") -> str:
    """"fp32" or "bf16": what `precision` ("auto", "fp32" or "bf16") means on `device`."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return "bf16" if bf16_native(device) else "fp32"
    return precision


def network_precision(precision: str, device: torch.device | str = "cpu") -> contextlib.AbstractContextManager:
    """A context in which the networks on `device` run in `precision` (autocast
    for bfloat16; nothing for float32). Callers take float32 back out."""
    if resolve_precision(precision, device) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def fastest_memory_format(x: torch.Tensor) -> torch.memory_format:
    """The memory layout in which the convolutions run fastest on `x` (B, C, T, H, W) here.

    Under bfloat16 autocast on a CPU, oneDNN runs channels-last (NDHWC)
    tensors without reordering them around every convolution: files code
    1.6x to 2x faster (bench/RESULTS.md, "Channels-last networks under
    bfloat16"). In float32 channels-last is slower there, and on a GPU it
    is not measured: those keep the default layout.
    """
    if x.device.type == "cpu" and torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16:
        return torch.channels_last_3d
    return torch.contiguous_format


def in_fastest_layout(network: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`x` in `fastest_memory_format`, with `network`'s weights moved to it too
    (once per change of layout). The layers keep the layout they are given,
    so a network calls this once, on its input. Training keeps the default."""
    layout = torch.contiguous_format if network.training else fastest_memory_format(x)
    if getattr(network, "_memory_format", torch.contiguous_format) != layout:
        network.to(memory_format=layout)
        network._memory_format = layout
    return x.contiguous(memory_format=layout)


def autocast_input(x: torch.Tensor) -> torch.Tensor:
    """x in the dtype that autocast hands convolutions (itself outside
    autocast): the decoder's latent feeds a dozen convolutions, and autocast
    would cast it again for each."""
    device = x.device.type
    if x.is_floating_point() and torch.is_autocast_enabled(device):
        return x.to(torch.get_autocast_dtype(device))
    return x
