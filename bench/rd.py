"""Rate-distortion of tokcodec against libx264, libx265 and SVT-AV1 on the corpus eval clips.

    .venv/bin/python bench/rd.py [--clips NAME,...] [--frames N] [--codecs tokcodec,x264,x265,svtav1]
        [--crf-x264 18,23,...] [--crf-x265 ...] [--crf-svtav1 ...] [--tok-quality 0,...] [--model NAME]
        [--tok-hysteresis H|auto] [--tok-hysteresis-rate R] [--tok-refine N] [--tok-refine-rate R] [--tok-refine-ssim S] [--tok-onnx DIR|auto]
        [--tok-scale S] [--tok-level L] [--tok-precision auto|fp32|bf16] [--tok-headroom auto|keep|clip]
        [--tok-no-luma-layer] [--tok-no-chroma-layer] [--tok-sharpen A] [--preset-x264 medium] [--preset-x265 medium] [--preset-svtav1 8]
        [--out bench/rd] [--no-vmaf] [--threads N] [--keep] [--quiet] [--traceback]

For every clip (the eval split of ../shared/corpus unless --clips names
others) and every codec point it measures bpp, PSNR-Y, MS-SSIM, VMAF (and NEG), PSNR-Cb/Cr/YCbCr and the
encode and decode speed, then BD-rates against x264. It writes
OUT/results.json (every point), OUT/<metric>.png (the curves) and prints a
markdown summary for bench/RESULTS.md on stdout; progress and failures go to
stderr. A codec point that fails is reported and skipped.

How each number is made:

- Codecs. tokcodec: `tokcodec.encode_file` at each quality level of the
  model's rate ladder (each a coding scale and LFQ level, `tokcodec.ladder`;
  --tok-scale and --tok-level override them for experiments; with the
  encoder's hysteresis threshold, --tok-hysteresis, and --tok-refine steps of
  encoder-side refinement, default the encoder's), `tokcodec.decode_file(lossless=True)` (RGB, libx264rgb qp 0, so the
  metric sees the decoder's own pixels). Anchors, through PyAV's FFmpeg:
  libx264 (preset medium), libx265 (preset medium), libsvtav1 (preset 8),
  each over a CRF sweep, yuv420p, written to .mp4 and decoded with PyAV;
  every other setting is the encoder's default. The anchors are fed the
  source's own decoded 4:2:0 frames.
- Rate: bpp = 8 * file size (container included, .tok or .mp4) /
  (frames * width * height). The anchors' mp4s carry no audio, so the
  audio packets a .tok stores from the source are not counted.
- Quality, on 8-bit luma (bench/metrics.py): the reference is the source's
  Y' plane as decoded; an anchor's output is its decoded Y' plane; tokcodec's
  RGB output becomes Y' with the matrix and range the source is read in
  (BT.601 limited range for the untagged eval clips, the inverse of the
  YUV->RGB conversion tokcodec's reader applied), rounded to 8 bits.
  PSNR-Y: mean of per-frame PSNR. Colour: the source's Cb and Cr planes
  (4:2:0) as decoded, an anchor's decoded planes, tokcodec's RGB turned into
  Cb and Cr the same way and averaged over 2 x 2 pixels; PSNR-Cb, PSNR-Cr
  as PSNR-Y, and PSNR-YCbCr = (6 PSNR-Y + PSNR-Cb + PSNR-Cr) / 8 (the
  weighting of JVET's common test conditions). MS-SSIM: mean of per-frame MS-SSIM, five
  scales where the frame allows, fewer on small frames (176x144: four).
  VMAF: v0.6.1 via vmaf-torch, mean of per-frame scores clipped to [0, 100];
  VMAF NEG the same with the "no enhancement gain" features, which do not
  credit sharpening (tokcodec's decoders sharpen by default, codec/sharpen.py).
  The per-clip "RGB ceiling" is the PSNR-Y (and -Cb, -Cr) of the source
  after that YUV->RGB->Y'CbCr round trip alone: no codec with an RGB
  interface can beat it.
- BD-rate: PCHIP in log-rate over the common quality range, against x264,
  for PSNR-Y, MS-SSIM in dB (-10 log10(1 - MS-SSIM)), VMAF, VMAF NEG and PSNR-YCbCr; "n/a (...)"
  when a curve has fewer than two points or the ranges do not overlap.
- Speed: encode fps = frames / wall time from decoded frames in memory
  (anchors) or from the source file (tokcodec: `encode_file`, which also
  decodes the source) to the compressed file on disk; decode fps = frames /
  wall time from the compressed file to decoded frames (anchors) or to the
  lossless RGB mp4 (tokcodec: `decode_file`). Encoders use their default
  threading; torch its default thread count. The load average at the start
  is recorded: other work on the machine slows every codec.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1: errors only, not its banner on every encode

import av  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import metrics  # noqa: E402
from corpus import clips as corpus_clips  # noqa: E402

from tokcodec import AUTO_HYSTERESIS, DEFAULT_ENCODE_HYSTERESIS, HEADROOM  # noqa: E402  (light: the networks load lazily)

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Anchor:
    """A conventional encoder reached through PyAV."""

    encoder: str
    label: str
    crfs: tuple[int, ...]
    preset: str
    extra: tuple[tuple[str, str], ...] = ()

    def options(self, crf: int, preset: str) -> dict[str, str]:
        return {"crf": str(crf), "preset": preset, **dict(self.extra)}


ANCHORS = {
    "x264": Anchor("libx264", "libx264", (18, 23, 28, 33, 38, 43, 48), "medium"),
    "x265": Anchor("libx265", "libx265", (18, 23, 28, 33, 38, 43, 48), "medium", (("x265-params", "log-level=error"),)),
    "svtav1": Anchor("libsvtav1", "SVT-AV1", (25, 32, 39, 46, 53, 60, 63), "8"),
}
CODECS = ("tokcodec", *ANCHORS)
METRICS = {  # key in a point -> (axis label, key used for BD-rate)
    "psnr_y": ("PSNR-Y (dB)", "psnr_y"),
    "msssim": ("MS-SSIM (dB) = -10 log10(1 - MS-SSIM)", "msssim_db"),
    "vmaf": ("VMAF v0.6.1", "vmaf"),
    # Not fooled by sharpening: the enhancement gain of VIF and ADM is capped (tokcodec's files sharpen, codec/sharpen.py).
    "vmaf_neg": ("VMAF NEG v0.6.1", "vmaf_neg"),
    # The colour too: (6 PSNR-Y + PSNR-Cb + PSNR-Cr) / 8 on the 4:2:0 planes, as JVET's common test conditions weigh them.
    "psnr_ycbcr": ("PSNR-YCbCr 6:1:1 (dB)", "psnr_ycbcr"),
}
STYLE = {"tokcodec": ("tab:red", "*"), "x264": ("tab:blue", "o"), "x265": ("tab:green", "s"), "svtav1": ("tab:purple", "^")}


# ---------------------------------------------------------------- source


@dataclass
class Source:
    """The first frames of a clip, as the anchors and the metrics see them."""

    path: Path
    width: int
    height: int
    fps: Fraction
    yuv: list[np.ndarray]  # yuv420p frames, (H * 3/2, W) uint8 each
    y: np.ndarray  # reference luma (frames, H, W) uint8
    chroma: tuple[np.ndarray, np.ndarray]  # reference Cb and Cr (frames, H/2, W/2) uint8
    matrix: str  # RGB -> Y' matrix matching the source's YUV -> RGB ('bt601' or 'bt709')
    full_range: bool
    pix_fmt: str

    @property
    def frames(self) -> int:
        return len(self.yuv)


def load_source(path: Path, max_frames: int | None) -> Source:
    """Decode the first `max_frames` frames (all when None) of a clip's video stream,
    on the constant-rate timeline tokcodec encodes (`iter_frames`: a variable-rate
    source's frames repeated through timestamp gaps), so that every codec and the
    reference see the same frame sequence."""
    from tokcodec.codec.video_reader import constant_rate_frames, probe

    yuv: list[np.ndarray] = []
    fps = probe(path).fps
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        first = None
        for frame in constant_rate_frames(container.decode(stream), fps):
            if first is None:
                first = frame
            if (frame.width, frame.height) != (first.width, first.height):
                raise ValueError(f"{path.name}: frame size changes mid-stream")
            yuv.append(frame.to_ndarray(format="yuv420p"))
            if max_frames is not None and len(yuv) >= max_frames:
                break
        if first is None:
            raise ValueError(f"{path.name}: no decodable video frames")
        w, h = first.width, first.height
        # Ranges and matrices as swscale reads them (tokcodec's reader uses swscale):
        # BT.709 only when tagged so, full range only when tagged or a yuvj format.
        matrix = "bt709" if int(first.colorspace) == 1 else "bt601"
        full = int(first.color_range) == 2 or first.format.name.startswith("yuvj")
        pix_fmt = first.format.name
    y = np.stack([f[:h] for f in yuv])
    uv = np.stack([f[h:].reshape(2, h // 2, w // 2) for f in yuv])  # yuv420p: the U plane, then the V plane
    return Source(path, w, h, fps, yuv, y, (uv[:, 0], uv[:, 1]), matrix, full, pix_fmt)


_LUMA_FIRST = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "nv21", "gray"}


def luma(frame: av.VideoFrame, matrix: str, full_range: bool) -> np.ndarray:
    """8-bit Y' of a decoded frame: its own luma plane if it has one, else from RGB."""
    if frame.format.name in _LUMA_FIRST:
        plane = frame.planes[0]
        buf = np.frombuffer(memoryview(plane), np.uint8).reshape(plane.height, plane.line_size)
        return buf[:, : frame.width].copy()
    return metrics.rgb_to_y(frame.to_ndarray(format="rgb24"), matrix, full_range)


def _plane(frame: av.VideoFrame, i: int) -> np.ndarray:
    plane = frame.planes[i]
    buf = np.frombuffer(memoryview(plane), np.uint8).reshape(plane.height, plane.line_size)
    return buf[:, : plane.width].copy()


def decode_luma(path: Path, matrix: str, full_range: bool
                ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None, float]:
    """All frames' Y', their Cb and Cr at 4:2:0 (other formats' chroma averaged
    over 2 x 2 pixels, RGB's through `matrix` and the range first), and the
    seconds the decoding took (the planes' conversions included)."""
    start = time.perf_counter()
    ys, cbs, crs = [], [], []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            ys.append(luma(frame, matrix, full_range))
            if frame.format.name in ("yuv420p", "yuvj420p"):
                cb, cr = _plane(frame, 1), _plane(frame, 2)
            elif frame.format.name == "yuv444p":  # tokcodec's lossless output of a kept span: the source's matrix
                cb, cr = (np.clip(np.rint(metrics.mean_2x2(_plane(frame, i)[None])[0]), 0, 255).astype(np.uint8)
                          for i in (1, 2))
            else:
                cb, cr = (c[0] for c in metrics.rgb_to_cbcr_420(frame.to_ndarray(format="rgb24")[None], matrix,
                                                                 full_range))
            cbs.append(cb)
            crs.append(cr)
    seconds = time.perf_counter() - start
    if not ys:
        raise ValueError(f"{path.name}: decoded no frames")
    return np.stack(ys), (np.stack(cbs), np.stack(crs)), seconds


def rgb_ceiling(src: Source) -> tuple[float, float, float]:
    """PSNR-Y, -Cb and -Cr of the source after tokcodec's reader (YUV -> RGB) and
    the metric's RGB -> Y'CbCr (chroma averaged to 4:2:0)."""
    from tokcodec.codec.io import iter_frames

    ys, cbs, crs = [], [], []
    frames = iter_frames(src.path)
    try:
        for rgb in frames:
            ys.append(metrics.rgb_to_y(rgb, src.matrix, src.full_range))
            cb, cr = metrics.rgb_to_cbcr_420(rgb[None], src.matrix, src.full_range)
            cbs.append(cb[0])
            crs.append(cr[0])
            if len(ys) == src.frames:
                break
    finally:
        frames.close()
    return (metrics.psnr_y(src.y, np.stack(ys)), metrics.psnr_y(src.chroma[0], np.stack(cbs)),
            metrics.psnr_y(src.chroma[1], np.stack(crs)))


# ---------------------------------------------------------------- codecs


def encode_anchor(src: Source, anchor: Anchor, crf: int, preset: str, out: Path) -> float:
    """Encode the source frames with one anchor at one CRF; returns seconds."""
    start = time.perf_counter()
    with av.open(str(out), "w") as container:
        stream = container.add_stream(anchor.encoder, rate=src.fps, options=anchor.options(crf, preset))
        stream.width, stream.height, stream.pix_fmt = src.width, src.height, "yuv420p"
        for i, arr in enumerate(src.yuv):
            frame = av.VideoFrame.from_ndarray(arr, format="yuv420p")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return time.perf_counter() - start


@dataclass
class Measured:
    bytes: int
    y: np.ndarray
    encode_s: float
    decode_s: float
    extra: dict[str, Any] = field(default_factory=dict)
    chroma: tuple[np.ndarray, np.ndarray] | None = None  # decoded Cb and Cr (4:2:0), where the output has them


def run_anchor(src: Source, anchor: Anchor, crf: int, preset: str, work: Path) -> Measured:
    path = work / f"{src.path.stem}-{anchor.encoder}-crf{crf}.mp4"
    enc = encode_anchor(src, anchor, crf, preset, path)
    y, chroma, dec = decode_luma(path, src.matrix, src.full_range)
    return Measured(path.stat().st_size, y, enc, dec, chroma=chroma)


def _threshold(value: str) -> float | str:
    """--tok-hysteresis: a number >= 0, 'auto' or 'auto-decode'."""
    if value in AUTO_HYSTERESIS:
        return value
    if not float(value) >= 0:
        raise argparse.ArgumentTypeError(f"{value!r} is neither a number >= 0 nor 'auto' or 'auto-decode'")
    return float(value)


def run_tokcodec(src: Source, quality: int, model: Any, work: Path, hysteresis: float | str | None = None,
                 refine: Any = None, onnx: str | None = None, scale: float | None = None,
                 level: int | None = None, precision: str = "auto", headroom: str = "auto",
                 luma_layer: bool = True, chroma_layer: bool = True, sharpen: float | None = None) -> Measured:
    """`refine`: a `streaming.refine.RefineConfig` (None: the encoder's default);
    `onnx`: an export folder or "auto"; `scale`, `level`: `encode_file`'s overrides of the
    ladder point (None: the point's; the decoder scales back); `precision`: torch's
    ("auto", "fp32" or "bf16", `codec.precision`); `headroom`: `encode_file`'s (super-whites kept or clipped);
    `luma_layer`, `chroma_layer`: `encode_file`'s (the coarse layers sent where they pay);
    `sharpen`: `encode_file`'s (the decoders' unsharp mask; None: the encoder's default)."""
    import tokcodec

    tok = work / f"{src.path.stem}-tokcodec-q{quality}.tok"
    mp4 = work / f"{src.path.stem}-tokcodec-q{quality}.mp4"
    start = time.perf_counter()
    report = tokcodec.encode_file(src.path, tok, model=model, quality=quality, max_frames=src.frames,
                                  hysteresis=hysteresis, force=True, refine=refine, onnx=onnx,
                                  scale=scale, level=level, precision=precision, headroom=headroom,
                                  luma_layer=luma_layer, chroma_layer=chroma_layer, sharpen=sharpen)
    enc = time.perf_counter() - start
    start = time.perf_counter()
    tokcodec.decode_file(tok, mp4, model=model, lossless=True, force=True, onnx=onnx, precision=precision)
    dec = time.perf_counter() - start
    y, chroma, _ = decode_luma(mp4, src.matrix, src.full_range)
    return Measured(tok.stat().st_size - report.audio_bytes, y, enc, dec,
                    {"tokens": report.tokens, "token_bytes": report.token_bytes, "audio_bytes": report.audio_bytes,
                     "bits": report.bits, "coded_size": list(report.coded_size),
                     "scale": round(report.coded_size[0] / src.width, 3), "hysteresis": report.thresholds,
                     "refine_steps": report.refine_steps, "layer_bytes": report.layer_bytes,
                     "layer_chunks": report.layers,
                     "luma_range": [report.luma_range.black, report.luma_range.white],
                     "sharpen": [report.sharpen.amount, report.sharpen.sigma, report.sharpen.threshold]}, chroma)


def tok_quality_levels(model: Any) -> list[int]:
    """The quality levels (the points of the rate ladder) of a tokcodec model."""
    from tokcodec.ladder import model_ladder

    return list(range(len(model_ladder(model.config).points)))


# ---------------------------------------------------------------- measuring


class Scorer:
    """The quality metrics of one decoded video against its reference."""

    def __init__(self, vmaf: metrics.Vmaf | None, vmaf_neg: metrics.Vmaf | None = None) -> None:
        self.vmaf, self.vmaf_neg = vmaf, vmaf_neg

    def __call__(self, ref: np.ndarray, dist: np.ndarray, ref_chroma: tuple[np.ndarray, np.ndarray] | None = None,
                 dist_chroma: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, float | None]:
        """Y' metrics of `dist` against `ref` ((frames, H, W) uint8); with both
        `ref_chroma` and `dist_chroma` (Cb and Cr, 4:2:0) also PSNR-Cb, -Cr and -YCbCr."""
        if dist.shape != ref.shape:
            raise ValueError(f"decoded {dist.shape[0]} frames of {dist.shape[2]}x{dist.shape[1]}, "
                             f"expected {ref.shape[0]} of {ref.shape[2]}x{ref.shape[1]}")
        out: dict[str, float | None] = {"psnr_y": metrics.psnr_y(ref, dist)}
        if metrics.ms_ssim_scales(*ref.shape[1:]):
            ms = metrics.ms_ssim(ref, dist)
            out["msssim"], out["msssim_db"] = ms, metrics.ms_ssim_db(ms)
        else:
            out["msssim"] = out["msssim_db"] = None
        out["vmaf"] = self.vmaf(ref, dist) if self.vmaf is not None else None
        out["vmaf_neg"] = self.vmaf_neg(ref, dist) if self.vmaf_neg is not None else None
        out["psnr_cb"] = out["psnr_cr"] = out["psnr_ycbcr"] = None
        if ref_chroma is not None and dist_chroma is not None and dist_chroma[0].shape == ref_chroma[0].shape:
            out["psnr_cb"], out["psnr_cr"] = (metrics.psnr_y(r, d) for r, d in zip(ref_chroma, dist_chroma))
            out["psnr_ycbcr"] = (6 * out["psnr_y"] + out["psnr_cb"] + out["psnr_cr"]) / 8
        return out


def load_vmaf(enabled: bool, log: Callable[[str], None]) -> tuple[metrics.Vmaf | None, metrics.Vmaf | None, str]:
    """VMAF and VMAF NEG if wanted and working offline, with a line saying why not otherwise."""
    if not enabled:
        return None, None, "VMAF off (--no-vmaf)"
    try:
        vmaf = metrics.Vmaf()
        probe = np.random.default_rng(0).integers(16, 235, size=(2, 64, 64), dtype=np.uint8)
        score = vmaf(probe, probe)
        if not math.isfinite(score):
            raise ValueError(f"VMAF of identical frames is {score}")
    except Exception as exc:  # noqa: BLE001 - any failure means: skip VMAF, say why
        msg = f"VMAF skipped: vmaf-torch does not work here ({_one_line(exc)}); install the 'bench' extra"
        log(msg)
        return None, None, msg
    return vmaf, metrics.Vmaf(neg=True), (f"VMAF v0.6.1 and VMAF NEG (vmaf-torch {_version('vmaf-torch')}, "
                                          "models built into the package)")


def measure_clip(path: Path, args: argparse.Namespace, scorer: Scorer, model: Any, work: Path,
                 log: Callable[[str], None]) -> dict[str, Any]:
    src = load_source(path, args.frames)
    clip: dict[str, Any] = {
        "path": str(path), "width": src.width, "height": src.height, "frames": src.frames,
        "fps": f"{src.fps.numerator}/{src.fps.denominator}", "pix_fmt": src.pix_fmt,
        "luma": f"{src.matrix} {'full' if src.full_range else 'limited'} range",
        "msssim_scales": metrics.ms_ssim_scales(src.height, src.width),
        "points": [], "errors": [],
    }
    log(f"{path.name}: {src.width}x{src.height}, {src.frames} frames")
    if "tokcodec" in args.codecs:
        try:
            clip["rgb_ceiling_psnr_y"], *clip["rgb_ceiling_psnr_cbcr"] = rgb_ceiling(src)
        except Exception as exc:  # noqa: BLE001
            clip["errors"].append({"codec": "tokcodec", "rgb_ceiling": True, "error": _one_line(exc)})
    jobs: list[tuple[str, str, int, Callable[[], Measured]]] = []
    from tokcodec.streaming.refine import asked_refine

    refine = asked_refine(args.tok_refine, args.tok_refine_rate, args.tok_refine_ssim)  # None: the encoder's default
    hysteresis = tok_hysteresis(args)
    # Anchors first: libx264's output was seen to change by a few tenths of a percent
    # once torch had run in the process (see the report of issue 4).
    for codec in sorted(args.codecs, key=lambda c: c == "tokcodec"):
        if codec == "tokcodec":
            for q in args.tok_quality:
                jobs.append((codec, "quality", q, lambda q=q: run_tokcodec(src, q, model, work, hysteresis,
                                                                               refine, args.tok_onnx,
                                                                               args.tok_scale, args.tok_level,
                                                                               args.tok_precision,
                                                                               args.tok_headroom,
                                                                               not args.tok_no_luma_layer,
                                                                               not args.tok_no_chroma_layer,
                                                                               args.tok_sharpen)))
        else:
            a = ANCHORS[codec]
            for crf in getattr(args, f"crf_{codec}"):
                jobs.append((codec, "crf", crf, lambda a=a, crf=crf, codec=codec:
                             run_anchor(src, a, crf, getattr(args, f"preset_{codec}"), work)))
    pixels = src.frames * src.width * src.height
    for codec, param, value, job in jobs:
        try:
            m = job()
            point = {"codec": codec, param: value, "bytes": m.bytes, "bpp": 8 * m.bytes / pixels, **scorer(src.y, m.y, src.chroma, m.chroma),
                     "encode_fps": src.frames / m.encode_s, "decode_fps": src.frames / m.decode_s, **m.extra}
            clip["points"].append(point)
            log(f"  {codec:8} {param} {value:<3} bpp {point['bpp']:.4f}  PSNR-Y {point['psnr_y']:.2f}  "
                f"MS-SSIM {_fmt(point['msssim'], 4)}  VMAF {_fmt(point['vmaf'], 2)} (NEG {_fmt(point['vmaf_neg'], 2)})  "
                f"PSNR-Cb/Cr {_fmt(point['psnr_cb'], 2)}/{_fmt(point['psnr_cr'], 2)}  "
                f"enc {point['encode_fps']:.1f} fps  dec {point['decode_fps']:.1f} fps")
        except Exception as exc:  # noqa: BLE001 - a failing codec point is reported, not fatal
            clip["errors"].append({"codec": codec, param: value, "error": _one_line(exc)})
            log(f"  {codec:8} {param} {value:<3} FAILED: {_one_line(exc)}")
            if args.traceback:
                traceback.print_exc()
    clip["bd_rate_vs_x264"] = bd_rates(clip["points"], args.codecs)
    return clip


def bd_rates(points: list[dict[str, Any]], codecs: Iterable[str]) -> dict[str, dict[str, float | str]]:
    """BD-rate (%) of each codec against x264 for each metric, or 'n/a (reason)'."""
    anchor = [p for p in points if p["codec"] == "x264"]
    out: dict[str, dict[str, float | str]] = {}
    for codec in codecs:
        if codec == "x264":
            continue
        test = [p for p in points if p["codec"] == codec]
        row: dict[str, float | str] = {}
        for name, (_, key) in METRICS.items():
            qa, qt = [p.get(key) for p in anchor], [p.get(key) for p in test]
            if not anchor:
                row[name] = "n/a (x264 not measured)"
            elif not test:
                row[name] = "n/a (no points)"
            elif None in qa + qt:
                row[name] = "n/a (metric not measured)"
            else:
                try:
                    row[name] = metrics.bd_rate([p["bpp"] for p in anchor], qa, [p["bpp"] for p in test], qt)
                except ValueError as exc:  # "needs >= 2 points", "quality ranges do not overlap"
                    row[name] = f"n/a ({exc})"
        out[codec] = row
    return out


# ---------------------------------------------------------------- output


def plot(results: dict[str, Any], out: Path, log: Callable[[str], None]) -> list[str]:
    """One PNG per metric, a subplot per clip, bpp on a log axis, a line per codec."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("plots skipped: matplotlib is not installed (install the 'bench' extra)")
        return []
    clips = {n: c for n, c in results["clips"].items() if c.get("points")}
    written = []
    for name, (label, key) in METRICS.items():
        if not any(p.get(key) is not None for c in clips.values() for p in c["points"]):
            continue
        fig, axes = plt.subplots(1, max(len(clips), 1), figsize=(5.2 * max(len(clips), 1), 4.2), squeeze=False)
        for ax, (clip_name, clip) in zip(axes[0], clips.items()):
            for codec in CODECS:
                pts = sorted((p["bpp"], p[key]) for p in clip["points"]
                             if p["codec"] == codec and p.get(key) is not None and math.isfinite(p[key]))
                if not pts:
                    continue
                color, marker = STYLE[codec]
                xs, ys = zip(*pts)
                ax.plot(xs, ys, marker=marker, color=color, label=_label(codec), markersize=9 if marker == "*" else 5)
            ax.set_xscale("log")
            ax.set_xlabel("bits per pixel")
            ax.set_ylabel(label)
            ax.set_title(f"{clip_name} ({clip['width']}x{clip['height']}, {clip['frames']} frames)", fontsize=9)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle(f"{label} against rate ({results['date']})", fontsize=10)
        fig.tight_layout()
        path = out / f"{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(str(path))
    return written


def markdown(results: dict[str, Any]) -> str:
    """A summary for bench/RESULTS.md: command, machine, date and every number."""
    m = results["machine"]
    s = results["settings"]
    lines = [
        "## Rate-distortion against x264, x265 and SVT-AV1 (issue 4)",
        "",
        f"Command: `{results['command']}`, {m['description']}, {results['date']} "
        f"(load average {m['loadavg_start']} at the start: other work on the machine slows every codec's fps).",
        (f"tokcodec model `{s['tokcodec_model']}` (fingerprint {s['tokcodec_fingerprint']}), quality levels "
         f"{', '.join(map(str, s['tok_quality']))}, encoder hysteresis {s.get('tok_hysteresis', 0)}"
         + (f" at {s['tok_hysteresis_rate']} dB per doubling" if s.get("tok_hysteresis_rate") is not None else "")
         + ", "
         f"refinement steps {_refine_steps(s)} (rate weight {_refine_rate(s)}, "
         f"SSIM weight {s.get('tok_refine_ssim', 0)})"
         + (f", networks on onnxruntime (--onnx {s['tok_onnx']})" if s.get("tok_onnx") else
            f", networks in {s['tok_precision']}" if s.get("tok_precision") else "")
         + (f", coded at {s['tok_scale']}x the source size (--scale)" if s.get("tok_scale") not in (1, None) else "")
         + (f", LFQ level {s['tok_level']} (--level)" if s.get("tok_level") is not None else "")
         + (f", headroom {s['tok_headroom']}" if s.get("tok_headroom") else "")
         + (", no coarse luma layer" if s.get("tok_luma_layer") is False else "")
         + (", no coarse chroma layers" if s.get("tok_chroma_layer") is False else "")
         + (f", --sharpen {s['tok_sharpen']}" if s.get("tok_sharpen") is not None else "") + "; "
         if s["tok_quality"] else "")
        + f"anchors via PyAV {m['versions']['av']} (FFmpeg {m['versions']['ffmpeg']}): "
        + ", ".join(f"{ANCHORS[c].label} preset {s['presets'][c]} CRF {','.join(map(str, s['crf'][c]))}"
                    for c in s["crf"]) + ", yuv420p .mp4.",
        "Metrics on 8-bit planes: the source's Y'CbCr 4:2:0 as decoded; anchors' decoded planes; tokcodec's "
        "lossless RGB output turned into Y'CbCr with the matrix and range the source is read in (per clip below), "
        "chroma averaged over 2 x 2 pixels, rounded to 8 bits. PSNR-YCbCr = (6 PSNR-Y + PSNR-Cb + PSNR-Cr) / 8. "
        "PSNR-Y = mean per-frame PSNR; MS-SSIM = mean per-frame MS-SSIM (scales per clip below); "
        f"{s['vmaf']}. bpp = 8 x file bytes / (frames x W x H), container included. "
        "Encode fps: frames in memory (anchors) or the source file (tokcodec) to the compressed file; "
        "decode fps: compressed file to frames (anchors) or to a lossless RGB mp4 (tokcodec). "
        "BD-rate: PCHIP in log-rate against x264 (negative = fewer bits for the same quality), MS-SSIM in dB.",
    ]
    for name, clip in results["clips"].items():
        lines += ["", f"### {name}"]
        if "error" in clip:
            lines.append(f"Not measured: {clip['error']}")
            continue
        ceiling = clip.get("rgb_ceiling_psnr_y")
        lines.append(f"{clip['width']}x{clip['height']}, {clip['frames']} frames, {clip['pix_fmt']} ({clip['luma']}), "
                     f"MS-SSIM with {clip['msssim_scales']} scales"
                     + (f", RGB round-trip ceiling {ceiling:.2f} dB PSNR-Y" if ceiling is not None else "")
                     + (" / {:.2f} / {:.2f} dB PSNR-Cb / Cr".format(*clip["rgb_ceiling_psnr_cbcr"])
                        if clip.get("rgb_ceiling_psnr_cbcr") else "") + ".")
        lines += ["", "| codec | setting | bpp | PSNR-Y (dB) | MS-SSIM | VMAF | VMAF NEG | PSNR-Cb / Cr (dB) "
                      "| PSNR-YCbCr (dB) | encode fps | decode fps |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for p in clip["points"]:
            lines.append(f"| {_label(p['codec'])} | {_setting(p)} | {p['bpp']:.4f} | {p['psnr_y']:.2f} | {_fmt(p['msssim'], 4)} "
                         f"| {_fmt(p['vmaf'], 2)} | {_fmt(p.get('vmaf_neg'), 2)} "
                         f"| {_fmt(p.get('psnr_cb'), 2)} / {_fmt(p.get('psnr_cr'), 2)} "
                         f"| {_fmt(p.get('psnr_ycbcr'), 2)} | {p['encode_fps']:.1f} | {p['decode_fps']:.1f} |")
        for e in clip["errors"]:
            lines.append(f"| {_label(e['codec'])} | {_setting(e)} | failed: {e['error'].replace('|', '/')} | | | | | | | | |")
    rows = [(n, codec, row) for n, c in results["clips"].items() for codec, row in c.get("bd_rate_vs_x264", {}).items()]
    if rows:
        lines += ["", "### BD-rate against x264", "",
                  "| clip | codec | PSNR-Y | MS-SSIM (dB) | VMAF | VMAF NEG | PSNR-YCbCr |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
        for n, codec, row in rows:
            lines.append(f"| {n} | {_label(codec)} | " + " | ".join(_pct(row.get(k, "n/a")) for k in METRICS) + " |")
        for codec, row in results.get("bd_rate_mean", {}).items():
            lines.append(f"| mean over clips | {_label(codec)} | "
                         + " | ".join(_pct(row.get(k, "n/a")) for k in METRICS) + " |")
    return "\n".join(lines)


def tok_hysteresis(args: argparse.Namespace) -> Any:
    """`encode_file`'s hysteresis from --tok-hysteresis and --tok-hysteresis-rate: a threshold,
    'auto' / 'auto-decode', None (the encoder's default) or a `HysteresisSearch` at that rate."""
    if args.tok_hysteresis_rate is None:
        return args.tok_hysteresis
    from tokcodec.streaming.rate_control import HysteresisSearch

    return HysteresisSearch(decode=args.tok_hysteresis == "auto-decode", db_per_doubling=args.tok_hysteresis_rate)


def tok_refine_steps(args: argparse.Namespace) -> int | str:
    """The refinement steps tokcodec runs with: what the options ask for
    (`refine.asked_refine`), else the encoder's default: none on onnxruntime,
    "default" on torch, where it depends on the coded frame size (each point
    records its own)."""
    from tokcodec.streaming.refine import asked_refine

    asked = asked_refine(args.tok_refine, args.tok_refine_rate, args.tok_refine_ssim)
    if asked is not None:
        return asked.steps
    return 0 if args.tok_onnx else "default"


def _refine_steps(settings: dict[str, Any]) -> str:
    """The refinement steps as run ("default": the encoder's, which depends on the coded size)."""
    from tokcodec.streaming.refine import DEFAULT_MAX_PIXELS, DEFAULT_STEPS

    steps = settings.get("tok_refine", 0)
    if steps != "default":
        return str(steps)
    return f"the encoder's default ({DEFAULT_STEPS} for frames coded at up to {DEFAULT_MAX_PIXELS:,} pixels, else 0)"


def _refine_rate(settings: dict[str, Any]) -> str:
    """The refinement's rate weight as run (None: the encoder's default, which depends on the entropy model)."""
    rate = settings.get("tok_refine_rate", 0)
    return "the encoder's default" if rate is None else str(rate)


def mean_bd(clips: dict[str, Any]) -> dict[str, dict[str, float | str]]:
    """Mean of the per-clip BD-rates, where every clip has a number."""
    out: dict[str, dict[str, float | str]] = {}
    per = [c["bd_rate_vs_x264"] for c in clips.values() if "bd_rate_vs_x264" in c]
    if len(per) < 2:
        return out
    for codec in per[0]:
        row = {}
        for k in METRICS:
            vals = [p.get(codec, {}).get(k) for p in per]
            row[k] = float(np.mean(vals)) if all(isinstance(v, float) for v in vals) else "n/a (not on every clip)"
        out[codec] = row
    return out


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        kb = int(next(x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal")).split()[1])
        mem = f"{kb / 2**20:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    import torch

    versions = {
        "python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
        "av": av.__version__, "ffmpeg": getattr(av, "ffmpeg_version_info", "?"),
        "scipy": _version("scipy"), "vmaf-torch": _version("vmaf-torch"), "tokcodec": _version("tokcodec"),
    }
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    cores = os.cpu_count()
    return {
        "node": platform.node(), "cpu": cpu, "cores": cores, "memory": mem, "torch_threads": torch.get_num_threads(),
        "loadavg_start": load, "versions": versions,
        "description": f"{cores} cores ({cpu}), {mem} RAM, no GPU used, Python {versions['python']}, "
                       f"torch {versions['torch']} ({torch.get_num_threads()} threads)",
    }


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _label(codec: str) -> str:
    return "tokcodec" if codec == "tokcodec" else ANCHORS[codec].label


def _setting(p: dict[str, Any]) -> str:
    if "quality" in p:
        return f"quality {p['quality']}" + (f" ({p['bits']} bits, {p['scale']:g}x)" if "bits" in p else "")
    return f"CRF {p['crf']}" if "crf" in p else "RGB ceiling"


def _fmt(v: float | None, digits: int) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _pct(v: float | str) -> str:
    return f"{v:+.1f}%" if isinstance(v, float) else str(v)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _json_safe(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_json_safe(v) for v in x]
    return x


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=_names, default=None,
                    help="comma-separated clip names from the eval split, or paths to video files (default: every eval clip)")
    ap.add_argument("--frames", type=int, default=None, help="use only the first N frames of each clip (default: all)")
    ap.add_argument("--codecs", type=_names, default=list(CODECS), help=f"comma-separated, from {','.join(CODECS)} (default: all)")
    for name, a in ANCHORS.items():
        ap.add_argument(f"--crf-{name}", type=_ints, default=list(a.crfs), help=f"{a.label} CRF values (default {','.join(map(str, a.crfs))})")
        ap.add_argument(f"--preset-{name}", default=a.preset, help=f"{a.label} preset (default {a.preset})")
    ap.add_argument("--tok-quality", type=_ints, default=None, help="tokcodec quality levels (default: every level of the model)")
    ap.add_argument("--tok-hysteresis", type=_threshold, default=None,
                    help="tokcodec encoder's hysteresis threshold, or 'auto' / 'auto-decode' (chosen per chunk; "
                         "tokcodec encode --hysteresis; default: the codec's default)")
    ap.add_argument("--tok-hysteresis-rate", type=float, default=None,
                    help="dB of PSNR a doubling of the bits is worth to the encoder's hysteresis search "
                         "(with 'auto' or 'auto-decode'; default: the encoder's, HysteresisSearch's)")
    ap.add_argument("--tok-refine", type=int, default=None,
                    help="tokcodec encoder's refinement steps per segment (tokcodec encode --refine; "
                         "default: the encoder's, as `tokcodec encode --help` says; none with --tok-onnx)")
    ap.add_argument("--tok-refine-rate", type=float, default=None,
                    help="weight of the estimated bits in the refinement (tokcodec encode --refine-rate; "
                         "default: the encoder's, 0.5 under the context net, else 0.25)")
    ap.add_argument("--tok-refine-ssim", type=float, default=0.0,
                    help="weight of 1 - SSIM in the refinement (tokcodec encode --refine-ssim; default 0)")
    ap.add_argument("--tok-onnx", help="tokcodec on onnxruntime: an export folder or 'auto' "
                                       "(tokcodec encode/decode --onnx; default: torch)")
    ap.add_argument("--tok-scale", type=float, default=None,
                    help="tokcodec codes the frames resampled by this factor (tokcodec encode --scale; "
                         "default: each quality point's)")
    ap.add_argument("--tok-level", type=int, default=None,
                    help="tokcodec keeps this LFQ level's bits (tokcodec encode --level; default: each quality point's)")
    ap.add_argument("--tok-precision", default="auto", choices=["auto", "fp32", "bf16"],
                    help="what torch's networks compute in (tokcodec encode/decode --precision; default auto: "
                         "bfloat16 where the hardware has it)")
    ap.add_argument("--tok-headroom", default="auto", choices=HEADROOM,
                    help="tokcodec's super-whites and -blacks (tokcodec encode --headroom; default auto)")
    ap.add_argument("--tok-no-luma-layer", action="store_true",
                    help="tokcodec without its coarse luma layer (tokcodec encode --no-luma-layer)")
    ap.add_argument("--tok-no-chroma-layer", action="store_true",
                    help="tokcodec without its coarse chroma layers (tokcodec encode --no-chroma-layer)")
    ap.add_argument("--tok-sharpen", type=float, default=None,
                    help="the unsharp mask tokcodec's files ask decoders to apply (tokcodec encode --sharpen; "
                         "0 = none; default: the encoder's)")
    ap.add_argument("--model", default=None, help="tokcodec model name (default: the shipped default)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "rd", help="output folder (default bench/rd)")
    ap.add_argument("--no-vmaf", action="store_true", help="skip VMAF (the slowest metric)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads for tokcodec and the metrics (default: torch's own, one per core); "
                         "1 on a machine busy with other work, where waiting worker threads spin")
    ap.add_argument("--keep", action="store_true", help="keep the encoded files in OUT/files")
    ap.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    ap.add_argument("--traceback", action="store_true", help="print the traceback of a failing codec point")
    args = ap.parse_args(argv)
    unknown = [c for c in args.codecs if c not in CODECS]
    if unknown:
        ap.error(f"unknown codec(s) {', '.join(unknown)}; choose from {', '.join(CODECS)}")
    if args.frames is not None and args.frames < 1:
        ap.error("--frames must be at least 1")
    if args.threads is not None and args.threads < 1:
        ap.error("--threads must be at least 1")
    if args.tok_hysteresis_rate is not None:
        if not args.tok_hysteresis_rate >= 0:
            ap.error("--tok-hysteresis-rate must be >= 0")
        if args.tok_hysteresis not in (None, *AUTO_HYSTERESIS):
            ap.error("--tok-hysteresis-rate needs --tok-hysteresis auto or auto-decode (the search)")
    return args


def resolve_clips(names: list[str] | None) -> list[Path]:
    evals = corpus_clips("eval")
    if names is None:
        return evals
    by_name = {p.name: p for p in evals}
    paths = []
    for n in names:
        if n in by_name:
            paths.append(by_name[n])
        elif Path(n).is_file():
            paths.append(Path(n))
        else:
            raise SystemExit(f"rd.py: clip {n!r} is neither an eval clip present in the corpus "
                             f"({', '.join(by_name) or 'none: run ../shared/corpus/fetch.sh'}) nor a file")
    return paths


def command_line(argv: list[str] | None) -> str:
    """The command as run from the repository root."""
    exe = Path(sys.executable)
    try:
        exe = exe.relative_to(REPO)
    except ValueError:
        exe = Path(exe.name)
    return shlex.join([str(exe), "bench/rd.py", *(sys.argv[1:] if argv is None else argv)])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    log = (lambda _msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    paths = resolve_clips(args.clips)
    if not paths:
        print("rd.py: no corpus eval clips found: run ../shared/corpus/fetch.sh first", file=sys.stderr)
        return 2
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    model = None
    settings: dict[str, Any] = {"crf": {}, "presets": {}}
    if "tokcodec" in args.codecs:
        from tokcodec.codec import fingerprint, load_tokenizer

        model = load_tokenizer(args.model)
        args.tok_quality = args.tok_quality if args.tok_quality is not None else tok_quality_levels(model)
        settings.update(tokcodec_model=model.config.name, tokcodec_fingerprint=fingerprint(model))
    else:
        args.tok_quality = []
        settings.update(tokcodec_model="-", tokcodec_fingerprint="-")
    settings["tok_quality"] = args.tok_quality
    if "tokcodec" in args.codecs:
        settings["tok_hysteresis"] = DEFAULT_ENCODE_HYSTERESIS if args.tok_hysteresis is None else args.tok_hysteresis
        settings["tok_hysteresis_rate"] = args.tok_hysteresis_rate
        settings["tok_refine"] = tok_refine_steps(args)
        settings["tok_refine_rate"] = args.tok_refine_rate
        settings["tok_refine_ssim"] = args.tok_refine_ssim
        settings["tok_onnx"] = args.tok_onnx
        settings["tok_scale"] = args.tok_scale
        settings["tok_level"] = args.tok_level
        settings["tok_headroom"] = args.tok_headroom
        settings["tok_luma_layer"] = not args.tok_no_luma_layer
        settings["tok_chroma_layer"] = not args.tok_no_chroma_layer
        settings["tok_sharpen"] = args.tok_sharpen
        if not args.tok_onnx:
            from tokcodec.codec.precision import resolve_precision

            settings["tok_precision"] = resolve_precision(args.tok_precision)  # what "auto" came to here
    for c in ANCHORS:
        if c in args.codecs:
            settings["crf"][c] = getattr(args, f"crf_{c}")
            settings["presets"][c] = getattr(args, f"preset_{c}")
    vmaf, vmaf_neg, settings["vmaf"] = load_vmaf(not args.no_vmaf, log)
    settings["frames"] = args.frames
    settings["bd_rate"] = ("PCHIP of log10(bpp) over the quality range both curves cover, against x264; "
                           "the msssim column uses -10 log10(1 - MS-SSIM)")
    scorer = Scorer(vmaf, vmaf_neg)
    results: dict[str, Any] = {
        "command": command_line(argv),
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "settings": settings,
        "clips": {},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.out / "files" if args.keep else Path(tempfile.mkdtemp(prefix="tokcodec-rd-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        for path in paths:
            try:
                results["clips"][path.name] = measure_clip(path, args, scorer, model, work, log)
            except Exception as exc:  # noqa: BLE001 - an unreadable clip is reported, the others still run
                results["clips"][path.name] = {"path": str(path), "error": _one_line(exc)}
                log(f"{path.name}: FAILED: {_one_line(exc)}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    results["bd_rate_mean"] = mean_bd(results["clips"])
    results["plots"] = plot(results, args.out, log)
    tmp = args.out / "results.json.tmp"
    tmp.write_text(json.dumps(_json_safe(results), indent=1) + "\n")
    tmp.replace(args.out / "results.json")
    log(f"wrote {args.out / 'results.json'}" + "".join(f", {p}" for p in results["plots"]))
    print(markdown(results))
    measured = sum(len(c.get("points", [])) for c in results["clips"].values())
    return 0 if measured else 1


if __name__ == "__main__":
    sys.exit(main())
