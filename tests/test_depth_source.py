"""Depth of real sources: cache in the index dir, bad inputs, the `storyreel depth` command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fake_index import MemoryIndex, clip_row

from storyreel.core.errors import UserError
from storyreel.depth import Playback, conditioning_for_source, create_depth_model, source_window
from storyreel.depth.media import open_source


def moving_square_frames(n=12, height=64, width=128):
    frames = np.zeros((n, height, width, 3), np.uint8)
    frames[:] = np.linspace(0, 255, width, dtype=np.uint8)[None, None, :, None]
    for t in range(n):
        frames[t, 20:40, 10 + 4 * t:30 + 4 * t] = 255
    return frames


def write_video(path: Path, frames: np.ndarray, fps=8) -> Path:
    import imageio_ffmpeg

    writer = imageio_ffmpeg.write_frames(str(path), (frames.shape[2], frames.shape[1]), fps=fps, codec="libx264",
                                         pix_fmt_out="yuv420p", macro_block_size=1, ffmpeg_log_level="error")
    writer.send(None)
    for frame in frames:
        writer.send(frame)
    writer.close()
    return path


def fake_index(path: Path, frames: np.ndarray, fingerprint: str = "sha-v1") -> MemoryIndex:
    """Clip 7 = frames 2..12 of a.mp4 (10 frames), clip 8 = an empty clip (5..5), both at 8 fps."""
    rows = [clip_row(7, video="a.mp4", start_frame=2, fps=8.0, seconds=10 / 8, size=frames.shape[2:0:-1],
                     fingerprint=fingerprint),
            clip_row(8, video="a.mp4", start_frame=5, fps=8.0, seconds=0, size=frames.shape[2:0:-1],
                     fingerprint=fingerprint)]
    return MemoryIndex(rows, videos={"a.mp4": frames}, path=path)


@pytest.fixture(scope="module")
def tiny():
    return create_depth_model("tiny", device="cpu")


def test_clip_depth_is_computed_once_and_redone_after_reindex(tmp_path, tiny):
    frames = moving_square_frames()
    index = fake_index(tmp_path, frames)
    calls = tiny.predict_calls
    cond, info = conditioning_for_source(7, model=tiny, size=(32, 48), num_frames=4, index_dir=index)
    assert cond.shape == (4, 3, 32, 48) and float(cond.min()) >= 0 and float(cond.max()) <= 1
    assert info["cache"] == "miss" and info["clip_id"] == 7 and info["source_frames"] == 10
    assert info["frame_indices"] == [0, 3, 6, 9] and info["frame_sampling"] == "subsampled"
    assert tiny.predict_calls == calls + 1
    cached = sorted((tmp_path / "depth_cache").glob("*.npy"))
    assert [p.name for p in cached] == ["clip7_tiny-seed0_32x48_f4w0-9_sha-v1.npy"]

    again, info2 = conditioning_for_source("7", model=tiny, size=(32, 48), num_frames=4, index_dir=index)
    assert info2["cache"] == "hit" and tiny.predict_calls == calls + 1   # no inference the second time
    assert np.array_equal(again.numpy(), cond.numpy())

    # Re-indexed clip (new fingerprint, new frames): fresh depth, the stale entry is gone.
    index = fake_index(tmp_path, frames[:, :, ::-1].copy(), fingerprint="sha-v2")  # the new index generation
    fresh, info3 = conditioning_for_source(7, model=tiny, size=(32, 48), num_frames=4, index_dir=index)
    assert info3["cache"] == "miss" and tiny.predict_calls == calls + 2
    assert not np.array_equal(fresh.numpy(), cond.numpy())
    assert [p.name for p in (tmp_path / "depth_cache").glob("*.npy")] == ["clip7_tiny-seed0_32x48_f4w0-9_sha-v2.npy"]

    # A short clip asked for more frames repeats frames, each distinct frame predicted once.
    frames_before = tiny.frames_predicted
    _, info4 = conditioning_for_source(7, model=tiny, size=(32, 48), num_frames=16, index_dir=index, cache=False)
    assert info4["frame_sampling"] == "repeated" and info4["cache"] == "off"
    assert tiny.frames_predicted == frames_before + 10


def test_the_source_plays_in_real_time_by_default_in_a_window_centred_in_it():
    # 16 frames at 8 fps (2 s) from an 8 s source at 8 fps: a 2 s window in the middle
    assert source_window(64, 8.0, 16, Playback(8.0)) == (list(range(24, 40)), 1.0)
    indices, speed = source_window(192, 24.0, 16, Playback(8.0))  # a 24 fps source: every third frame
    assert indices == list(range(73, 119, 3)) and speed == 1.0
    assert source_window(64, 8.0, 16, Playback(8.0, speed=2.0)) == ([round(16.5 + 2 * k) for k in range(16)], 2.0)
    # a source shorter than the window is spread over all of it, and plays slower
    assert source_window(10, 8.0, 16, Playback(8.0)) == ([0, 1, 1, 2, 2, 3, 4, 4, 5, 5, 6, 7, 7, 8, 8, 9], 0.6)
    assert source_window(64, 8.0, 4) == ([0, 21, 42, 63], None)  # no output rate: spread over the source


def test_a_clips_window_is_part_of_its_cache_name(tmp_path, tiny):
    index = fake_index(tmp_path, moving_square_frames())  # clip 7: 10 frames at 8 fps
    _, info = conditioning_for_source(7, model=tiny, size=(32, 48), num_frames=4, index_dir=index,
                                      playback=Playback(8.0))
    assert info["frame_indices"] == [3, 4, 5, 6] and info["speed"] == 1.0 and info["frame_sampling"] == "subsampled"
    _, fast = conditioning_for_source(7, model=tiny, size=(32, 48), num_frames=4, index_dir=index,
                                      playback=Playback(8.0, speed=3.0))
    assert fast["frame_indices"] == [0, 3, 6, 9] and fast["speed"] == 3.0 and fast["cache"] == "miss"
    assert sorted(p.name for p in (tmp_path / "depth_cache").glob("*.npy")) == [
        "clip7_tiny-seed0_32x48_f4w0-9_sha-v1.npy", "clip7_tiny-seed0_32x48_f4w3-6_sha-v1.npy"]


def test_bad_sources_are_one_line_errors(tmp_path, tiny):
    index = fake_index(tmp_path, moving_square_frames())
    cases = [
        (lambda: conditioning_for_source(99, model=tiny, size=(32, 32), num_frames=4, index_dir=index),
         r"clip id 99 is not in the index"),
        (lambda: conditioning_for_source(8, model=tiny, size=(32, 32), num_frames=4, index_dir=index),
         r"clip 8 in the index .* has 0 frames"),
        (lambda: conditioning_for_source(7, model=tiny, size=(32, 32), num_frames=4),
         r"7 looks like a clip id: pass the index with --index"),
        (lambda: open_source(tmp_path / "nope.mp4"), r"source .*nope\.mp4 does not exist"),
        (lambda: tiny.predict(np.zeros((0, 8, 8, 3), np.uint8)), r"the source has 0 frames"),
    ]
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00 this is not a video")
    cases.append((lambda: open_source(tmp_path / "broken.mp4"), r"cannot read video .*broken\.mp4"))
    for call, message in cases:
        with pytest.raises(UserError, match=message) as err:
            call()
        assert "\n" not in str(err.value)


def test_image_source_is_exif_rotated(tmp_path):
    from PIL import Image

    image = Image.fromarray(moving_square_frames(1, 32, 64)[0])
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    image.save(tmp_path / "photo.jpg", exif=exif)
    source = open_source(tmp_path / "photo.jpg")
    assert source.kind == "image" and source.read([0, 0]).shape == (2, 64, 32, 3)


def test_depth_command_writes_video_sidecar_raw_sheet(tmp_path, run_cli):
    video = write_video(tmp_path / "walk.mp4", moving_square_frames())
    out = tmp_path / "out" / "depth.mp4"
    proc = run_cli("depth", video, "--out", out, "--models", "tiny", "--raw", tmp_path / "raw.npy",
                   "--sheet", tmp_path / "sheet.png", "--json", check=True)
    report = json.loads(proc.stdout)
    assert report["frames"] == 12 and report["size"] == [64, 128] and report["model"] == "tiny-seed0"
    sidecar = json.loads(Path(f"{out}.json").read_text())
    assert sidecar == {"kind": "depth", "model": "tiny-seed0", "source": str(video), "frames": 12,
                       "size": [64, 128], "fps": 8.0,  # + the keys write_video gives every video's sidecar:
                       "output": str(out), "format": "mp4", "height": 64, "width": 128}
    raw = np.load(tmp_path / "raw.npy")
    assert raw.dtype == np.float32 and raw.shape == (12, 64, 128)
    from PIL import Image

    assert Image.open(tmp_path / "sheet.png").size == (6 * 192, 2 * 96)
    assert sorted(p.name for p in out.parent.iterdir()) == ["depth.mp4", "depth.mp4.json"]  # no temp files

    # The depth video is recognised as depth: conditioning reads it back without any inference.
    model = create_depth_model("tiny", device="cpu")
    cond, info = conditioning_for_source(out, model=model, size=(64, 128), num_frames=12)
    assert info["kind"] == "depth-video" and info["model"] == "tiny-seed0" and model.predict_calls == 0
    from storyreel.depth import stabilize

    expected = np.round(stabilize(raw) * 255) / 255
    assert np.abs(cond[:, 0].numpy() - expected).mean() < 0.02   # H.264 at crf 12 is near-lossless

    bad = run_cli("depth", tmp_path / "missing.mp4", "--out", tmp_path / "x.mp4", "--models", "tiny")
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "does not exist" in bad.stderr
