"""The WebRTC server, driven by an aiortc client (no browser): playback, ingest, bad offers."""

from __future__ import annotations

import asyncio
import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from media import make_av_source, noise_frames, scene_cut_frames, smooth_frames

pytest.importorskip("aiortc")
from aiohttp import ClientSession  # noqa: E402
from aiohttp.test_utils import TestServer  # noqa: E402
from aiortc import RTCPeerConnection, RTCSessionDescription, VideoStreamTrack  # noqa: E402
from aiortc.mediastreams import MediaStreamError  # noqa: E402

import tokcodec  # noqa: E402
from tokcodec.cli import main  # noqa: E402
from tokcodec.streaming.chunk_split import ChunkSplit  # noqa: E402
from tokcodec.streaming.server import IngestConfig, TokServer  # noqa: E402


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("serve")
    make_av_source(d / "src.mp4", n=9, fps=25)  # 64x48
    assert CliRunner().invoke(main, ["encode", str(d / "src.mp4"), "-o", str(d / "clip.tok"), "--chunk-frames", "9", "-q"]).exit_code == 0
    (d / "src.mp4").unlink()
    data = bytearray((d / "clip.tok").read_bytes())
    data[-40] ^= 0xFF  # damages the index/trailer region
    (d / "broken.tok").write_bytes(b"TOKC" + b"\0" * 40)
    return d


async def _offer(url: str, pc: RTCPeerConnection, body: dict) -> tuple[int, dict]:
    await pc.setLocalDescription(await pc.createOffer())
    async with ClientSession() as s:
        async with s.post(url + "/offer", json={**body, "sdp": pc.localDescription.sdp, "type": "offer"}) as r:
            return r.status, await r.json()


async def _receive(track, n: int, timeout: float = 60) -> list:
    frames = []
    try:
        while len(frames) < n:
            frames.append(await asyncio.wait_for(track.recv(), timeout))
    except MediaStreamError:
        pass
    return frames


async def _play(url: str, name: str, n: int) -> list:
    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly")
    got: asyncio.Future = asyncio.get_running_loop().create_future()
    pc.on("track", lambda t: got.set_result(t))
    status, answer = await _offer(url, pc, {"file": name})
    assert status == 200, answer
    await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], answer["type"]))
    frames = await _receive(await asyncio.wait_for(got, 30), n)
    await pc.close()
    return frames


def run(coro):
    return asyncio.run(coro)


async def forgotten(server: TokServer, timeout: float = 10) -> bool:
    """Wait until the server has dropped every connection (clients closed theirs)."""
    for _ in range(int(timeout * 10)):
        if not server.pcs:
            return True
        await asyncio.sleep(0.1)
    return False


def test_two_viewers_get_the_file_at_its_size(folder: Path) -> None:
    async def main_() -> None:
        server = TokServer(folder)
        async with TestServer(server.app()) as ts:
            url = str(ts.make_url("")).rstrip("/")
            a, b = await asyncio.gather(_play(url, "clip.tok", 5), _play(url, "clip.tok", 5))
            for frames in (a, b):
                assert len(frames) == 5 and (frames[0].width, frames[0].height) == (64, 48)
            assert await forgotten(server)  # closed connections are forgotten
    run(main_())


