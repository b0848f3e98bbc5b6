"""The `tokcodec` command."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import click

from tokcodec import (AUTO_HYSTERESIS, DEFAULT_CHUNK_FRAMES, DEFAULT_ENCODE_HYSTERESIS, DEFAULT_LONGEST_CHUNK, HEADROOM,
                      __version__)

def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn expected failures into one line on stderr and exit status 1 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from tokcodec.codec.io import VideoError

        try:
            return fn(*args, **kwargs)
        except (VideoError, ValueError, OSError) as exc:
            click.echo(f"tokcodec: error: {_one_line(exc)}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("tokcodec: interrupted", err=True)
            sys.exit(130)

    return wrapper


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _onnx_option(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """--onnx: 'auto' or an existing folder."""
    if value is not None and value != "auto" and not os.path.isdir(value):
        raise click.BadParameter(f"{value}: no such folder (give an export from `tokcodec export-onnx`, or 'auto')")
    return value


def _hysteresis_option(ctx: click.Context, param: click.Parameter, value: str | None) -> float | str | None:
    """--hysteresis: a threshold >= 0, 'auto' or 'auto-decode'."""
    if value is None or value in AUTO_HYSTERESIS:
        return value
    try:
        threshold = float(value)
    except ValueError:
        threshold = -1.0
    if not threshold >= 0:  # also refuses nan
        raise click.BadParameter(f"{value!r} is neither a number >= 0 nor 'auto' or 'auto-decode'")
    return threshold


# `codec.precision`'s choices, spelled out so that the CLI need not import torch to parse them
PRECISION = click.option("--precision", default="auto", show_default=True, type=click.Choice(["auto", "fp32", "bf16"]),
                         help="what torch's networks compute in (not onnxruntime's): auto = bfloat16 where the "
                              "hardware has it (CPUs with AVX512-BF16 or AMX, CUDA), about twice the speed for the "
                              "same quality; else float32")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tokcodec")
def main() -> None:
    """tokcodec: a neural video codec whose compressed form is visual tokens."""


@main.command()
@click.argument("source", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="mp4 to write")
@click.option("--model", default=None, help="shipped tokenizer name (see `tokcodec models`)")
@click.option("--clip-frames", default=DEFAULT_CHUNK_FRAMES, show_default=True, help="frames per clip (1 + 4k)")
@click.option("--lossless", is_flag=True, help="write the output losslessly (H.264 RGB, qp 0)")
@click.option("--force", is_flag=True, help="overwrite OUTPUT if it exists")
@click.option("--quiet", "-q", is_flag=True, help="no progress line")
@PRECISION
@user_errors
def reconstruct(source: str, output: str, model: str | None, clip_frames: int, lossless: bool, force: bool, quiet: bool,
                precision: str) -> None:
    """Encode SOURCE to tokens and decode them straight back to an mp4."""
    from tokcodec.api import reconstruct_file

    report = reconstruct_file(source, output, model=model, clip_frames=clip_frames, lossless=lossless, force=force,
                              quiet=quiet, precision=precision)
    if not quiet:
        _print_report(report)


@main.command()
@click.option("--out-dir", default="demo-output", show_default=True, type=click.Path(file_okay=False))
@user_errors
def demo(out_dir: str) -> None:
    """Encode the real sample clip that ships with tokcodec to .tok, decode it, and say what happened."""
    from tokcodec import codec
    from tokcodec.api import video_psnr
    from tokcodec.codec import DEFAULT_MODEL, available_models
    from tokcodec.codec.io import probe
    from tokcodec.files import decode_file, encode_file, open_tok

    sample = Path(codec.__file__).parent / "samples" / "sample.mp4"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok, mp4 = out / "sample.tok", out / "sample-decoded.mp4"
    info = probe(sample)
    click.echo(f"input   {sample} (real footage, see codec/samples/README.md)")
    click.echo(f"        {info.frames} frames, {info.width}x{info.height} @ {info.fps} fps, {sample.stat().st_size} bytes of H.264")
    e = encode_file(sample, tok, force=True, quiet=False)
    with open_tok(tok) as reader:
        header = reader.header
    click.echo(f"encode  {tok}: {e.bytes} bytes = {8 * e.bytes / (e.frames * info.width * info.height):.4f} bpp, "
               f"quality {header.quality} ({header.bits}-bit tokens, coded at {header.coded_size[0]}x{header.coded_size[1]}), "
               f"{8 * e.token_bytes / e.tokens:.2f} bits/token after entropy coding, {e.chunks} chunks, "
               f"{_refined(e.refine_steps)}, {e.frames / e.seconds:.1f} fps")
    d = decode_file(tok, mp4, force=True, quiet=False)
    click.echo(f"decode  {mp4}: {d.frames} frames, {d.frames / d.seconds:.1f} fps")
    click.echo(f"quality PSNR (RGB) of the decoded video against the input: {video_psnr(sample, mp4):.2f} dB")
    trained = {m.name: m.trained for m in available_models()}[DEFAULT_MODEL]
    if not trained:
        click.echo(
            "note    the shipped tokenizer is not trained yet (fixed-seed initialisation), so the\n"
            "        reconstruction is noise; the pipeline itself is what this demo exercises."
        )
    else:
        click.echo(
            "note    the shipped weights are an early checkpoint (a short CPU training run): expect a\n"
            "        blurry reconstruction; see README.md and bench/RESULTS.md for measured quality."
        )


def _refined(steps: int) -> str:
    """How an encode report says its refinement: "refined 1 step", "refined 0 steps"."""
    return f"refined {steps} step{'' if steps == 1 else 's'}"


def _hidden_sizes(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int] | None:
    """N1,N2: two positive layer widths."""
    if value is None:
        return None
    try:
        sizes = tuple(int(v) for v in value.split(","))
    except ValueError:
        sizes = ()
    if len(sizes) != 2 or min(sizes) < 1:
        raise click.BadParameter(f"expected two positive widths N1,N2, got {value!r}")
    return sizes


def _print_report(r: Any) -> None:
    t, h, w = r.token_grid
    click.echo(f"video   {r.frames} frames, {r.width}x{r.height} @ {float(r.fps):.3f} fps ({r.fps})")
    click.echo(f"model   {r.model}: {r.bits_per_token}-bit LFQ tokens, {r.clips} clip(s) of {t}x{h}x{w} tokens")
    click.echo(f"tokens  {r.tokens} in all = {r.raw_bpp:.4f} bits/pixel/frame before entropy coding")
    click.echo(f"quality PSNR (RGB) {r.psnr_rgb:.2f} dB")
    click.echo(f"speed   {r.seconds:.1f} s, {r.frames / max(r.seconds, 1e-9):.1f} fps encode+decode on CPU")
    click.echo(f"output  {r.output}")


@main.command()
@click.argument("source", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help=".tok file to write")
@click.option("--model", default=None, help="shipped tokenizer name (see `tokcodec models`)")
@click.option("--quality", default=None, type=int,
              help="point of the model's rate ladder, 0 = lowest rate: a coding scale and bits per token "
                   "[default: the model's, see `tokcodec models`]")
@click.option("--chunk-frames", default=DEFAULT_LONGEST_CHUNK, show_default=True,
              help="the longest independently decodable chunk (1 + 4k frames); shorter: finer seeking, more bits")
@click.option("--chunk-split", default=DEFAULT_CHUNK_FRAMES, show_default=True, type=click.IntRange(min=0),
              help="a longer chunk ends after this many frames (1 + 4k), or a further multiple of this less 1, "
                   "where the picture moves (its first latent frame costs less than 1.35x a later one): a steady "
                   "picture keeps long chunks, which save its intra frames' bits, a moving one gets short ones, "
                   "whose fresh start pays; 0 = never")
@click.option("--hysteresis", default=None, metavar="H|auto|auto-decode", callback=_hysteresis_option,
              help="latents smaller than this keep the previous latent frame's bit: fewer bits for a little "
                   "distortion; 0 = off; 'auto' = chosen per chunk by the bits and the distortion the latent "
                   "predicts (about as fast as a fixed threshold; more quality per bit); 'auto-decode' = by "
                   "decoding each candidate (3 to 8 decodes a chunk: about 6x slower) [default: auto]")
@click.option("--refine", default=None, type=click.IntRange(min=0),
              help="encoder-side search: N gradient steps per segment for the tokens the decoder reconstructs best "
                   "(the decoder is unchanged); on natural video one step saves 16 to 25% of the bits of none for "
                   "3 to 5x the encoding time, a second 5 to 8% more for 1.2 to 2.2x again; a segment whose "
                   "last step still gained 3% takes one more; 0 = off "
                   "[default: 2 up to 1080p's pixel count coded, else 0; 0 with --onnx]")
@click.option("--refine-rate", default=None, type=click.FloatRange(min=0),
              help="the search's weight on the tokens' estimated bits: higher, fewer bits "
                   "[default: 0.5 where the context net prices them (quality 0-6), else 0.25]")
@click.option("--refine-ssim", default=0.0, show_default=True, type=click.FloatRange(min=0),
              help="the search's weight on 1 - SSIM next to the squared error (higher MS-SSIM, lower PSNR and VMAF at equal bits)")
@click.option("--scale", default=None, type=click.FloatRange(0.25, 4.0),
              help="code the frames resampled by this factor (decoded back to the source size): above 1 a finer "
                   "token grid, more bits and compute, better quality [default: the --quality point's]")
@click.option("--level", default=None, type=click.IntRange(min=0),
              help="keep this LFQ level's bits per token [default: the --quality point's, see `tokcodec models`]")
@click.option("--headroom", default="auto", show_default=True, type=click.Choice(HEADROOM),
              help="Y' above 235 (super-whites) or below 16 in a limited-range source: 'keep' codes them (the "
                   "decoder writes them back), 'clip' clips them as players show them, 'auto' keeps them where "
                   "clipping would cost more than 38 dB of Y' PSNR")
@click.option("--luma-layer/--no-luma-layer", default=True, show_default=True,
              help="send each chunk's coarse luma layer (its luma error over cells of 8 to 32 pixels) where "
                   "it pays for its bytes (0.3 to 1.3 dB PSNR-Y on natural clips); unrefined chunks are decoded "
                   "once more to measure it")
@click.option("--chroma-layer/--no-chroma-layer", default=True, show_default=True,
              help="the same for Cb and Cr (cells of 32 or 64 pixels): the tokens get colour wrong over whole "
                   "regions (+1 to +7 dB Cb/Cr PSNR for 1%-7% more bytes at the default point); --no-chroma-layer: a file a .tok "
                   "1.7 reader can read, and with --no-luma-layer too, a 1.6 reader")
@click.option("--sharpen", default=None, type=click.FloatRange(0, 255 / 16),
              help="unsharp mask of the decoded luma that the file asks decoders to apply (sigma 1.5 px, detail "
                   "within 2 codes left alone, amount in 1/16ths): the decoder's squared-error frames are soft; 0.5 "
                   "costs about 0.06 dB PSNR-Y for 3 to 4 VMAF (and 2 to 3 VMAF NEG) on natural clips; 0 = off, a "
                   "file tuned for PSNR [default: 0.5]")
@click.option("--scene-cuts/--no-scene-cuts", default=True, show_default=True,
              help="end a chunk early where a scene cut (FFmpeg's scdet) starts the next, so that the new scene is "
                   "coded from its own first frame (13% fewer bits at equal PSNR-Y on a clip with a cut); "
                   "--no-scene-cuts: a file a .tok 1.9 reader can read")
@click.option("--frames", "max_frames", default=None, type=click.IntRange(min=1), help="encode only the first N frames")
@click.option("--force", is_flag=True, help="overwrite OUTPUT if it exists")
@click.option("--quiet", "-q", is_flag=True, help="no progress line")
@click.option("--onnx", "onnx_dir", callback=_onnx_option,
              help="folder from `tokcodec export-onnx` of the model, or 'auto' (an export cached on first use): "
                   "encode with onnxruntime (faster; no --refine)")
@PRECISION
@user_errors
def encode(source: str, output: str, model: str | None, quality: int | None, chunk_frames: int,
           chunk_split: int, hysteresis: float | str | None,
           refine: int | None, refine_rate: float | None, refine_ssim: float, scale: float | None, level: int | None,
           headroom: str, luma_layer: bool, chroma_layer: bool, sharpen: float | None, scene_cuts: bool,
           max_frames: int | None, force: bool, quiet: bool, onnx_dir: str | None, precision: str) -> None:
    """Encode a video file to a .tok bitstream."""
    from tokcodec.files import encode_file
    from tokcodec.streaming.chunk_split import ChunkSplit
    from tokcodec.streaming.refine import asked_refine

    r = encode_file(source, output, model=model, quality=quality, chunk_frames=chunk_frames, max_frames=max_frames,
                    hysteresis=hysteresis, force=force, quiet=quiet, onnx=onnx_dir, scale=scale, level=level,
                    refine=asked_refine(refine, refine_rate, refine_ssim), precision=precision, headroom=headroom,
                    luma_layer=luma_layer, chroma_layer=chroma_layer, sharpen=sharpen, scene_cuts=scene_cuts,
                    split=ChunkSplit(chunk_split) if chunk_split else None)
    for warning in r.warnings:
        click.echo(f"tokcodec: warning: {warning}", err=True)
    if not quiet:
        click.echo(f"{r.output}: {r.frames} frames in {r.chunks} chunks, {r.bytes} bytes, quality {r.quality} "
                   f"({r.bits}-bit tokens, coded at {r.coded_size[0]}x{r.coded_size[1]}), "
                   f"{8 * r.token_bytes / r.tokens:.2f} bits/token after entropy coding, "
                   f"{_refined(r.refine_steps)}, {r.frames / r.seconds:.1f} fps")
        if (DEFAULT_ENCODE_HYSTERESIS if hysteresis is None else hysteresis) in AUTO_HYSTERESIS:
            counts = Counter(r.thresholds)
            click.echo("hysteresis per chunk: " + ", ".join(f"{h:g} x{counts[h]}" for h in sorted(counts)))
        if not r.luma_range.nominal:
            click.echo(f"kept the source's headroom: Y' {r.luma_range.black}..{r.luma_range.white} coded")
        if r.layers:
            click.echo(f"coarse layers in {r.layers} of {r.chunks} chunks: {r.layer_bytes} bytes")
        if r.cuts:
            click.echo(f"{r.cuts} chunk(s) ended early at a scene cut")
        if r.splits:
            points = [str(p) for p in ChunkSplit(chunk_split).points(chunk_frames)]
            after = " or ".join([", ".join(points[:-1]), points[-1]] if len(points) > 1 else points)
            click.echo(f"{r.splits} chunk(s) ended after {after} frames where the picture moves")
        if r.sharpen:
            click.echo(f"decoders sharpen the luma: amount {r.sharpen.amount:g}, sigma {r.sharpen.sigma:g} px, "
                       f"threshold {r.sharpen.threshold:g} (--sharpen 0: none)")


@main.command()
@click.argument("source", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="mp4 to write")
@click.option("--start", default=0, show_default=True, type=click.IntRange(min=0), help="first frame to decode")
@click.option("--frames", default=None, type=click.IntRange(min=1), help="number of frames (default: to the end)")
@click.option("--lossless", is_flag=True, help="write the mp4 losslessly (H.264 RGB, qp 0; Y'CbCr 4:4:4 where "
              "the file keeps its source's headroom)")
@click.option("--sharpen/--no-sharpen", default=True, show_default=True,
              help="apply the unsharp mask the file asks for (`tokcodec info`); --no-sharpen: the decoder's "
                   "squared-error frames")
@click.option("--sharpen-amount", default=None, type=click.FloatRange(0, 255 / 16),
              help="the file's unsharp mask at this amount instead (a viewer's sharpness setting, in 1/16ths; "
                   "its sigma and threshold, or the default mask's where the file asks for none); 0 = none")
@click.option("--force", is_flag=True, help="overwrite OUTPUT if it exists")
@click.option("--quiet", "-q", is_flag=True, help="no progress line")
@click.option("--onnx", "onnx_dir", callback=_onnx_option,
              help="folder from `tokcodec export-onnx` of the file's model, or 'auto' (an export cached on first "
                   "use): decode with onnxruntime (faster)")
@PRECISION
@user_errors
def decode(source: str, output: str, start: int, frames: int | None, lossless: bool, sharpen: bool,
           sharpen_amount: float | None, force: bool, quiet: bool, onnx_dir: str | None, precision: str) -> None:
    """Decode a .tok bitstream (or a range of its frames) to an mp4."""
    from tokcodec.files import decode_file

    if sharpen_amount is not None:
        if not sharpen:
            raise ValueError("--no-sharpen and --sharpen-amount contradict each other: leave out one of them")
        sharpen = sharpen_amount

    r = decode_file(source, output, start=start, frames=frames, lossless=lossless, force=force, quiet=quiet,
                    onnx=onnx_dir, precision=precision, sharpen=sharpen)
    if not quiet:
        click.echo(f"{r.output}: frames {r.start}..{r.start + r.frames - 1} from {r.chunks} chunks, "
                   f"{r.frames / r.seconds:.1f} fps")


@main.command()
@click.argument("source", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@user_errors
def info(source: str, as_json: bool) -> None:
    """Describe a .tok file: geometry, model, chunks, size and rate."""
    from tokcodec.codec.luma_range import NOMINAL
    from tokcodec.files import tok_info

    d = tok_info(source)
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    coded = "" if d["coded_size"] == [d["width"], d["height"]] else " (coded at {}x{})".format(*d["coded_size"])
    click.echo(f"{source}: {d['width']}x{d['height']}{coded}, {d['frames']} frames @ {d['fps']} fps "
               f"({d['duration']:.2f} s)")
    click.echo(f"  model {d['model']} (weights {d['fingerprint']}), quality {d['quality']}, "
               f"{d['bits']}-bit tokens, grid {'x'.join(map(str, d['token_grid']))} per chunk")
    short = f" ({d['short_chunks']} ended early: at scene cuts or where the picture moves)" if d["short_chunks"] else ""
    click.echo(f"  {d['chunks']} chunks of up to {d['chunk_frames']} frames{short}, {d['bytes']} bytes, "
               f"{d['bits_per_token']:.3f} bits/token, {d['bpp']:.4f} bpp, {d['kbps']:.1f} kbit/s")
    if d["audio"]:
        click.echo(f"  audio {d['audio']['codec']} {d['audio']['rate']} Hz {d['audio']['layout']}")
    if d["layer_chunks"]:
        planes = ", ".join(f"{name} {d['layer_planes'][key]}" for key, name in (("y", "Y'"), ("cb", "Cb"), ("cr", "Cr")))
        click.echo(f"  coarse layers in {d['layer_chunks']} of {d['chunks']} chunks ({planes}): "
                   f"{d['layer_bytes']} bytes")
    if d["luma_range"] != [NOMINAL.black, NOMINAL.white]:
        click.echo("  Y' {}..{} coded ({}): the source's headroom kept".format(*d["luma_range"], d["matrix"]))
    if d["sharpen"][0]:
        click.echo("  decoders sharpen the luma: amount {:g}, sigma {:g} px, threshold {:g}".format(*d["sharpen"]))


@main.command()
@click.argument("source", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help=".npz to write")
@click.option("--force", is_flag=True, help="overwrite OUTPUT if it exists")
@user_errors
def tokens(source: str, output: str, force: bool) -> None:
    """Export the token grids of a .tok file (with its metadata) to an .npz."""
    from tokcodec.token_archive import export_tokens

    export_tokens(source, output, force=force)


@main.command()
@click.argument("source", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help=".tok file to write")
@click.option("--force", is_flag=True, help="overwrite OUTPUT if it exists")
@user_errors
def pack(source: str, output: str, force: bool) -> None:
    """Entropy-code token grids from an .npz (as `tokcodec tokens` writes) into a .tok file."""
    from tokcodec.token_archive import pack_tokens

    pack_tokens(source, output, force=force)


def _ingest_scale_option(ctx: click.Context, param: click.Parameter, value: str) -> float | str:
    """--ingest-max-scale: 'auto' or a number from 1 to the ladder's MAX_SCALE."""
    from tokcodec.ladder import MAX_SCALE

    if value == "auto":
        return value
    try:
        scale = float(value)
    except ValueError:
        scale = float("nan")
    if not 1 <= scale <= MAX_SCALE:
        raise click.BadParameter(f"{value!r} is neither 'auto' nor a number from 1 to {MAX_SCALE:g}")
    return scale


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True)
@click.option("--onnx", "onnx_dir", callback=_onnx_option,
              help="folder from `tokcodec export-onnx`, or 'auto' (exports cached on first use): encode and decode "
                   "with onnxruntime")
