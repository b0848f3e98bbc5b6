"""The causal tokenizer: causality, images as 1-frame videos, sizes, configs, loading."""

import numpy as np
import pytest
import torch

from tokcodec.codec import Tokenizer, TokenizerConfig, LFQConfig, fingerprint, load_tokenizer, available_models
from tokcodec.codec.clips import FrameVideo, frames_to_video, resize_frames, resize_video, video_to_frames
from tokcodec.codec.config import PRESETS


def tiny(temporal=4, spatial=8, patch=4, bits=10, channels=(16, 32, 32)):
    torch.manual_seed(0)
    cfg = TokenizerConfig(name="tiny", channels=channels, blocks_per_level=1, patch_size=patch,
                          temporal_downsample=temporal, spatial_downsample=spatial, norm_groups=8,
                          lfq=LFQConfig(bits=bits))
    return Tokenizer(cfg).eval()


def clip(t, h=32, w=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, t, h, w, generator=g) * 2 - 1


@pytest.mark.parametrize("temporal,spatial", [(4, 8), (1, 8), (4, 16), (2, 8)])
def test_later_frames_never_change_earlier_tokens(temporal, spatial):
    model = tiny(temporal, spatial)
    x = clip(17)
    tokens = model.encode(x)
    for n in (0, 4, 7, 12):
        y = x.clone()
        y[:, :, n + 1 :] = clip(16 - n, seed=n + 1)
        changed = model.encode(y)
        # Latent frame j sees frames up to j * temporal.
        seen = n // temporal + 1
        assert torch.equal(changed[:, :seen], tokens[:, :seen])
        assert not torch.equal(changed, tokens)  # the change is visible somewhere


@pytest.mark.parametrize("temporal", [1, 4])
def test_image_is_a_one_frame_video(temporal):
    model = tiny(temporal)
    x = clip(17)
    image_tokens = model.encode(x[:, :, :1])
    assert image_tokens.shape == (1, 1, 4, 4)
    for t in (5, 9, 17):
        assert torch.equal(model.encode(x[:, :, :t])[:, :1], image_tokens)


def test_odd_size_round_trip_with_default_config():
    model = load_tokenizer()
    x = clip(17, 100, 70)
    tokens = model.encode(x)
    assert tokens.shape == (1, 5, 13, 9) and tokens.dtype == torch.int64
    assert tokens.min() >= 0 and tokens.max() < 2**model.config.bits
    video = model.decode(tokens, size=(17, 100, 70))
    assert video.shape == x.shape
    assert video.min() >= -1 and video.max() <= 1
    assert model.decode(tokens).shape == (1, 3, 17, 104, 72)


@pytest.mark.parametrize("t,expected", [(1, 1), (2, 2), (5, 2), (6, 3), (17, 5)])
def test_frame_counts_are_padded_to_the_stride(t, expected):
    model = tiny()
    assert model.token_shape(t, 33, 20) == (expected, 5, 3)
    tokens = model.encode(clip(t, 33, 20))
    assert tokens.shape == (1, expected, 5, 3)
    assert model.decode(tokens, size=(t, 33, 20)).shape == (1, 3, t, 33, 20)


def test_a_frame_video_is_read_as_the_padded_float_video_a_slice_at_a_time():
    model = tiny()
    frames = np.random.default_rng(0).integers(0, 256, (6, 33, 20, 3), dtype=np.uint8)
    whole = model.pad(frames_to_video(frames))  # (1, 3, 9, 40, 24): 3 frames, 7 rows and 4 columns repeated
    video = model.pad(FrameVideo(frames))
    assert isinstance(video, FrameVideo) and video.shape == whole.shape and video.frames is frames
    for index in [(slice(None), slice(None), slice(None)), (slice(None), slice(None), slice(2, 5)),
                  (slice(None), slice(None), slice(4, 9), slice(None, 33), slice(None, 20)),
                  (slice(None), slice(None), slice(5, 9), slice(30, 40), slice(18, None)),
                  (slice(None), slice(None), slice(1, None, 3), slice(None), slice(3, 24, 5))]:
        part = video[index]
        assert part.dtype == torch.float32 and torch.equal(part, whole[index])
    assert torch.equal(FrameVideo(frames)[:, :, 1:3], frames_to_video(frames)[:, :, 1:3])
    with pytest.raises(IndexError, match="slices"):
        video[0]
    with pytest.raises(IndexError, match="slices"):
        video[:, :, 3]
    with pytest.raises(ValueError, match="uint8"):
        FrameVideo(frames.astype(np.float32))
    with pytest.raises(ValueError, match="cannot crop"):
        FrameVideo(frames, (5, 33, 20))


def test_resize_frames_a_few_at_a_time_gives_the_whole_chunks_frames():
    frames = np.random.default_rng(1).integers(0, 256, (21, 30, 40, 3), dtype=np.uint8)  # 8 + 8 + 5
    for height, width in [(60, 80), (15, 20), (45, 61)]:
        whole = video_to_frames(resize_video(frames_to_video(frames), height, width))
        assert np.array_equal(resize_frames(frames, height, width), whole)
    assert resize_frames(frames, 30, 40) is frames


def test_batch_items_are_independent():
    model = tiny()
    a, b = clip(9, seed=1), clip(9, seed=2)
    both = model.encode(torch.cat([a, b]))
    assert torch.equal(both[:1], model.encode(a)) and torch.equal(both[1:], model.encode(b))


def test_gradients_reach_the_encoder_through_the_quantiser():
    model = tiny().train()
    x = clip(5)
    out = model(x)
    assert out.reconstruction.shape == x.shape
    ((out.reconstruction - x) ** 2).mean().add(out.lfq.loss).backward()
    assert model.encoder.stem.weight.grad.abs().sum() > 0
    assert model.decoder.conv_out.conv.weight.grad.abs().sum() > 0