def test_viewers_decoding_at_once_get_the_frames_one_alone_gets(tmp_path: Path) -> None:
    """Playback decodes in worker threads beside other viewers' (and the ingest's) engine steps and
    entropy decoding: nothing they share may leak between them."""
    import threading

    from tokcodec.streaming.server import TokFileTrack

    for name, q, n in (("a", 3, 13), ("b", 5, 9)):  # two files of different points and chunking, one engine
        make_av_source(tmp_path / f"{name}.mp4", n=n, fps=25)
        assert CliRunner().invoke(main, ["encode", str(tmp_path / f"{name}.mp4"), "-o", str(tmp_path / f"{name}.tok"),
                                         "--chunk-frames", "9", "--quality", str(q), "--precision", "fp32"]).exit_code == 0
    server = TokServer(tmp_path, precision="fp32")

    def play(name: str) -> np.ndarray:
        track = TokFileTrack(tmp_path / f"{name}.tok", server.engine_for)
        frames = []
        try:
            while (frame := track._next()) is not None:
                frames.append(frame)
            return np.stack(frames)
        finally:
            track.stop()

    alone = {name: play(name) for name in "ab"}
    assert len(alone["a"]) == 13 and len(alone["b"]) == 9
    viewers = ["a", "b", "a", "b"]
    got: list = [None] * len(viewers)
    threads = [threading.Thread(target=lambda i=i: got.__setitem__(i, play(viewers[i]))) for i in range(len(viewers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for name, frames in zip(viewers, got):
        np.testing.assert_array_equal(frames, alone[name])


@pytest.mark.parametrize(
    "body, status, message",
    [
        ({"file": "nope.tok"}, 404, "no such file"),
        ({"file": "../clip.tok"}, 400, "name of a .tok"),
        ({"file": "broken.tok"}, 422, "broken.tok"),
        ({}, 400, "name of a .tok"),
    ],
)
def test_bad_requests_get_a_clear_error_and_the_server_goes_on(folder: Path, body, status, message) -> None:
    async def main_() -> None:
        server = TokServer(folder)
        async with TestServer(server.app()) as ts:
            url = str(ts.make_url("")).rstrip("/")
            pc = RTCPeerConnection()
            pc.addTransceiver("video", direction="recvonly")
            got_status, answer = await _offer(url, pc, body)
            await pc.close()
            assert got_status == status and message in answer["error"]
            async with ClientSession() as s:
                for payload in (b"not json", b"[1, 2]", json.dumps({"sdp": 5, "type": "offer"}).encode()):
                    async with s.post(url + "/offer", data=payload) as r:
                        assert r.status == 400 and "malformed offer" in (await r.json())["error"]
                async with s.get(url + "/files") as r:
                    names = {f["name"]: f for f in await r.json()}
                    assert names["clip.tok"]["width"] == 64 and "error" in names["broken.tok"]
                    info = tokcodec.tok_info(folder / "clip.tok")
                    assert names["clip.tok"]["coded_size"] == info["coded_size"]
                    assert names["clip.tok"]["quality"] == info["quality"] and names["clip.tok"]["kbps"] > 0
                async with s.get(url + "/") as r:
                    assert r.status == 200 and "RTCPeerConnection" in await r.text()
            assert len(await _play(url, "clip.tok", 2)) == 2  # still serving
            assert await forgotten(server)
    run(main_())


class Camera(VideoStreamTrack):
    """A synthetic camera: smooth moving frames at 25 fps."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.frames = smooth_frames(n, 96, 128)
        self.i = 0

    async def recv(self):
        import av

        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame.from_ndarray(self.frames[self.i % len(self.frames)], format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        self.i += 1
        return frame


def test_live_ingest_writes_a_decodable_tok_and_sends_back_the_reconstruction(folder: Path, tmp_path: Path) -> None:
    async def main_() -> str:
        server = TokServer(folder, ingest=IngestConfig(fps=10, max_side=64, chunk_frames=9, max_scale=1))
        async with TestServer(server.app()) as ts:
            url = str(ts.make_url("")).rstrip("/")
            pc = RTCPeerConnection()
            pc.addTrack(Camera(50))
            got: asyncio.Future = asyncio.get_running_loop().create_future()
            pc.on("track", lambda t: got.done() or got.set_result(t))
            status, answer = await _offer(url, pc, {"ingest": True})
            assert status == 200, answer
            await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], answer["type"]))
            frames = await _receive(await asyncio.wait_for(got, 30), 12)
            assert len(frames) == 12 and (frames[0].width, frames[0].height) == (64, 48)
            live = folder / answer["file"]
            assert live.is_file()  # playable while it grows: the first chunks are in
            await pc.close()
            for _ in range(100):  # the server notices the client left and closes the file
                if not server.tasks:
                    break
                await asyncio.sleep(0.1)
            assert not server.tasks
            return answer["file"]
    name = run(main_())
    info = tokcodec.tok_info(folder / name)
    assert (info["width"], info["height"], info["fps"]) == (64, 48, "10/1") and info["frames"] >= 12
    # Coded at the ingest size; the default point's upscaling became bits per token (Ladder.for_frame).
    from tokcodec.codec import load_tokenizer
    from tokcodec.ladder import model_ladder

    config = load_tokenizer().config
    point = model_ladder(config).for_frame(None, 64, 48, max_scale=1.0)
    assert info["coded_size"] == [64, 48] and info["bits"] == config.lfq.level_bits[point.level]
    assert info["sharpen"] == [0.5, 1.5, 2.0]  # the default mask, which decoders apply as to any file
    out = tmp_path / "live.mp4"
    tokcodec.decode_file(folder / name, out)
    assert tokcodec.codec.io.probe(out).frames == info["frames"]
    (folder / name).unlink()


def _ingest(path: Path, track=None, reply=None, **settings):
    """A live ingest of the default model (torch, float32) writing `path`: 10 fps, 64 pixels,
    9-frame chunks unless `settings` say otherwise."""
    from tokcodec.codec import load_tokenizer
    from tokcodec.streaming.server import Ingest
    from tokcodec.streaming.stateful import TorchEngine

    tokenizer = load_tokenizer()
    cfg = IngestConfig(**{"fps": 10, "max_side": 64, "chunk_frames": 9, **settings})
    return Ingest(track, path, tokenizer, TorchEngine(tokenizer, "fp32"), cfg, reply)


def _live(tmp_path: Path, name: str, frames: np.ndarray, **settings) -> np.ndarray:
    """The reconstruction live ingest sends back for `frames`, its .tok written to tmp_path/name."""
    ingest = _ingest(tmp_path / name, **settings)
    out = [f for frame in frames for f in ingest._push(frame)]
    ingest._close()
    return np.stack(out)


def _assert_same_frames(a: np.ndarray, b: np.ndarray) -> None:
    """Frames the stateful decoder sent back against the file's offline decode: the same float32
    networks run over different groupings of frames, so a rare value rounds the other way."""
    assert a.shape == b.shape
    diff = np.abs(a.astype(int) - b)
    assert diff.max() <= 1 and np.mean(diff > 0) < 1e-4


def _with_file_layers(path: Path, frames: np.ndarray) -> np.ndarray:
    """Frames sent back by live ingest (no mask) with the layers its file's chunks carry applied."""
    from tokcodec.codec.luma_layer import apply as apply_layers
    from tokcodec.files import open_tok

    with open_tok(path) as reader:
        chunks = [reader.read_chunk(e.index) for e in reader.entries]
        matrix = reader.header.luma_matrix
    assert sum(c.frames for c in chunks) == len(frames)
    out, start = [], 0
    for c in chunks:
        out.append(apply_layers(frames[start:start + c.frames], c.layers, matrix=matrix))
        start += c.frames
    return np.concatenate(out)


def test_live_reconstruction_has_the_mask_its_tok_asks_for(tmp_path: Path) -> None:
    from tokcodec.codec.sharpen import Sharpen, sharpen

    frames = smooth_frames(9, 48, 64)
    plain = _live(tmp_path, "plain.tok", frames, sharpen=0, max_scale=1)  # auto would time the machine: pinned
    sharp = _live(tmp_path, "sharp.tok", frames, sharpen=1.5, max_scale=1)
    assert len(plain) == 9 and not np.array_equal(plain, sharp)
    np.testing.assert_array_equal(sharp, sharpen(plain, Sharpen.of_amount(1.5)))
    assert tokcodec.tok_info(tmp_path / "sharp.tok")["sharpen"] == [1.5, 1.5, 2.0]
    assert tokcodec.tok_info(tmp_path / "plain.tok")["sharpen"] == [0, 0, 0]
    with pytest.raises(ValueError, match="--sharpen must be in"):
        IngestConfig(sharpen=-1)


def test_live_ingest_codes_at_the_ladder_scale_it_is_allowed(tmp_path: Path) -> None:
    from tokcodec.codec import load_tokenizer
    from tokcodec.codec.io import iter_frames
    from tokcodec.ladder import model_ladder

    frames = smooth_frames(9, 48, 64)
    back = _live(tmp_path, "x3.tok", frames, max_scale=3, sharpen=0)
    config = load_tokenizer().config
    point = model_ladder(config).for_frame(None, 64, 48, max_scale=3)
    assert point.scale > 1  # the default point upscales small frames
    info = tokcodec.tok_info(tmp_path / "x3.tok")
    assert info["coded_size"] == [round(64 * point.scale), round(48 * point.scale)]
    assert info["bits"] == config.lfq.level_bits[point.level] and back.shape == (9, 48, 64, 3)
    # What the camera gets back, with the layers the file adds, is what any decoder of the file shows.
    tokcodec.decode_file(tmp_path / "x3.tok", tmp_path / "x3.mp4", lossless=True, precision="fp32")
    _assert_same_frames(np.stack(list(iter_frames(tmp_path / "x3.mp4"))), _with_file_layers(tmp_path / "x3.tok", back))
    with pytest.raises(ValueError, match="--ingest-max-scale must be 'auto' or in"):
        IngestConfig(max_scale=0.5)


def test_live_ingest_sends_the_layers_that_pay_in_its_file(tmp_path: Path) -> None:
    from tokcodec.codec.io import iter_frames
    from tokcodec.codec.luma_layer import apply as apply_layers
    from tokcodec.files import open_tok

    frames = np.stack(smooth_frames(13, 48, 64))  # a chunk of 9 and a short last one of 4
    back = _live(tmp_path, "layers.tok", frames, max_scale=1, sharpen=0)
    plain = _live(tmp_path, "plain.tok", frames, max_scale=1, sharpen=0, layers=False)
    np.testing.assert_array_equal(back, plain)  # the frames sent back do not wait for the layers
    with open_tok(tmp_path / "plain.tok") as reader:
        assert not reader.header.luma_layer
    with open_tok(tmp_path / "layers.tok") as reader:
        assert reader.header.luma_layer and [e.frames for e in reader.entries] == [9, 4]
        first = reader.read_chunk(reader.entries[0].index)
        matrix = reader.header.luma_matrix
    assert first.layers  # chosen by the score encode uses: on these frames they pay
    tokcodec.decode_file(tmp_path / "layers.tok", tmp_path / "layers.mp4", lossless=True, precision="fp32")
    tokcodec.decode_file(tmp_path / "plain.tok", tmp_path / "plain.mp4", lossless=True, precision="fp32")
    decoded, without = (np.stack(list(iter_frames(tmp_path / f"{n}.mp4"))) for n in ("layers", "plain"))
    assert len(decoded) == len(without) == 13
    # The file decodes to the frames sent back plus its layers, nearer the source than without them.
    _assert_same_frames(decoded[:9], apply_layers(back[:9], first.layers, matrix=matrix))
    error = [np.mean((f.astype(float) - frames) ** 2) for f in (decoded, without)]
    assert error[0] < error[1]


def test_live_ingest_ends_a_chunk_at_a_scene_cut_and_sends_its_frames_back(tmp_path: Path) -> None:
    from tokcodec.codec.io import iter_frames
    from tokcodec.files import open_tok

    frames = np.stack(scene_cut_frames(11, 10))  # the cut at frame 11: chunks of 9, 2 (coded padded), 9, 1
    back = _live(tmp_path, "cut.tok", frames, max_scale=1, sharpen=0)
    plain = _live(tmp_path, "plain.tok", frames, max_scale=1, sharpen=0, scene_cuts=False)
    # every frame comes back, the two before the cut too; without cuts, the last chunk's 2 still
    # waiting for a whole latent step at the end do not
    assert back.shape == frames.shape and len(plain) == 19
    with open_tok(tmp_path / "cut.tok") as reader:
        assert [(e.first_frame, e.frames) for e in reader.entries] == [(0, 9), (9, 2), (11, 9), (20, 1)]
    with open_tok(tmp_path / "plain.tok") as reader:
        assert [e.frames for e in reader.entries] == [9, 9, 3]
    tokcodec.decode_file(tmp_path / "cut.tok", tmp_path / "cut.mp4", lossless=True, precision="fp32")
    _assert_same_frames(np.stack(list(iter_frames(tmp_path / "cut.mp4"))), _with_file_layers(tmp_path / "cut.tok", back))
    # the new scene, coded from its own first frame, comes back nearer its source
    error = [np.mean((f[11:19].astype(float) - frames[11:19]) ** 2) for f in (back, plain)]
    assert error[0] < error[1]


def test_live_ingest_ends_a_long_chunk_after_its_first_frames_where_the_picture_moves(tmp_path: Path) -> None:
    from tokcodec.codec import load_tokenizer
    from tokcodec.codec.io import iter_frames, write_video
    from tokcodec.files import open_tok
    from tokcodec.ladder import model_ladder
    from tokcodec.streaming.refine import RefineConfig
    from tokcodec.streaming.stateful import DEFAULT_HYSTERESIS

    steady, moving = np.stack([smooth_frames(1, 48, 64)[0]] * 17), noise_frames(17, 48, 64)
    settings = {"chunk_frames": 17, "split_frames": 9, "max_scale": 1, "sharpen": 0, "scene_cuts": False}

    def lengths(name: str) -> list[int]:
        with open_tok(tmp_path / name) as reader:
            return [e.frames for e in reader.entries]

    _live(tmp_path, "steady.tok", steady, **settings)
    back = _live(tmp_path, "moving.tok", moving, **settings)
    nine = _live(tmp_path, "nine.tok", moving, **{**settings, "chunk_frames": 9})
    _live(tmp_path, "whole.tok", moving, **{**settings, "split_frames": 0})
    assert lengths("steady.tok") == [17] and lengths("whole.tok") == [17]
    assert lengths("moving.tok") == lengths("nine.tok") == [9, 8]
    # The same decision and tokens as a file's encoder (unrefined, the fixed hysteresis) ...
    write_video(tmp_path / "moving.mp4", moving, 10, lossless=True)
    point = model_ladder(load_tokenizer().config).for_frame(None, 64, 48, max_scale=1)  # the ingest's
    tokcodec.encode_file(tmp_path / "moving.mp4", tmp_path / "file.tok", chunk_frames=17, split=ChunkSplit(9),
                         scale=point.scale, level=point.level, hysteresis=DEFAULT_HYSTERESIS, refine=RefineConfig(), luma_layer=False, chroma_layer=False,
                         scene_cuts=False, sharpen=0, precision="fp32")
    assert lengths("file.tok") == [9, 8]
    live, file = ([c.tokens for c in tokcodec.read_tokens(tmp_path / n)] for n in ("moving.tok", "file.tok"))
    assert all(np.array_equal(a, b) for a, b in zip(live, file, strict=True))
    # ... and every frame comes back at once, as with 9-frame chunks
    np.testing.assert_array_equal(back[:9], nine[:9])
    assert len(back) == len(nine) == 14  # the 3 still waiting for a whole latent step at the end do not
    tokcodec.decode_file(tmp_path / "moving.tok", tmp_path / "moving-out.mp4", lossless=True, precision="fp32")
    assert len(list(iter_frames(tmp_path / "moving-out.mp4"))) == 17
    with pytest.raises(ValueError, match="--ingest-chunk-split must be 1 \\+ 4k"):  # not a latent frame's end
        _live(tmp_path, "bad.tok", moving, **{**settings, "split_frames": 8})
    # a chunk that goes on is weighed again 8 frames on: still for 9 frames, then moving
    _live(tmp_path, "wakes.tok", np.concatenate([steady[:9], moving, moving[:7]]), **{**settings, "chunk_frames": 25})
    assert lengths("wakes.tok") == [17, 9, 7]  # the noise after goes on splitting at 9


def test_live_ingest_stops_at_a_chunk_it_could_not_write_and_keeps_the_ones_before(tmp_path: Path, monkeypatch,
                                                                                    caplog) -> None:
    import tokcodec.streaming.server as server
    from tokcodec.files import open_tok

    calls = []
    real = server.choose_layers

    def failing_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(server, "choose_layers", failing_second)
    ingest = _ingest(tmp_path / "live.tok", max_scale=1, sharpen=0)
    frames = smooth_frames(27, 48, 64)
    with pytest.raises(OSError, match="No space left"):  # the second chunk's failure, when the third ends
        for frame in frames:
            ingest._push(frame)
    ingest._close()  # what was written stays: the first chunk, without a gap after it
    with open_tok(tmp_path / "live.tok") as reader:
        assert [e.frames for e in reader.entries] == [9]
    tokcodec.decode_file(tmp_path / "live.tok", tmp_path / "live.mp4", lossless=True, precision="fp32")

    # Under `serve` the ingest ends with a line in the log, and the camera's track ends.
    class Ended(VideoStreamTrack):
        async def recv(self):
            raise MediaStreamError

    calls.clear()
    reply = server.QueueTrack(10)
    for _ in range(64):
        reply.queue.put_nowait(np.zeros((2, 2, 3), np.uint8))  # nobody reads the reply any more
    ingest = _ingest(tmp_path / "ended.tok", Ended(), reply, max_scale=1, sharpen=0)

    def failing_close() -> None:
        raise OSError("disk gone")

    ingest._close = failing_close
    asyncio.run(asyncio.wait_for(ingest.run(), 10))
    assert "ended.tok: live ingest stopped: disk gone" in caplog.text
    assert reply.queue.qsize() == 64 and reply.queue._queue[-1] is None


def test_live_ingest_that_falls_behind_writes_the_frame_rate_it_kept(tmp_path: Path, caplog) -> None:
    import time

    import tokcodec.streaming.server as server

    class ShortCamera(Camera):
        async def recv(self):
            if self.i == len(self.frames):
                raise MediaStreamError
            return await super().recv()

    ingest = _ingest(tmp_path / "slow.tok", ShortCamera(75), server.QueueTrack(10), max_scale=1, sharpen=0,
                     layers=False)
    push, started, pushed = ingest._push, [], []

    def slow_push(rgb: np.ndarray) -> list[np.ndarray]:
        started.append(time.monotonic())
        out = push(rgb)
        time.sleep(0.25)  # a machine that codes 4 frames a second, at most
        pushed.append(time.monotonic())
        return out

    ingest._push = slow_push
    asyncio.run(asyncio.wait_for(ingest.run(), 30))  # 3 s of camera
    info = tokcodec.tok_info(tmp_path / "slow.tok")
    fps = float(Fraction(info["fps"]))
    assert info["frames"] == ingest.frames == len(pushed) >= 4 and 2 <= fps <= 4.5  # not the 10 fps asked for
    # It plays in the time it was coded in: from the first frame (its clock starts once it is coded)
    # to the last one's sampling, and that one's frame time.
    assert abs(info["frames"] / fps - (started[-1] - pushed[0] + 0.1)) < 0.1
    assert "live coding falls behind 10 fps here" in caplog.text and "written at" in caplog.text


def test_live_ingest_picks_the_largest_scale_its_engine_keeps_up_with(tmp_path: Path) -> None:
    from tokcodec.codec import load_tokenizer
    from tokcodec.codec.io import iter_frames
    from tokcodec.ladder import model_ladder
    from tokcodec.streaming.server import live_point

    ladder = model_ladder(load_tokenizer().config)
    top = ladder.for_frame(6, 256, 192)
    assert top.scale == 3
    tried = []

    def fits_up_to(limit: float):
        def fits(point) -> bool:
            tried.append(point.scale)
            return point.scale <= limit
        return fits

    assert live_point(ladder, 6, 256, 192, "auto", fits_up_to(9)) == top and tried == [3]
    tried.clear()
    assert live_point(ladder, 6, 256, 192, "auto", fits_up_to(2.2)) == ladder.for_frame(6, 256, 192, 2)
    assert tried == [3, 2.5, 2]
    tried.clear()
    assert live_point(ladder, 6, 256, 192, "auto", fits_up_to(0)) == ladder.for_frame(6, 256, 192, 1)
    assert tried == [3, 2.5, 2, 1.5]  # 1 needs no timing: it is the floor
    assert live_point(ladder, 6, 256, 192, 1.5, fits_up_to(0)) == ladder.for_frame(6, 256, 192, 1.5)
    # With this machine's engine: whichever scale it picked, the file says it and decodes to what was sent back.
    frames = smooth_frames(9, 48, 64)
    back = _live(tmp_path, "auto.tok", frames, sharpen=0)
    info = tokcodec.tok_info(tmp_path / "auto.tok")
    chosen = [s for s in (2, 1.5, 1) if info["coded_size"] == [round(64 * s), round(48 * s)]]
    point = ladder.for_frame(None, 64, 48, chosen[0]) if chosen else None
    assert point and info["bits"] == load_tokenizer().config.lfq.level_bits[point.level]
    tokcodec.decode_file(tmp_path / "auto.tok", tmp_path / "auto.mp4", lossless=True, precision="fp32")
    _assert_same_frames(np.stack(list(iter_frames(tmp_path / "auto.mp4"))),
                        _with_file_layers(tmp_path / "auto.tok", back))


def test_token_transport_sends_chunks_that_form_the_same_tok(folder: Path, tmp_path: Path) -> None:
    from tokcodec.streaming.server import read_token_messages

    async def main_() -> list[bytes]:
        server = TokServer(folder)
        async with TestServer(server.app()) as ts:
            url = str(ts.make_url("")).rstrip("/")
            pc = RTCPeerConnection()
            channel = pc.createDataChannel("tokens")
            messages: list[bytes] = []
            done = asyncio.Event()

            @channel.on("message")
            def on_message(m) -> None:
                messages.append(m)
                if m == b"\x02":
                    done.set()

            status, answer = await _offer(url, pc, {"file": "clip.tok", "transport": "tokens"})
            assert status == 200, answer
            await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], answer["type"]))
            await asyncio.wait_for(done.wait(), 30)
            await pc.close()
            pc2 = RTCPeerConnection()  # no data channel: refused
            pc2.addTransceiver("video", direction="recvonly")
            status, answer = await _offer(url, pc2, {"file": "clip.tok", "transport": "tokens"})
            await pc2.close()
            assert status == 400 and "data channel" in answer["error"]
            assert await forgotten(server)
            return messages
    messages = run(main_())
    assert messages[0][:1] == b"\x00" and messages[-1] == b"\x02"
    (tmp_path / "got.tok").write_bytes(read_token_messages(messages))
    a = list(tokcodec.read_tokens(folder / "clip.tok"))
    b = list(tokcodec.read_tokens(tmp_path / "got.tok"))
    assert len(a) == len(b) == 1 and all(np.array_equal(x.tokens, y.tokens) for x, y in zip(a, b))