@click.option("--ingest-fps", default=10, show_default=True, help="frame rate at which a live camera is recorded")
@click.option("--ingest-size", default=256, show_default=True, help="a live camera is scaled to at most this many pixels")
@click.option("--ingest-model", default=None, help="shipped tokenizer that records live cameras (default: the default model)")
@click.option("--ingest-quality", default=None, type=int,
              help="point of the rate ladder a live camera is coded at, as `encode --quality` (default: the model's)")
@click.option("--ingest-max-scale", default="auto", show_default=True, callback=_ingest_scale_option,
              help="cap on the point's coding scale for a live camera (1 to 4), a capped point taking more bits per "
                   "token instead; 'auto': the largest, from the point's own down to 1, that this engine codes in "
                   "real time, timed on the camera's first frame. At 256 px the default point's 2x takes 25%-41% "
                   "fewer bits than 1x for the same PSNR-Y and 4x the compute: real time with torch in bfloat16 on "
                   "2 cores of a CPU that has it, not with onnxruntime")
@click.option("--ingest-sharpen", default=0.5, show_default=True, type=click.FloatRange(0, 255 / 16),
              help="unsharp mask of a live camera's decoded luma, as `encode --sharpen` (0: none)")
@click.option("--ingest-chunk-frames", default=65, show_default=True, type=click.IntRange(min=1),
              help="frames per live chunk (1 + 4k for the default model): a chunk reaches the growing file when it "
                   "ends (6.5 s after its first frame at 65 frames and 10 fps)")
