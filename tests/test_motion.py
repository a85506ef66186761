"""Camera-motion labels of synthesized shots, decoded back through decord (codec effects included)."""

import cv2
import numpy as np
import pytest

from storyreel.core.video import probe, read_frames
from storyreel.index.motion import ANALYSIS_WIDTH, MOTION_LABELS, _analysis_frames, camera_motion, clip_zoom_rate
from storyreel.synthetic import SHOT_KINDS, Shot, scene_image, write_video

WIDTH = 160


@pytest.fixture(scope="module")
def decoded_shots(tmp_path_factory):
    """{kind: decoded frames} for one shot of every kind, cut out of a single video at the known cuts."""
    shots = [Shot(kind, 24, scene_seed=40 + n) for n, kind in enumerate(SHOT_KINDS)]
    path = tmp_path_factory.mktemp("motion") / "kinds.mp4"
    cuts = write_video(path, shots, fps=24, size=(WIDTH, 90))
    frames = read_frames(str(path), range(probe(str(path)).num_frames))  # decord, as the index builder reads
    bounds = [0, *cuts, len(frames)]
    return {shot.kind: frames[a:b] for shot, a, b in zip(shots, bounds[:-1], bounds[1:])}


@pytest.mark.parametrize("kind", SHOT_KINDS)
def test_label_of_every_camera_motion(decoded_shots, kind):
    assert camera_motion(decoded_shots[kind]).label == kind
    # Sparser sampling, as the index builder does it, gives the same label.
    assert camera_motion(decoded_shots[kind][::3], frame_step=3).label == kind


def test_magnitude_is_pixels_per_frame_at_analysis_width(decoded_shots):
    expected = 3.0 * ANALYSIS_WIDTH / WIDTH  # Shot speed 3 output px/frame, measured at ANALYSIS_WIDTH
    for kind in ("pan-left", "pan-right", "tilt-up", "tilt-down"):
        assert camera_motion(decoded_shots[kind]).magnitude == pytest.approx(expected, rel=0.15), kind
        sparse = camera_motion(decoded_shots[kind][::2], frame_step=2)
        assert sparse.magnitude == pytest.approx(expected, rel=0.15), kind
    assert camera_motion(decoded_shots["static"]).magnitude < 0.05


def test_rotation_is_dynamic_and_single_frame_is_static():
    scene = scene_image(7, 120, 160)
    turn = [cv2.getRotationMatrix2D((80, 60), 2.0 * i, 1.0) for i in range(12)]
    frames = np.stack([cv2.warpAffine(scene, m, (160, 120), borderMode=cv2.BORDER_REFLECT) for m in turn])
    motion = camera_motion(frames)
    assert motion.label == "dynamic" and motion.magnitude > 0.5
    assert camera_motion(frames[:1]) == ("static", 0.0)
    assert set(SHOT_KINDS) | {"dynamic"} == set(MOTION_LABELS)


def test_slow_zoom_of_one_percent_per_frame_is_a_zoom_not_static(tmp_path):
    # 1% scale per frame moves content < STATIC_FLOOR px/frame: every frame pair alone reads static.
    shots = [Shot("zoom-in", 24, scene_seed=60, speed=1.0), Shot("zoom-out", 24, scene_seed=61, speed=1.0),
             Shot("static", 24, scene_seed=62)]
    path = tmp_path / "slow.mp4"
    cuts = write_video(path, shots, fps=24, size=(WIDTH, 90))
    frames = read_frames(str(path), range(probe(str(path)).num_frames))
    bounds = [0, *cuts, len(frames)]
    clips = {shot.kind: frames[a:b] for shot, a, b in zip(shots, bounds[:-1], bounds[1:])}
    for kind in ("zoom-in", "zoom-out"):
        assert camera_motion(clips[kind]).label == kind
        # As the index samples a clip: 9 frames, 2 source frames apart.
        assert camera_motion(clips[kind][4:22:2], frame_step=2).label == kind
        # The fitted scale, not the flow size, decides: log(1.01) per source frame, signed.
        rate = clip_zoom_rate(_analysis_frames(clips[kind][4:22:2]), frame_step=2)
        assert rate == pytest.approx(np.log(1.01) * (1 if kind == "zoom-in" else -1), rel=0.1)
    assert camera_motion(clips["static"]).label == "static"
    assert camera_motion(clips["static"][4:22:2], frame_step=2).label == "static"
