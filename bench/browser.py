"""Frame rate a real browser gets from `tokcodec serve` (issue 5).

    .venv/bin/python bench/browser.py [--model magvit2-4x16x16-k18-stream] [--size 640x360] [--fps 30]
        [--seconds 15] [--torch [--precision auto|fp32|bf16]] [--quality N]

Debian's chromium, headless (software video decoding), driven by selenium
(streaming/browser.py), talks to a `tokcodec serve` running in this process:

- playback: a synthetic clip of --size at --fps (a moving pattern, as in
  bench/speed.py) is encoded with the model to a .tok (at --quality, default:
  the model's default point, whose coding scale sets the decoded size: the
  default model's quality 4 decodes 2x the size; unrefined, `--refine 0`:
  refinement changes which tokens, not how fast they decode, and multiplies
  the time to encode the clip); the server decodes it
  frame by frame (onnxruntime with an export made for the run, or torch with
  --torch) and sends the frames over WebRTC at the file's rate;
- live ingest: chromium's fake camera plays a y4m clip of the same size and
  rate; the server records it at --fps with its longer side unchanged,
  encodes it frame by frame, writes the .tok and sends the reconstruction back.

For each, after a warm-up of 2 s, the page's displayed frames
(requestVideoFrameCallback) and the inbound video RTP statistics (frames
received, decoded, dropped) are read at the start and end of a --seconds
window: the rates are their differences over the window's wall time.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import frames  # noqa: E402

STATS_JS = """
const done = arguments[arguments.length - 1];
if (!pc) { done(null); return; }
pc.getStats().then((report) => {
  let out = null;
  report.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video")
      out = {received: s.framesReceived || 0, decoded: s.framesDecoded || 0, dropped: s.framesDropped || 0,
             width: s.frameWidth || 0, height: s.frameHeight || 0};
  });
  done(out);
});
"""


def sample(driver) -> dict:
    stats = driver.execute_async_script(STATS_JS) or {}
    return {"t": time.monotonic(), "shown": driver.execute_script("return window.tokcodec.framesShown"), **stats}


def window(driver, seconds: float) -> dict:
    """Rates over `seconds` after a 2 s warm-up."""
    time.sleep(2)
    a = sample(driver)
    time.sleep(seconds)
    b = sample(driver)
    dt = b["t"] - a["t"]
    out = {"seconds": round(dt, 2), "shown_fps": (b["shown"] - a["shown"]) / dt}
    for k in ("received", "decoded", "dropped"):
        if k in a and k in b:
            out[f"{k}_fps"] = (b[k] - a[k]) / dt
    out["size"] = [b.get("width"), b.get("height")]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="magvit2-4x16x16-k18-stream")
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--torch", action="store_true", help="decode and encode with torch instead of onnxruntime")
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                    help="what torch computes in (`serve --precision`)")
    ap.add_argument("--quality", type=int, help="ladder point of the played .tok (default: the model's default)")
    args = ap.parse_args(argv)
    w, h = (int(v) for v in args.size.split("x"))

    import tokcodec
    from tokcodec.codec import load_tokenizer
    from tokcodec.codec.io import VideoWriter
    from tokcodec.streaming.browser import chromium, find_chromium, wait_for, write_y4m
    from tokcodec.streaming.refine import RefineConfig
    from tokcodec.streaming.server import IngestConfig, ServerThread, TokServer

    if find_chromium() is None:
        print("browser.py: chromium and chromedriver are not installed (make browser)", file=sys.stderr)
        return 2
    model = load_tokenizer(args.model)
    n = int(args.fps * (args.seconds + 8))  # the window, the warm-up and the start-up
    results: dict = {"command": "bench/browser.py " + " ".join(sys.argv[1:] if argv is None else argv),
                     "date": datetime.date.today().isoformat(), "node": platform.node(),
                     "model": model.config.name, "engine": "torch" if args.torch else "onnxruntime"}
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        folder = d / "served"
        folder.mkdir()
        with VideoWriter(d / "clip.mp4", args.fps, w, h) as writer:
            for f in frames(n, h, w):
                writer.write(f)
        print(f"browser.py: encoding the played clip ({n} frames of {w}x{h})", file=sys.stderr)
        tokcodec.encode_file(d / "clip.mp4", folder / "clip.tok", model=model, quality=args.quality,
                             refine=RefineConfig())
        results["played"] = {k: v for k, v in tokcodec.tok_info(folder / "clip.tok").items()
                             if k in ("quality", "coded_size", "bits", "bpp")}
        write_y4m(d / "camera.y4m", n=n, width=w, height=h, fps=args.fps)
        onnx_dir = None
        if not args.torch:
            from tokcodec.streaming.onnx_export import export_onnx

            onnx_dir = export_onnx(model, d / "onnx")
        if args.torch:
            from tokcodec.codec.precision import resolve_precision

            results["precision"] = resolve_precision(args.precision, model.device)
        server = TokServer(folder, onnx_dir, IngestConfig(fps=args.fps, max_side=max(w, h), model=args.model),
                           precision=args.precision)
        with ServerThread(server) as srv, chromium(d / "camera.y4m") as driver:
            driver.get(f"http://127.0.0.1:{srv.port}/")
            wait_for(driver, "return document.querySelector('button[data-file=\"clip.tok\"]') !== null")
            driver.execute_script("window.tokcodecPlay('clip.tok')")
            wait_for(driver, "return window.tokcodec.framesShown >= 1", timeout=60)
            results["playback"] = window(driver, args.seconds)
            driver.execute_script("window.tokcodecStop(); window.tokcodec.framesShown = 0; window.tokcodecCamera()")
            wait_for(driver, "return window.tokcodec.framesShown >= 1", timeout=60)
            results["ingest"] = window(driver, args.seconds)
            driver.execute_script("window.tokcodecStop()")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