@click.option("--ingest-chunk-split", default=33, show_default=True, type=click.IntRange(min=0),
              help="a longer live chunk ends after this many frames (1 + 4k) where the picture moves, as "
                   "`encode --chunk-split` decides; 0 = never")
@click.option("--ingest-layers/--no-ingest-layers", default=True, show_default=True,
              help="each live chunk's coarse luma and chroma layers where they pay, as `encode` sends them "
                   "(in the file; the frames sent back to the camera go out before the chunk's layers are chosen)")
@click.option("--ingest-scene-cuts/--no-ingest-scene-cuts", default=True, show_default=True,
              help="end a live chunk early where a scene cut starts the next, as `encode --scene-cuts` does")
@PRECISION
@user_errors
def serve(directory: str, host: str, port: int, onnx_dir: str | None, ingest_fps: int, ingest_size: int,
          ingest_model: str | None, ingest_quality: int | None, ingest_max_scale: float | str, ingest_sharpen: float,
          ingest_chunk_frames: int, ingest_chunk_split: int, ingest_layers: bool, ingest_scene_cuts: bool,
          precision: str) -> None:
    """Serve the .tok files in DIRECTORY to browsers over WebRTC, and record live cameras into it."""
    from tokcodec.codec import load_tokenizer
    from tokcodec.files import check_chunk_frames
    from tokcodec.ladder import model_ladder
    from tokcodec.streaming.server import IngestConfig
    from tokcodec.streaming.server import serve as run

    # An unknown model or point fails here, in one line, before the server starts.
    tokenizer = load_tokenizer(ingest_model)
    model_ladder(tokenizer.config).point(ingest_quality)
    check_chunk_frames(tokenizer, ingest_chunk_frames, "--ingest-chunk-frames")
    if ingest_chunk_split:
        check_chunk_frames(tokenizer, ingest_chunk_split, "--ingest-chunk-split")
    ingest = IngestConfig(fps=ingest_fps, max_side=ingest_size, quality=ingest_quality, max_scale=ingest_max_scale,
                          model=ingest_model, sharpen=ingest_sharpen, layers=ingest_layers,
                          chunk_frames=ingest_chunk_frames, split_frames=ingest_chunk_split,
                          scene_cuts=ingest_scene_cuts)
    run(directory, host, port, onnx_dir, ingest, precision)