def test_temporal_downsampling_is_deferred_to_the_last_transitions():
    assert PRESETS["magvit2-4x8x8-k18"].transition_strides() == [(2, 2), (2, 1)]
    assert PRESETS["magvit2-1x8x8-k18"].transition_strides() == [(1, 2), (1, 1)]
    assert PRESETS["magvit2-4x16x16-k18"].transition_strides() == [(2, 2), (2, 2)]
    cfg = TokenizerConfig(channels=(16, 16, 32, 32), norm_groups=8, temporal_downsample=2)
    assert cfg.transition_strides() == [(1, 2), (1, 1), (2, 1)]


@pytest.mark.parametrize("bits", [10, 14, 18])
def test_codebook_sizes(bits):
    model = tiny(bits=bits)
    tokens = model.encode(clip(5))
    assert tokens.max() < 2**bits
    model.decode(tokens)


def test_config_validation_and_json_round_trip(tmp_path):
    with pytest.raises(ValueError, match="power of two"):
        TokenizerConfig(temporal_downsample=3)
    with pytest.raises(ValueError, match="transitions"):
        TokenizerConfig(channels=(64, 128), temporal_downsample=4)
    with pytest.raises(ValueError, match="bits"):
        LFQConfig(bits=0)
    cfg = PRESETS["magvit2-4x16x16-k18"]
    cfg.save(tmp_path / "c.json")
    assert TokenizerConfig.load(tmp_path / "c.json") == cfg
    with pytest.raises(ValueError, match="unknown"):
        TokenizerConfig.from_dict({"widths": [1]})


def test_bad_inputs_are_rejected():
    model = tiny()
    with pytest.raises(ValueError, match="B, 3, T, H, W"):
        model.encode(torch.zeros(3, 5, 32, 32))
    with pytest.raises(ValueError, match="float"):
        model.encode(torch.zeros(1, 3, 5, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="integers"):
        model.decode(torch.full((1, 2, 4, 4), 2**10))
    with pytest.raises(ValueError, match="larger"):
        model.decode(torch.zeros(1, 2, 4, 4, dtype=torch.long), size=(9, 32, 32))


def test_shipped_models_load_offline_and_deterministically():
    names = {m.name for m in available_models()}
    assert {"magvit2-4x8x8-k30", "magvit2-1x8x8-k18", "magvit2-4x16x16-k18"} <= names
    a, b = load_tokenizer(), load_tokenizer("magvit2-4x8x8-k30")
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(a) != fingerprint(load_tokenizer("magvit2-1x8x8-k18"))
    assert not a.training
    with pytest.raises(ValueError, match="unknown model"):
        load_tokenizer("nope")


def test_save_and_load_round_trip(tmp_path, monkeypatch):
    from tokcodec.codec import registry, save_tokenizer

    model = tiny()
    save_tokenizer(model, tmp_path)
    monkeypatch.setattr(registry, "MODELS_DIR", tmp_path)
    loaded = registry.load_tokenizer("tiny")
    assert fingerprint(loaded) == fingerprint(model)
    x = clip(5)
    assert torch.equal(loaded.encode(x), model.encode(x))


# ---------------------------------------------------------------- rate ladder


def ladder(levels=(4, 7, 10)):
    torch.manual_seed(0)
    cfg = TokenizerConfig(name="tiny", channels=(16, 32, 32), blocks_per_level=1, norm_groups=8,
                          lfq=LFQConfig(bits=levels[-1], levels=levels))
    return Tokenizer(cfg).eval()


def test_a_level_keeps_the_leading_bits_and_decodes_the_rest_as_zero():
    model = ladder()
    video = clip(5)
    full = model.encode(video)
    low = model.encode(video, bits=4)
    assert torch.equal(low, full & 15) and int(low.max()) < 16
    # decoding a 4-bit token grid = decoding the latent with channels 4.. set to 0
    q = model.quantizer(model.encoder(model.pad(video)), with_entropy=False).quantized
    q[:, 4:] = 0
    assert torch.allclose(model.decode(low, bits=4), model.decoder(q).clamp(-1, 1), atol=1e-6)
    assert model.level_bits(0) == 4 and model.level_bits() == 10
    with pytest.raises(ValueError, match="quality 3 is not available"):
        model.level_bits(3)
    with pytest.raises(ValueError, match=r"\[0, 2\^4\)"):
        model.decode(full, bits=4)


def test_nested_dropout_zeroes_the_dropped_channels_per_sample():
    model = ladder().train()
    video = torch.cat([clip(5, seed=1), clip(5, seed=2)])
    z = model.encoder(video)
    out = model.quantizer(z, keep=torch.tensor([4, 10]))
    assert (out.quantized[0, 4:] == 0).all() and (out.quantized[0, :4].abs() == 1).all()
    assert (out.quantized[1].abs() == 1).all()


def test_ladder_levels_are_validated_and_saved(tmp_path):
    for bad in [(4, 3, 10), (4, 7), (0, 10), (4, 4, 10)]:
        with pytest.raises(ValueError, match="levels"):
            LFQConfig(bits=10, levels=bad)
    cfg = ladder().config
    cfg.save(tmp_path / "c.json")
    assert TokenizerConfig.load(tmp_path / "c.json") == cfg and cfg.lfq.level_bits == (4, 7, 10)
    assert "levels" not in TokenizerConfig().to_dict()["lfq"]  # single-level configs keep their JSON
    assert TokenizerConfig().lfq.level_bits == (18,)
