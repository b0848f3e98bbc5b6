"""The shipped trained tokenizers must reconstruct a real clip above a PSNR floor.

A broken or mismatched checkpoint (wrong config, corrupt weights, an export
of the raw instead of the EMA weights gone wrong) fails here before it lands.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tokcodec.api import reconstruct_file
from tokcodec.codec import DEFAULT_MODEL, available_models

SAMPLE = Path(__file__).resolve().parent.parent / "codec" / "samples" / "sample.mp4"
# Measured PSNR of the shipped weights on the sample, minus a margin for other
# CPUs' float rounding; raise it whenever better weights ship (bench/RESULTS.md).
PSNR_FLOOR_DB = 20.8  # magvit2-4x8x8-k30 at its default level (18 bits): 21.35 dB on 2026-11-27 (GPU run, bench/RESULTS.md)


@pytest.mark.slow
def test_default_model_reconstructs_the_sample(tmp_path: Path) -> None:
    info = {m.name: m for m in available_models()}[DEFAULT_MODEL]
    if not info.trained:
        pytest.skip("no trained weights ship yet for the default model")
    report = reconstruct_file(SAMPLE, tmp_path / "out.mp4", lossless=True)
    assert report.frames == 33
    assert report.psnr_rgb >= PSNR_FLOOR_DB


DEFAULT_ENCODE_FLOOR_DB = 22.3  # `tokcodec encode` at the ladder's default point (6 bits at 2x): 22.80 dB on 2026-11-27, 22.73 with the decoder fine-tuned (ninth session), 22.67 trained on hysteresis tokens (tenth), 22.59 trained on more data (fifteenth), 22.58 with the hysteresis chosen per chunk (seventeenth: 0.5, 5,190 bytes against 7,518); 22.80 refined by one step by default (twenty-sixth: 3,026 bytes, unrefined 22.45 dB, 3,122)


@pytest.mark.slow
def test_default_encoding_of_the_sample_is_above_a_floor(tmp_path: Path) -> None:
    """What `tokcodec encode` + `decode` give by default: the shipped weights at the ladder's default point."""
    from tokcodec.api import video_psnr
    from tokcodec.files import decode_file, encode_file

    encode_file(SAMPLE, tmp_path / "s.tok")
    decode_file(tmp_path / "s.tok", tmp_path / "s.mp4", lossless=True)
    assert video_psnr(SAMPLE, tmp_path / "s.mp4") >= DEFAULT_ENCODE_FLOOR_DB


STREAM_MODEL = "magvit2-4x16x16-k18-stream"
STREAM_PSNR_FLOOR_DB = 17.6  # 18.19 dB measured on 2026-11-27, 18.11 with the encoder hysteresis (bench/RESULTS.md)


@pytest.mark.slow
def test_streaming_model_reconstructs_the_sample(tmp_path: Path) -> None:
    report = reconstruct_file(SAMPLE, tmp_path / "out.mp4", model=STREAM_MODEL, lossless=True)
    assert report.frames == 33
    assert report.psnr_rgb >= STREAM_PSNR_FLOOR_DB


@pytest.mark.slow
def test_hysteresis_saves_bits_at_almost_no_cost_on_the_sample(tmp_path: Path) -> None:
    """The encoder's fixed hysteresis 0.2 (what streaming uses; `encode --hysteresis 0.2`) at the
    default point of the ladder (measured on the sample on 2026-11-27 with the shipped weights:
    27% fewer bytes, 0.08 dB lower PSNR; with the decoder trained on hysteresis tokens (tenth
    session) 27% and 0.004 dB; with the decoder trained on more data (fifteenth session) 27% and
    0.06 dB; at the old default, 18 bits at 1x: 23.7% and 0.05 dB) must keep paying for itself,
    and the threshold `encode` chooses per chunk by default must do better still by its own
    measure, PSNR - 1 dB per doubling of the bytes (seventeenth session: 0.5, 5,190 bytes at
    22.575 dB, against 7,518 at 22.588 for 0.2 and 10,342 at 22.645 for 0)."""
    from tokcodec.api import video_psnr
    from tokcodec.codec.lfq import DEFAULT_HYSTERESIS
    from tokcodec.files import decode_file, encode_file
    from tokcodec.streaming.refine import RefineConfig

    size, psnr = {}, {}
    for h in (0.0, DEFAULT_HYSTERESIS, None):  # unrefined, no luma layer: the hysteresis's own effect
        tok, mp4 = tmp_path / f"{h}.tok", tmp_path / f"{h}.mp4"
        size[h] = encode_file(SAMPLE, tok, hysteresis=h, refine=RefineConfig(), luma_layer=False).bytes
        decode_file(tok, mp4, lossless=True)
        psnr[h] = video_psnr(SAMPLE, mp4)
    assert size[DEFAULT_HYSTERESIS] <= 0.85 * size[0.0]
    assert psnr[DEFAULT_HYSTERESIS] >= psnr[0.0] - 0.1
    score = {h: psnr[h] - math.log2(size[h]) for h in psnr}
    assert score[None] >= score[DEFAULT_HYSTERESIS] and size[None] <= size[DEFAULT_HYSTERESIS]


