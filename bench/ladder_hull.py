"""Which (scale, bits per token) operating points of tokcodec lie on the rate-distortion front, per clip and metric.

    .venv/bin/python bench/ladder_hull.py RUN/results.json [RUN/results.json ...]

Each argument is a bench/rd.py run of tokcodec (any --tok-scale and
--tok-quality); their tokcodec points are pooled per clip. A point is on the
front when no other point of the same clip has at most its bpp and a higher
quality (Pareto front; the resolution ladders of adaptive streaming are
picked the same way, from the front over resolution x quantiser). Prints,
per clip, the points sorted by bpp with a mark for each metric whose front
they are on, then how many (clip, metric) fronts each operating point is on.
This is how the shipped ladder (codec/models/NAME.ladder.json) was chosen.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

from rd import METRICS

LEVEL_BITS = (6, 12, 18, 24, 30)  # levels of magvit2-4x8x8-k30, for runs that recorded only the level


def pooled_points(paths: list[str]) -> dict[str, list[dict]]:
    """Clip name -> tokcodec points of every run, each with its `scale` and `bits` (runs from before
    rd.py recorded them: the run's --tok-scale and the level's bits)."""
    clips: dict[str, list[dict]] = defaultdict(list)
    for path in paths:
        run = json.loads(Path(path).read_text())
        scale = run["settings"].get("tok_scale") or 1.0
        for name, clip in run["clips"].items():
            clips[name] += [dict(p, scale=p.get("scale", scale), bits=p.get("bits", LEVEL_BITS[p["quality"]]))
                            for p in clip["points"] if p["codec"] == "tokcodec"]
    return clips


def on_front(points: list[dict], key: str) -> set[int]:
    """Indices of the points that no other point beats: as few or fewer bits and a higher `key`."""
    return {i for i, p in enumerate(points)
            if not any(q["bpp"] <= p["bpp"] and q[key] > p[key] for q in points if q is not p)}


def main(paths: list[str]) -> None:
    counts: dict[tuple[float, int], int] = defaultdict(int)  # (scale, bits) -> fronts
    keys = [key for _, key in METRICS.values()]
    for name, points in pooled_points(paths).items():
        points.sort(key=lambda p: p["bpp"])
        fronts = {key: on_front(points, key) for key in keys}
        print(f"\n### {name}\n")
        print("| scale | bits | bpp | PSNR-Y (dB) | MS-SSIM (dB) | VMAF |")
        print("| ---: | ---: | ---: |" + " ---: |" * len(keys))
        for i, p in enumerate(points):
            cells = [f"{p[key]:.2f}{' *' if i in fronts[key] else ''}" for key in keys]
            print(f"| {p['scale']:g} | {p['bits']} | {p['bpp']:.4f} | " + " | ".join(cells) + " |")
            counts[(p["scale"], p["bits"])] += sum(i in fronts[key] for key in keys)
    print("\n(* = on that metric's front)\n\nfronts each operating point is on (clips x metrics):")
    for (scale, bits), n in sorted(counts.items()):
        print(f"  scale {scale:g}, {bits} bits: {n}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
