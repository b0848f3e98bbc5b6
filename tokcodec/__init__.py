"""tokcodec: a neural video codec whose compressed form is MAGVIT-v2 LFQ tokens."""

__version__ = "0.1.0"