@main.command("export-onnx")
@click.option("--model", default=None, help="shipped tokenizer name (see `tokcodec models`)")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="folder to write the graphs into")
@click.option("--force", is_flag=True, help="replace OUTPUT if it exists")
@user_errors
def export_onnx(model: str | None, output: str, force: bool) -> None:
    """Export the streaming encoder and decoder steps to ONNX (checked with onnx.checker)."""
    from tokcodec.api import check_output
    from tokcodec.codec import load_tokenizer
    from tokcodec.streaming.onnx_export import GRAPHS
    from tokcodec.streaming.onnx_export import export_onnx as export

    check_output(output, force)
    path = export(load_tokenizer(model), output)
    click.echo(f"{path}: {', '.join(g + '.onnx' for g in GRAPHS)}, manifest.json")


@main.command("fit-prior")
@click.argument("videos", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True))
@click.option("-o", "--output", "directory", required=True, type=click.Path(file_okay=False, exists=True),
              help="folder to write NAME.prior-kB.npz into (one per LFQ level)")
@click.option("--model", default=None, help="shipped tokenizer name (see `tokcodec models`)")
@click.option("--max-chunks", default=3, show_default=True,
              help=f"chunks of {DEFAULT_CHUNK_FRAMES} frames (as `encode` cuts them) used per video")