def test_engines_follow_the_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--onnx auto: one export per model and weights, made once into the
    cache; a fixed --onnx folder serves only its own weights (torch the rest)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from tokcodec.codec import fingerprint
    from tokcodec.streaming.onnx_export import export_onnx
    from tokcodec.streaming.stateful import TorchEngine

    monkeypatch.setenv("TOKCODEC_CACHE", str(tmp_path / "cache"))
    server = TokServer(tmp_path, "auto")
    default, stream = server.tokenizer(None), server.tokenizer("magvit2-4x16x16-k18-stream")
    for tokenizer in (default, stream):
        engine = server.engine(tokenizer)
        assert (engine.model, engine.fingerprint) == (tokenizer.config.name, fingerprint(tokenizer))
        assert server.engine(tokenizer) is engine
    assert len(list((tmp_path / "cache" / "onnx").iterdir())) == 2
    export_onnx(stream, tmp_path / "stream")
    server = TokServer(tmp_path, tmp_path / "stream")
    assert server.engine(server.tokenizer("magvit2-4x16x16-k18-stream")).model == "magvit2-4x16x16-k18-stream"
    assert isinstance(server.engine(server.tokenizer(None)), TorchEngine)
    assert TokServer(tmp_path).engine(default).__class__ is TorchEngine


