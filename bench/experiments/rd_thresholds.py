"""Experiment: bench/rd.py with `--tok-hysteresis auto` searching other thresholds than the shipped ones.

Run: .venv/bin/python bench/experiments/rd_thresholds.py 0,0.1,0.2,0.3,0.4,0.5,0.6,0.8 [rd.py options...]
The first argument replaces `HysteresisSearch`'s default thresholds for the run (comma-separated,
increasing, with the start 0.2 among them); the rest is bench/rd.py's command line.
"""

import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import rd  # noqa: E402

import tokcodec.files  # noqa: E402
from tokcodec.streaming.rate_control import HysteresisSearch  # noqa: E402

THRESHOLDS = tuple(float(h) for h in sys.argv[1].split(","))


@dataclass(frozen=True)
class Thresholds(HysteresisSearch):
    thresholds: tuple[float, ...] = THRESHOLDS


tokcodec.files.HysteresisSearch = Thresholds  # what encode_file builds for "auto"
sys.exit(rd.main(sys.argv[2:]))
