"""bfloat16 networks (`codec.precision`): chosen only where asked or native, and
within rounding of float32 in every path that runs the networks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from media import smooth_frames
from models import jittered_tokenizer

from tokcodec.codec import Tokenizer
from tokcodec.codec.clips import frames_to_video, video_to_frames
from tokcodec.codec.precision import autocast_input, bf16_native, network_precision, resolve_precision
from tokcodec.streaming.refine import RefineConfig, encode_refined
from tokcodec.streaming.stateful import TorchEngine, decode_chunk, encode_chunk, encode_latent


@pytest.fixture(scope="module")
def model() -> Tokenizer:
    return jittered_tokenizer()


@pytest.fixture(scope="module")
def video() -> torch.Tensor:
    return frames_to_video(np.stack(smooth_frames(9, 48, 64)))


def test_auto_takes_bfloat16_only_where_the_hardware_has_it() -> None:
    assert resolve_precision("fp32") == "fp32" and resolve_precision("bf16") == "bf16"
    assert resolve_precision("auto") == ("bf16" if bf16_native("cpu") else "fp32")
    assert resolve_precision("auto", "meta") == "fp32"  # neither a CPU nor a GPU
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp16")
    with network_precision("fp32"):
        assert not torch.is_autocast_enabled("cpu")
    with network_precision("bf16"):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    assert not torch.is_autocast_enabled("cpu")


def test_bfloat16_codes_within_rounding_of_float32(model: Tokenizer, video: torch.Tensor) -> None:
    z32 = encode_latent(model, video)
    with network_precision("bf16"):
        z16 = encode_latent(model, video)
        tokens16 = encode_chunk(model, video)
    assert z16.dtype == torch.float32 and z16.shape == z32.shape
    assert (z16 - z32).abs().max() < 0.05 * z32.abs().max()
    tokens = encode_chunk(model, video)
    assert (tokens16 != tokens).float().mean() < 0.1  # only latents near 0 flip
    out32 = decode_chunk(model, tokens, tuple(video.shape[-3:]))
    with network_precision("bf16"):
        out16 = decode_chunk(model, tokens, tuple(video.shape[-3:]))
    assert out16.dtype == torch.float32
    diff = video_to_frames(out16).astype(float) - video_to_frames(out32)
    # this random model: 49 dB (max 5 levels); the shipped one: 59 dB (max 2) on the eval clips
    assert 10 * np.log10(255**2 / np.mean(diff**2)) > 45


def test_refinement_in_bfloat16_still_finds_closer_tokens(model: Tokenizer, video: torch.Tensor) -> None:
    size = tuple(video.shape[-3:])

    def error(tokens: torch.Tensor) -> float:
        return float(((decode_chunk(model, tokens, size) - video) ** 2).mean())

    with network_precision("bf16"):
        refined = encode_refined(model, video, None, 0.0, RefineConfig(steps=6, rate=0.0), size)
    plain = encode_chunk(model, video)
    assert refined.shape == plain.shape and error(refined) < 0.95 * error(plain)


def test_streaming_torch_engine_in_bfloat16(model: Tokenizer, video: torch.Tensor) -> None:
    """The engine of `tokcodec serve` (and the streaming coders) hands float32 arrays
    back in either precision, within rounding of float32's."""
    x = video[:, :, :1].numpy()
    (z32, _), (z16, _) = (TorchEngine(model, p).encode_step(x, None) for p in ("fp32", "bf16"))
    assert z16.dtype == np.float32 and np.abs(z16 - z32).max() < 0.05 * np.abs(z32).max()
    latent = np.sign(z32).astype(np.float32)
    (f32, _), (f16, _) = (TorchEngine(model, p).decode_frames(latent, None) for p in ("fp32", "bf16"))
    diff = f16.astype(float) - f32
    assert f16.dtype == np.uint8 and 10 * np.log10(255**2 / max(np.mean(diff**2), 1e-12)) > 45
    assert TorchEngine(model, "auto").precision in ("fp32", "bf16")
    with pytest.raises(ValueError, match="precision must be one of"):
        TorchEngine(model, "fp16")


def test_round_trip_refuses_a_precision_that_is_not_one(tmp_path) -> None:
    from media import make_av_source

    from tokcodec.api import reconstruct_file

    make_av_source(tmp_path / "in.mp4", n=5)
    with pytest.raises(ValueError, match="precision must be one of"):
        reconstruct_file(tmp_path / "in.mp4", tmp_path / "out.mp4", model=jittered_tokenizer(), precision="fp16")
    assert not (tmp_path / "out.mp4").exists()


def test_bfloat16_hands_every_convolution_a_channels_last_tensor(video: torch.Tensor) -> None:
    """oneDNN runs bfloat16 convolutions fastest on channels-last (NDHWC) tensors,
    float32 ones on the default layout: each precision gets its own for every
    convolution of both networks, offline and in streaming segments, and the
    weights follow (back to the default for float32 and for training)."""
    model = jittered_tokenizer()  # its own: this test moves the weights between layouts
    seen: list[str] = []  # the layout of each convolution's input

    def layout(_, args: tuple[torch.Tensor, ...]) -> None:
        x = args[0]
        seen.append("default" if x.is_contiguous() else "last" if x.is_contiguous(memory_format=torch.channels_last_3d)
                    else "strided")

    hooks = [m.register_forward_pre_hook(layout) for m in model.modules() if isinstance(m, torch.nn.Conv3d)]

    def code() -> None:
        tokens = encode_chunk(model, video)
        decode_chunk(model, tokens, tuple(video.shape[-3:]))
        decode_chunk(model, tokens, tuple(video.shape[-3:]), segment_frames=5)

    with network_precision("bf16"):
        code()
    assert len(seen) > 50 and set(seen) == {"last"}
    assert all(p.is_contiguous(memory_format=torch.channels_last_3d) for p in model.parameters() if p.dim() == 5)
    seen.clear()
    code()
    assert len(seen) > 50 and "last" not in seen
    assert all(p.is_contiguous() for p in model.parameters())
    model.train()
    with network_precision("bf16"):
        model(video)
    assert all(p.is_contiguous() for p in model.parameters())
    for hook in hooks:
        hook.remove()


def test_autocast_input_casts_once_what_autocast_would_cast_per_convolution() -> None:
    latent = torch.randn(1, 4, 2, 3, 3)
    assert autocast_input(latent) is latent
    with network_precision("bf16"):
        assert autocast_input(latent).dtype == torch.bfloat16
        tokens = torch.zeros(3, dtype=torch.int64)
        assert autocast_input(tokens) is tokens