def test_a_file_coded_at_a_finer_grid_plays_at_its_own_size(tmp_path: Path) -> None:
    """`encode --scale`: the player resamples the decoded frames back to the displayed size."""
    from tokcodec.codec import load_tokenizer
    from tokcodec.files import encode_file
    from tokcodec.streaming.server import TokFileTrack
    from tokcodec.streaming.stateful import TorchEngine

    make_av_source(tmp_path / "in.mp4", n=9, fps=10)
    encode_file(tmp_path / "in.mp4", tmp_path / "s.tok", chunk_frames=9, scale=1.5)
    track = TokFileTrack(tmp_path / "s.tok", lambda h: TorchEngine(load_tokenizer(h.model)))
    try:
        frames = list(track.frames)
    finally:
        track.reader.close()
    assert len(frames) == 9 and {f.shape for f in frames} == {(48, 64, 3)}


def test_a_file_that_kept_super_whites_plays_as_players_show_it(tmp_path: Path) -> None:
    """A widened Y' span (`encode --headroom`): viewers get display RGB, the file's
    decoded RGB (its coarse layers and sharpening applied, as `decode` applies them)
    mapped through `to_display`, not the codec's own RGB."""
    from media import make_superwhite_source

    from tokcodec.codec import load_tokenizer
    from tokcodec.codec.luma_layer import apply as apply_layers
    from tokcodec.codec.luma_range import LumaRange, to_display
    from tokcodec.codec.sharpen import Sharpen, sharpen
    from tokcodec.files import decode_chunk, encode_file, header_sharpen, open_tok
    from tokcodec.streaming.server import TokFileTrack
    from tokcodec.streaming.stateful import TorchEngine

    make_superwhite_source(tmp_path / "sky.mp4", n=9)
    report = encode_file(tmp_path / "sky.mp4", tmp_path / "s.tok", chunk_frames=9, quality=2, refine=None,
                         sharpen=Sharpen(2, 1.5))  # strong and uncored: the sky is smooth
    assert report.luma_range == LumaRange(16, 255)
    track = TokFileTrack(tmp_path / "s.tok", lambda h: TorchEngine(load_tokenizer(h.model)))
    try:
        played = np.stack(list(track.frames))
    finally:
        track.reader.close()
    with open_tok(tmp_path / "s.tok") as reader:
        chunk = reader.read_chunk(0)
        h = reader.header
        codec_rgb = apply_layers(decode_chunk(load_tokenizer(h.model), h, chunk.tokens, chunk.frames),
                                 chunk.layers, matrix=h.luma_matrix)  # with its coarse layers, if any
        soft = to_display(codec_rgb, report.luma_range).astype(int)
        codec_rgb = sharpen(codec_rgb, header_sharpen(h), h.luma_matrix)
    shown = to_display(codec_rgb, report.luma_range).astype(int)
    assert np.abs(played.astype(int) - shown).max() <= 2  # the engines' own rounding aside
    assert np.abs(played.astype(int) - soft).max() > 2  # sharpened, as `decode` does
    assert np.abs(codec_rgb.astype(int) - shown).max() > 10  # and that differs from the codec's RGB


