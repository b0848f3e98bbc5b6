"""BD-rate and BD-quality of tokcodec in one bench/rd.py run against tokcodec in another, per clip and metric.

    .venv/bin/python bench/rd_compare.py ANCHOR/results.json TEST/results.json [--anchor-codec x264]

--anchor-codec takes the anchor run's points of another codec (x264, x265,
svtav1): a tokcodec-only run (`rd.py --codecs tokcodec`) against the anchors
an earlier run measured on the same clips and frames, on the same machine.

The two runs must have measured the same clips (same --frames). Against x264
a change that lifts tokcodec's top quality can make every BD-rate worse (it
is computed over the quality range both curves cover), so a change of the
encoder is judged here against the encoder before it, on its own curve.
Prints a markdown table: BD-rate (negative: the test run needs fewer bits
for the same quality; needs overlapping qualities) and BD-quality (the mean
gain at equal rate, in the metric's unit, MS-SSIM in dB; needs overlapping
rates).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import metrics
from rd import METRICS


def curve(clip: dict, codec: str = "tokcodec") -> list[dict]:
    return sorted((p for p in clip["points"] if p["codec"] == codec), key=lambda p: p["bpp"])


def main(anchor_path: str, test_path: str, anchor_codec: str = "tokcodec") -> None:
    anchor, test = (json.loads(Path(p).read_text())["clips"] for p in (anchor_path, test_path))
    print("| clip | " + " | ".join(f"{m} BD-rate | {m} BD-quality" for m in METRICS) + " |")
    print("| --- |" + " ---: | ---: |" * len(METRICS))
    for name in anchor:
        if name not in test:
            continue
        a, t = curve(anchor[name], anchor_codec), curve(test[name])
        cells = []
        for _, key in METRICS.values():
            for measure, unit in ((metrics.bd_rate, "%"), (metrics.bd_quality, "")):
                try:
                    if any(p.get(key) is None for p in a + t):
                        raise ValueError("not measured in both")
                    value = measure([p["bpp"] for p in a], [p[key] for p in a], [p["bpp"] for p in t],
                                    [p[key] for p in t])
                    cells.append(f"{value:+.{1 if unit else 2}f}{unit}")
                except ValueError as exc:
                    cells.append(f"n/a ({exc})")
        print(f"| {name} | " + " | ".join(cells) + " |")

if __name__ == "__main__":
    args = sys.argv[1:]
    codec = "tokcodec"
    if len(args) == 4 and args[2] == "--anchor-codec":
        codec, args = args[3], args[:2]
    if len(args) != 2:
        sys.exit(__doc__)
    main(args[0], args[1], codec)