@pytest.mark.slow
def test_refinement_buys_quality_and_bits_on_the_sample(tmp_path: Path) -> None:
    """`encode --refine 5` at the default point of the ladder (6 bits at 2x; measured on the
    sample on 2026-11-27: 23.88 against 22.80 dB, 7,346 against 7,514 bytes; with the decoder
    fine-tuned in the ninth session 23.89 against 22.73 dB, 7,386 against 7,514; in the tenth
    23.85 against 22.67 dB, 7,458 against 7,514; in the fifteenth, with the refinement's rate weight
    raised from 0.15 to 0.25 for its decoder, 23.84 against 22.59 dB, 6,694 against 7,518; in the
    seventeenth, with the hysteresis chosen per chunk (0.5), 23.70 against 22.58 dB, 4,974 against
    5,190; at the old default, 18 bits at 1x, it saved 15% of the bytes) must keep paying for
    itself: better quality for no more bits.

    In the twenty-third session the default entropy model became the learned model 3 while
    the refinement still priced a change by the counting model's costs: 23.64 against 22.53 dB
    for 4,594 against 4,414 bytes. Since the twenty-fourth it prices the tokens' bits by the
    context net that codes them: 23.48 against 22.53 dB, 4,306 against 4,414 bytes (measured
    2026-12-05; at the old rate weight 0.25, 23.62 dB for 4,830 bytes); with the net retrained on
    encode's own tokens (prior cd837f69), 23.40 against 22.45 dB, 3,274 against 3,338 bytes; with
    the wider net of the twenty-fifth session (8379926e), 23.35 against 22.45 dB, 2,982 against
    3,122 bytes.

    Since the twenty-sixth session `encode` refines by default (`DEFAULT_STEPS`; one step, two
    since the thirty-sixth), which must pay for itself too: one step 22.80 dB for 3,026 bytes
    (measured 2026-12-05)."""
    from tokcodec.api import video_psnr
    from tokcodec.files import decode_file, encode_file
    from tokcodec.streaming.refine import DEFAULT_STEPS, RefineConfig

    size, psnr = {}, {}
    for steps in (0, None, 5):  # None: encode's default; no luma layer: the refinement's own effect
        tok, mp4 = tmp_path / f"{steps}.tok", tmp_path / f"{steps}.mp4"
        report = encode_file(SAMPLE, tok, refine=None if steps is None else RefineConfig(steps=steps),
                             luma_layer=False)
        assert report.refine_steps == (DEFAULT_STEPS if steps is None else steps)
        size[steps] = report.bytes
        decode_file(tok, mp4, lossless=True)
        psnr[steps] = video_psnr(SAMPLE, mp4)
    assert psnr[5] >= psnr[0] + 0.5
    assert size[5] <= size[0]
    assert psnr[None] >= psnr[0] + 0.2
    assert size[None] <= size[0]


