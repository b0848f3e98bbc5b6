"""Video file I/O: probe a file, stream its frames or clips, write H.264 mp4s.

Audio is carried along: `audio_stream_info` and `iter_audio_packets` take a
file's compressed audio packets out (to store them elsewhere, e.g. in a
.tok), and `VideoWriter` puts audio from a file or from such packets into
the mp4. Everything goes through PyAV (FFmpeg's libraries). The work is done
in video_reader.py, audio.py and video_writer.py; this module is the API.
"""

from .audio import AudioPacketData, AudioStreamInfo, audio_packets_decodable, audio_stream_info, iter_audio_packets
from .luma_range import NOMINAL, LumaRange, choose_luma_range, to_display
from .scene_cuts import SCENE_THRESHOLD, SceneCuts
from .video_reader import Clip, VideoError, VideoInfo, clip_length, iter_frames, probe, read_clips, source_luma
from .video_writer import VideoWriter, write_video

__all__ = [
    "VideoError",
    "VideoInfo",
    "probe",
    "iter_frames",
    "Clip",
    "clip_length",
    "read_clips",
    "SceneCuts",
    "SCENE_THRESHOLD",
    "source_luma",
    "LumaRange",
    "NOMINAL",
    "choose_luma_range",
    "to_display",
    "VideoWriter",
    "write_video",
    "AudioStreamInfo",
    "AudioPacketData",
    "audio_stream_info",
    "iter_audio_packets",
    "audio_packets_decodable",
]
