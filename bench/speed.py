"""Encode and decode speed of the default model, torch against onnxruntime, and
the live-ingest loopback's latency and sustained frame rate.

    .venv/bin/python bench/speed.py [--threads 2] [--sizes 640x360,1280x720] [--seconds 20] [--model NAME]
        [--ingest-fps 10] [--ingest-size 256] [--ingest-max-scale auto] [--ingest-chunk-frames 65]
        [--ingest-chunk-split 33] [--no-ingest-scene-cuts] [--torch]

Speeds are frames per second of the stateful streaming pipeline (what a live
server runs: a chunk's first frame, then steps of 4 frames with cached
context), on synthetic frames (speed does not depend on content), best of
--repeat runs of one 17-frame chunk; torch in float32, and in bfloat16 too
where the CPU has it (`codec.precision`). "torch offline" is `Tokenizer.encode` /
`decode` of the whole chunk at once, for reference.

The loopback runs `tokcodec serve`'s ingest in-process with an aiortc client
whose camera films a smooth panning scene with its frame number drawn as a
4x4 block code in a corner (since the fifty-first session; before, the code
filled the frame, a scene cut every few frames): each frame coming back is
read, and glass-to-glass latency is the time from sending that camera frame
to receiving its reconstruction.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from tokcodec.codec import fingerprint, load_tokenizer
from tokcodec.codec.clips import frames_to_video
from tokcodec.codec.precision import bf16_native
from tokcodec.streaming.stateful import StreamingDecoder, StreamingEncoder, TorchEngine


def frames(n: int, h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[:h, :w]
    return np.stack([np.stack([(x + 7 * i) % 256, (y + 3 * i) % 256, (x + y) % 256], -1) for i in range(n)]).astype(np.uint8)


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def pipeline_fps(engine, clip: np.ndarray, repeat: int) -> tuple[float, float]:
    tokens: list[np.ndarray] = []

    def enc() -> None:
        tokens.clear()
        e = StreamingEncoder(engine, len(clip))
        tokens.extend(t for f in clip if (t := e.push(f)) is not None)

    te = best(enc, repeat)
    grid = np.stack(tokens)
    td = best(lambda: list(StreamingDecoder(engine).decode_chunk(grid)), repeat)
    return len(clip) / te, len(clip) / td


# ---------------------------------------------------------------- loopback

CODE = 4  # the camera draws its frame number as a CODE x CODE grid of black/white blocks
CODE_SHARE = 3  # in the top-left 1/CODE_SHARE of each side; the rest is a scene that pans


def coded_frame(i: int, h: int, w: int) -> np.ndarray:
    """Camera frame i: a smooth scene panning 2 pixels a frame, as a camera sees one (so the
    ingest's scene cuts and chunk lengths behave as they would: a block code over the whole
    frame was a scene cut every few frames), with i as a block code in the top-left corner
    (a block is 1/144 of the frame: the most bits that flip at once, 5 or 6, stay below scdet's
    threshold)."""
    y, x = np.mgrid[:h, :w].astype(np.float32)
    u = (x + 2 * i) / w * 2 * np.pi
    img = np.stack([128 + 70 * np.sin(3 * u) * np.cos(2 * np.pi * y / h),
                    128 + 60 * np.cos(5 * u + 2 * np.pi * y / h),
                    128 + 50 * np.sin(2 * u - 4 * np.pi * y / h)], -1).astype(np.uint8)
    ch, cw = h // CODE_SHARE, w // CODE_SHARE
    for b in range(CODE * CODE):
        r, c = divmod(b, CODE)
        img[r * ch // CODE : (r + 1) * ch // CODE, c * cw // CODE : (c + 1) * cw // CODE] = 230 if (i >> b) & 1 else 25
    return img


def read_code(img: np.ndarray) -> int:
    """The frame number `coded_frame` drew, from each block's middle half (a decoded frame blurs its edges)."""
    ch, cw = img.shape[0] // CODE_SHARE, img.shape[1] // CODE_SHARE
    i = 0
    for b in range(CODE * CODE):
        r, c = divmod(b, CODE)
        block = img[r * ch // CODE + ch // (4 * CODE) : (r + 1) * ch // CODE - ch // (4 * CODE),
                    c * cw // CODE + cw // (4 * CODE) : (c + 1) * cw // CODE - cw // (4 * CODE)]
        i |= int(block.mean() > 128) << b
    return i


async def loopback(seconds: float, camera_size: tuple[int, int], onnx_dir: Path | None, ingest_fps: int,
                   ingest_size: int, model: str | None, max_scale: float | str = "auto",
                   chunks: tuple[int | None, int | None] = (None, None), scene_cuts: bool = True) -> dict:
    from aiohttp import ClientSession
    from aiohttp.test_utils import TestServer
    from aiortc import RTCPeerConnection, RTCSessionDescription, VideoStreamTrack
    from aiortc.mediastreams import MediaStreamError

    from tokcodec.streaming.server import IngestConfig, TokServer

    sent: dict[int, float] = {}
    w, h = camera_size

    class Camera(VideoStreamTrack):
        def __init__(self) -> None:
            super().__init__()
            self.i = 0

        async def recv(self):
            import av

            pts, tb = await self.next_timestamp()
            frame = av.VideoFrame.from_ndarray(coded_frame(self.i, h, w), format="rgb24")
            frame.pts, frame.time_base = pts, tb
            sent[self.i] = time.monotonic()
            self.i += 1
            return frame

    with tempfile.TemporaryDirectory() as d:
        # serve's --ingest-chunk-frames and --ingest-chunk-split where given (None: its defaults)
        lengths = {k: v for k, v in zip(("chunk_frames", "split_frames"), chunks) if v is not None}
        ingest = IngestConfig(fps=ingest_fps, max_side=ingest_size, model=model, max_scale=max_scale,
                              scene_cuts=scene_cuts, **lengths)
        server = TokServer(Path(d), onnx_dir, ingest)
        async with TestServer(server.app()) as ts:
            pc = RTCPeerConnection()
            pc.addTrack(Camera())
            got: asyncio.Future = asyncio.get_running_loop().create_future()
            pc.on("track", lambda t: got.done() or got.set_result(t))
            await pc.setLocalDescription(await pc.createOffer())
            async with ClientSession() as s:
                async with s.post(str(ts.make_url("/offer")), json={"ingest": True, "sdp": pc.localDescription.sdp,
                                                                      "type": "offer"}) as r:
                    answer = await r.json()
            await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], answer["type"]))
            track = await got
            latencies, arrivals = [], []
            end = time.monotonic() + seconds
            try:
                while time.monotonic() < end:
                    frame = await asyncio.wait_for(track.recv(), 30)
                    now = time.monotonic()
                    arrivals.append(now)
                    i = read_code(frame.to_ndarray(format="rgb24"))
                    if i in sent:
                        latencies.append(now - sent[i])
            except (MediaStreamError, asyncio.TimeoutError):
                pass
            await pc.close()
            await server.shutdown()
        from tokcodec.files import tok_info

        infos = [tok_info(p) for p in Path(d).glob("live-*.tok")]
    warm = arrivals[len(arrivals) // 4 :]  # skip the start-up
    fps = (len(warm) - 1) / (warm[-1] - warm[0]) if len(warm) > 1 else 0.0
    lat = np.array(latencies[len(latencies) // 4 :]) * 1000
    return {"frames": len(arrivals), "sustained_fps": fps, "latency_ms_median": float(np.median(lat)) if lat.size else None,
            "latency_ms_p90": float(np.percentile(lat, 90)) if lat.size else None, "decoded_codes": len(latencies),
            "coded_size": infos[0]["coded_size"] if infos else None,
            "file_fps": infos[0]["fps"] if infos else None,  # below the ingest's where it fell behind
            "chunks": (infos[0]["chunks"], infos[0]["chunk_frames"], infos[0]["short_chunks"]) if infos else None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sizes", default="640x360,1280x720")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=20, help="loopback duration (0: skip it)")
    ap.add_argument("--model", default=None)
    ap.add_argument("--ingest-fps", type=int, default=10, help="loopback: rate at which the camera is recorded")
    ap.add_argument("--ingest-size", type=int, default=256, help="loopback: the camera is scaled to this many pixels")
    ap.add_argument("--ingest-max-scale", type=lambda v: v if v == "auto" else float(v), default="auto",
                    help="loopback: cap on the coding scale, or 'auto' (serve's --ingest-max-scale)")
    ap.add_argument("--ingest-chunk-frames", type=int, default=None, help="loopback: serve's --ingest-chunk-frames")
    ap.add_argument("--ingest-chunk-split", type=int, default=None, help="loopback: serve's --ingest-chunk-split")
    ap.add_argument("--no-ingest-scene-cuts", dest="scene_cuts", action="store_false",
                    help="loopback: serve's --no-ingest-scene-cuts")
    ap.add_argument("--torch", action="store_true",
                    help="loopback with serve's torch engine (--precision auto) instead of onnxruntime")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load_tokenizer(args.model)
    print(f"# {datetime.date.today()}  {platform.node()}  {platform.machine()}  torch {torch.__version__}  "
          f"{args.threads} threads  model {model.config.name} ({fingerprint(model)})")
    engines = {"torch": TorchEngine(model)}
    if bf16_native():  # what `tokcodec serve --precision auto` runs on such a CPU
        engines["torch bf16"] = TorchEngine(model, "bf16")
    with tempfile.TemporaryDirectory() as d:
        try:
            import onnxruntime as ort

            from tokcodec.streaming.onnx_export import export_onnx
            from tokcodec.streaming.onnx_runtime import OnnxEngine

            path = export_onnx(model, Path(d) / "onnx")
            engines["onnxruntime"] = OnnxEngine(path, threads=args.threads)
            print(f"# onnxruntime {ort.__version__}, providers {engines['onnxruntime'].providers}")
        except ImportError as exc:
            print(f"# onnxruntime not available: {exc}")
        print(f"{'size':>10} {'engine':12} {'encode fps':>10} {'decode fps':>10} {'enc+dec fps':>11}")
        for size in args.sizes.split(","):
            w, h = (int(v) for v in size.split("x"))
            clip = frames(17, h, w)
            with torch.no_grad():
                video = frames_to_video(clip)
                te = best(lambda: model.encode(video), args.repeat)
                grid = model.encode(video)
                td = best(lambda: model.decode(grid), args.repeat)
            rows = [("torch offline", 17 / te, 17 / td)]
            rows += [(name, *pipeline_fps(e, clip, args.repeat)) for name, e in engines.items()]
            for name, fe, fd in rows:
                print(f"{size:>10} {name:12} {fe:10.2f} {fd:10.2f} {1 / (1 / fe + 1 / fd):11.2f}", flush=True)
        if args.seconds:
            onnx_dir = Path(d) / "onnx" if "onnxruntime" in engines and not args.torch else None
            r = asyncio.run(loopback(args.seconds, (640, 360), onnx_dir, args.ingest_fps, args.ingest_size, args.model,
                                     args.ingest_max_scale, (args.ingest_chunk_frames, args.ingest_chunk_split),
                                     args.scene_cuts))
            print(f"loopback: camera 640x360 at 30 fps -> ingest at {args.ingest_fps} fps, scaled to {args.ingest_size} px, "
                  f"coding scale at most {args.ingest_max_scale}, "
                  f"{'onnxruntime' if onnx_dir else 'torch (--precision auto)'}: {r['frames']} frames back, sustained "
                  f"{r['sustained_fps']:.2f} fps, glass-to-glass latency median {r['latency_ms_median']:.0f} ms, "
                  f"p90 {r['latency_ms_p90']:.0f} ms ({r['decoded_codes']} frame codes read), coded at {r['coded_size']}, "
                  f"file written at {r['file_fps']} fps, chunks (count, up to, short) {r['chunks']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