@pytest.mark.slow
def test_the_luma_layer_pays_for_itself_on_the_sample(tmp_path: Path) -> None:
    """`encode`'s coarse luma layer (the default since the thirtieth session) must raise the
    sample's Y' PSNR by more than its bytes cost at the exchange rate it is chosen by
    (`LAYER_DB_PER_DOUBLING` dB per doubling of the bytes; bench/RESULTS.md, "A coarse luma
    layer", "The layers' exchange rate"), and its RGB PSNR too.

    Until the thirty-sixth session this asked 1 dB per doubling of the RGB PSNR, which a
    Y'-only layer moves less than Y' (Cb and Cr keep their errors): with two refinement steps
    (the default since) the sample's layer gives +0.56 dB Y' (1.80 dB per doubling) but +0.28
    dB RGB (0.88) for 24% more bytes; one step gave +0.74 Y' (2.36), +0.39 RGB (1.25). On the
    eval clips the layer still saves 9% to 33% of the bits by PSNR-Y, MS-SSIM, VMAF and
    PSNR-YCbCr under two steps (bench/RESULTS.md, "The refinement's backward by hand, and two
    steps")."""
    import numpy as np

    from tokcodec.api import video_psnr
    from tokcodec.codec.io import iter_frames
    from tokcodec.codec.luma_layer import planes
    from tokcodec.files import decode_file, encode_file
    from tokcodec.streaming.rate_control import LAYER_DB_PER_DOUBLING

    source_y = planes(np.stack(list(iter_frames(SAMPLE))))[0]
    size, psnr, psnr_y = {}, {}, {}
    for layer in (False, True):
        tok, mp4 = tmp_path / f"{layer}.tok", tmp_path / f"{layer}.mp4"
        report = encode_file(SAMPLE, tok, luma_layer=layer, chroma_layer=False)
        assert (report.layers > 0) == layer
        size[layer] = report.bytes
        decode_file(tok, mp4, lossless=True)
        psnr[layer] = video_psnr(SAMPLE, mp4)
        decoded_y = planes(np.stack(list(iter_frames(mp4))))[0]
        psnr_y[layer] = 10 * math.log10(255 ** 2 / float(np.square(decoded_y - source_y).mean()))
    assert psnr[True] > psnr[False]
    doublings = math.log2(size[True] / size[False])
    assert psnr_y[True] - psnr_y[False] > LAYER_DB_PER_DOUBLING * doublings


@pytest.mark.slow
def test_the_chroma_layers_fix_the_samples_colour(tmp_path: Path) -> None:
    """`encode`'s coarse Cb and Cr layers (the default since the thirty-first session) must
    raise the sample's Cb and Cr PSNR by at least 0.5 dB each for at most 5% more bytes,
    Y' as it was, on the same tokens (measured 2026-12-05: Cb 33.26 -> 34.10, Cr 33.41 -> 34.97
    dB, 3,319 -> 3,413 bytes; bench/RESULTS.md, "Coarse chroma layers"). Since the thirty-seventh
    session the encoder's search depends on the layers (`refine.with_layers`), so both runs
    search as the default does, to keep the tokens the same (measured 2026-12-06: Cb 33.11 ->
    34.13, Cr 33.28 -> 35.21 dB, 3,627 -> 3,741 bytes; against `--no-chroma-layer` with its
    own search, Cb 33.67, Cr 33.51, 3,715 bytes)."""
    import numpy as np

    from tokcodec.codec.io import iter_frames
    from tokcodec.codec.luma_layer import planes
    from tokcodec.files import decode_file, encode_file
    from tokcodec.streaming.refine import COARSE_WEIGHT, DEFAULT_STEPS, RefineConfig

    source = np.stack(list(iter_frames(SAMPLE)))
    size, db = {}, {}
    search = RefineConfig(steps=DEFAULT_STEPS, coarse=COARSE_WEIGHT)  # the default's, with both layers
    for chroma in (False, True):
        tok, mp4 = tmp_path / f"{chroma}.tok", tmp_path / f"{chroma}.mp4"
        size[chroma] = encode_file(SAMPLE, tok, chroma_layer=chroma, refine=search).bytes
        decode_file(tok, mp4, lossless=True)
        out = np.stack(list(iter_frames(mp4)))
        db[chroma] = [10 * math.log10(255 ** 2 / float(np.square(a - b).mean()))
                      for a, b in zip(planes(source), planes(out))]
    assert db[True][1] >= db[False][1] + 0.5 and db[True][2] >= db[False][2] + 0.5
    assert abs(db[True][0] - db[False][0]) < 0.05  # Y' as it was
    assert size[True] <= 1.05 * size[False]