@pytest.mark.parametrize("args, code, message", [
    (["--ingest-quality", "9"], 1, "quality 9 is not available"),
    (["--ingest-model", "no-such-model"], 1, "no-such-model"),
    (["--ingest-max-scale", "0.5"], 2, "neither 'auto' nor a number from 1 to 4"),
    (["--ingest-max-scale", "fast"], 2, "neither 'auto' nor a number from 1 to 4"),
    (["--ingest-chunk-frames", "20"], 1, "--ingest-chunk-frames must be 1 + 4k"),
    (["--ingest-chunk-frames", "0"], 2, "0 is not in the range x>=1"),
    (["--ingest-chunk-split", "8"], 1, "--ingest-chunk-split must be 1 + 4k"),
    (["--ingest-chunk-split", "-1"], 2, "-1 is not in the range x>=0"),
    (["--ingest-chunk-split", "1"], 1, "--ingest-chunk-split must be 0 (never) or more than 1 frame"),
])
def test_serve_refuses_a_bad_ingest_setting_before_it_starts(tmp_path: Path, args, code, message) -> None:
    r = CliRunner().invoke(main, ["serve", str(tmp_path), *args])
    assert r.exit_code == code and message in r.output and "Traceback" not in r.output


def test_serve_hands_its_ingest_settings_to_the_server(tmp_path: Path, monkeypatch) -> None:
    import tokcodec.streaming.server as server

    seen = []
    monkeypatch.setattr(server, "serve", lambda directory, host, port, onnx, ingest, precision: seen.append(ingest))
    args = ["--ingest-fps", "12", "--ingest-chunk-frames", "17", "--ingest-chunk-split", "9", "--no-ingest-scene-cuts",
            "--no-ingest-layers", "--ingest-sharpen", "0", "--ingest-max-scale", "1"]
    r = CliRunner().invoke(main, ["serve", str(tmp_path), *args])
    assert r.exit_code == 0, r.output
    assert seen == [IngestConfig(fps=12, chunk_frames=17, split_frames=9, scene_cuts=False, layers=False, sharpen=0,
                                 max_scale=1)]
    assert seen[0].split == ChunkSplit(9)
    CliRunner().invoke(main, ["serve", str(tmp_path)])
    assert seen[1] == IngestConfig() and seen[1].scene_cuts
