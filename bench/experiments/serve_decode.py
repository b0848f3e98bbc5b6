"""Experiment: how fast `tokcodec serve` makes a played file's frames, without WebRTC or a browser.

Run: .venv/bin/python bench/experiments/serve_decode.py [--quality 2,4] [--engine torch|onnx] [--precision auto]
         [--size 640x360] [--frames 40]
Encodes bench/speed.py's synthetic clip with the default model at each quality, then pulls --frames frames
from the server's `TokFileTrack` (entropy decoding, the streaming decoder, the resize to the file's size),
called directly and through `asyncio.to_thread` as its `recv` does, and prints frames per second. The
decoded size is the file's coded size: the ladder's point sets it (quality 4 codes at 2x).
"""

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from speed import frames as synthetic_frames

import tokcodec
from tokcodec.codec import load_tokenizer
from tokcodec.codec.io import VideoWriter
from tokcodec.streaming.server import IngestConfig, TokFileTrack, TokServer

ap = argparse.ArgumentParser()
ap.add_argument("--quality", default="2,4")
ap.add_argument("--engine", choices=["torch", "onnx"], default="torch")
ap.add_argument("--precision", default="auto")
ap.add_argument("--size", default="640x360")
ap.add_argument("--frames", type=int, default=40)
args = ap.parse_args()
w, h = (int(v) for v in args.size.split("x"))
n = args.frames


def rate(track: TokFileTrack, threaded: bool) -> float:
    async def pull() -> float:
        await asyncio.to_thread(track._next)  # the first frame pays for the engine's warm-up
        t0 = time.monotonic()
        for _ in range(n):
            await asyncio.to_thread(track._next)
        return n / (time.monotonic() - t0)

    if threaded:
        return asyncio.run(pull())
    track._next()
    t0 = time.monotonic()
    for _ in range(n):
        track._next()
    return n / (time.monotonic() - t0)


model = load_tokenizer()
with tempfile.TemporaryDirectory() as d:
    d = Path(d)
    served = d / "served"
    served.mkdir()
    with VideoWriter(d / "clip.mp4", 30, w, h) as writer:
        for f in synthetic_frames(n + 2 * 33, h, w):
            writer.write(f)
    onnx_dir = None
    if args.engine == "onnx":
        from tokcodec.streaming.onnx_export import export_onnx

        onnx_dir = export_onnx(model, d / "onnx")
    server = TokServer(served, onnx_dir, IngestConfig(fps=30, max_side=max(w, h)), precision=args.precision)
    for q in (int(v) for v in args.quality.split(",")):
        path = served / f"q{q}.tok"
        tokcodec.encode_file(d / "clip.mp4", path, model=model, quality=q)
        info = tokcodec.tok_info(path)
        direct = rate(TokFileTrack(path, server.engine_for), threaded=False)
        threaded = rate(TokFileTrack(path, server.engine_for), threaded=True)
        print(f"{args.size} quality {q} (coded {info['coded_size'][0]}x{info['coded_size'][1]}, {args.engine} "
              f"{args.precision}): {direct:.2f} fps direct, {threaded:.2f} fps through asyncio.to_thread")