@click.option("--net-steps", default=None, type=click.IntRange(min=0),
              help="training steps of each context net (entropy models 3 and 4: levels of at most 8 bits, and a "
                   "ladder level's bits above a lower level's); 0: no net "
                   "[default: 20000, `ContextNetConfig`]")
@click.option("--net-hidden", default=None, callback=_hidden_sizes, metavar="N1,N2",
              help="the context net's two hidden layer widths [default: 256,256]")
@user_errors
def fit_prior(videos: tuple[str, ...], directory: str, model: str | None, max_chunks: int, net_steps: int | None,
              net_hidden: tuple[int, int] | None) -> None:
    """Fit a model's entropy priors on (training) VIDEOS; ship them in codec/models/.

    The context net learns from the tokens `encode` writes at the default
    quality's scale and at 1x (hysteresis chosen per chunk); a net for a
    level's bits above a lower level's (entropy model 4), from its quality
    levels' tokens (a level only the pixel cap reaches: as the first net)."""
    from tokcodec.bitstream.context_net import MAX_NET_BITS
    from tokcodec.context_net_fit import ContextNetConfig
    from tokcodec.priors import fit_model_priors

    def report(bits, fit):
        what = "context net" if bits <= MAX_NET_BITS else "top bits' context net"
        click.echo(f"{bits}-bit {what}: {fit.float_bits:.3f} bits/token in float, {fit.int_bits:.3f} in integers, "
                   f"on {fit.tokens} training tokens")

    defaults = ContextNetConfig()
    config = ContextNetConfig(hidden=net_hidden or defaults.hidden,
                              steps=defaults.steps if net_steps is None else net_steps)
    net = config if config.steps else None
    for path, prior in fit_model_priors(list(videos), directory, model=model, max_chunks=max_chunks, net=net,
                                        report=report):
        n = len(prior.nets)
        kind = f"{n} context nets and " if n > 1 else "context net and " if n else ""
        click.echo(f"{path}: prior {prior.id:08x}, {kind}{len(prior.tables)} tables, {prior.bits}-bit tokens")


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []})
@click.pass_context
def train(ctx: click.Context) -> None:
    """Train the tokenizer on a folder of videos (see `tokcodec train --help`)."""
    from tokcodec.codec.train import main as train_main

    sys.exit(train_main(ctx.args))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def models(as_json: bool) -> None:
    """List the tokenizers that ship with tokcodec."""
    from tokcodec.codec import DEFAULT_MODEL, available_models
    from tokcodec.ladder import model_ladder

    rows = [
        {
            "name": m.name,
            "default": m.name == DEFAULT_MODEL,
            "trained": m.trained,
            "bits": m.config.bits,
            "compression": f"{m.config.temporal_downsample}x{m.config.spatial_downsample}x{m.config.spatial_downsample}",
            "levels": list(m.config.lfq.level_bits),  # bits per token of each LFQ level (`encode --level`)
            "quality_levels": [
                {"quality": q, "scale": p.scale, "level": p.level, "bits": bits, "entropy_prior": _prior_id(m.name, bits)}
                for q, p in enumerate(ladder.points)
                for bits in [m.config.lfq.level_bits[p.level]]
            ],
            "default_quality": ladder.default,
            "max_upscaled_pixels": ladder.max_upscaled_pixels,
        }
        for m in available_models()
        for ladder in [model_ladder(m.config)]
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        flags = ("default, " if r["default"] else "") + ("trained" if r["trained"] else "untrained (fixed seed)")
        scaled = any(lv["scale"] != 1 for lv in r["quality_levels"])
        levels = ", ".join(f"{lv['quality']}: {lv['bits']} bits" + (f" at {lv['scale']:g}x" if scaled else "")
                           for lv in r["quality_levels"])
        click.echo(f"{r['name']:24s} {r['compression']:8s} {r['bits']}-bit tokens  {flags}; quality levels {levels} "
                   f"(default {r['default_quality']})")


def _prior_id(model: str, bits: int) -> str | None:
    from tokcodec.priors import load_prior

    prior = load_prior(model, bits)
    return None if prior is None else f"{prior.id:08x}"
