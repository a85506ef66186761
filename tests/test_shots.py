"""Shot detection and clip splitting on synthetic videos with cuts at known frames."""

import numpy as np
import pytest

from storyreel.core.video import probe, read_frames
from storyreel.index.shots import detect_cuts, split_into_clips
from storyreel.synthetic import Shot, write_video


def decode(path) -> np.ndarray:
    """Every frame, through the index's own decoder (decord)."""
    return read_frames(str(path), range(probe(str(path)).num_frames))


@pytest.fixture(scope="module")
def cut_video(tmp_path_factory):
    """Seven shots (every camera motion, one cut right after a fast pan), known cut frames."""
    shots = [
        Shot("static", 30, scene_seed=11),
        Shot("pan-left", 41, scene_seed=12, speed=4.5),
        Shot("pan-right", 25, scene_seed=13),
        Shot("tilt-up", 33, scene_seed=14),
        Shot("zoom-in", 28, scene_seed=15),
        Shot("zoom-out", 36, scene_seed=16),
        Shot("tilt-down", 27, scene_seed=17),
    ]
    path = tmp_path_factory.mktemp("shots") / "cuts.mp4"
    cuts = write_video(path, shots, fps=24, size=(128, 72))
    return path, cuts, sum(s.frames for s in shots)


def test_synthetic_video_has_exact_frames_and_cuts(cut_video):
    path, cuts, total = cut_video
    assert cuts == [30, 71, 96, 129, 157, 193]
    assert len(decode(path)) == total


def test_every_known_cut_detected_within_one_frame(cut_video):
    path, cuts, _ = cut_video
    detected = detect_cuts(decode(path))
    assert len(detected) == len(cuts), detected
    for truth, found in zip(cuts, detected):
        assert abs(truth - found) <= 1, (truth, found)


def test_clips_respect_cuts_and_lengths(cut_video):
    path, cuts, total = cut_video
    fps, min_s, max_s = 24, 0.5, 1.5
    clips = split_into_clips(total, detect_cuts(decode(path)), fps, min_s=min_s, max_s=max_s)
    starts_ends = {b for clip in clips for b in clip}
    for cut in cuts:
        assert any(abs(cut - b) <= 1 for b in starts_ends), cut  # every cut is a clip boundary
        for start, end in clips:
            assert not (start < cut - 1 and end > cut + 1), (start, end, cut)  # no clip spans a cut
    for start, end in clips:
        assert min_s * fps <= end - start <= max_s * fps
    # 41-frame pan (> 36 = max) is split in two equal pieces; the 25-frame shot stays whole.
    assert (30, 50) in clips and (50, 71) in clips and (71, 96) in clips


def test_split_into_clips_rules():
    # 10 fps: shots [0,5) (too short: dropped), [5,40) (3.5 s), [40,100) (6 s > 4 s: two 3 s pieces).
    assert split_into_clips(100, [5, 40], fps=10, min_s=1.0, max_s=4.0) == [(5, 40), (40, 70), (70, 100)]
    # No cuts, 17 s at max 8 s: three nearly equal pieces, none longer than 8 s.
    assert split_into_clips(170, [], fps=10) == [(0, 57), (57, 113), (113, 170)]
    # max < 2 * min: equal pieces would be too short, so whole max-length pieces, remainder dropped.
    assert split_into_clips(50, [], fps=10, min_s=3.0, max_s=4.0) == [(0, 40)]
    assert split_into_clips(8, [], fps=10) == []
    with pytest.raises(ValueError, match="min_s=3"):
        split_into_clips(10, [], fps=10, min_s=3.0, max_s=2.0)


def test_still_and_smoothly_moving_frames_have_no_cuts():
    rng = np.random.default_rng(0)
    still = np.repeat(rng.integers(0, 255, (1, 32, 48, 3), dtype=np.uint8), 40, axis=0)
    noisy = np.clip(still + rng.integers(-3, 4, still.shape), 0, 255).astype(np.uint8)
    assert detect_cuts(noisy) == []
    # A fade (gradual change) is not a hard cut.
    other = rng.integers(0, 255, (1, 32, 48, 3), dtype=np.uint8)
    alpha = np.linspace(0, 1, 40)[:, None, None, None]
    fade = (still * (1 - alpha) + other * alpha).astype(np.uint8)
    assert detect_cuts(fade) == []
