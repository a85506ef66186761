"""Metric math of generation.evaluate on hand-made embeddings with known answers."""

import numpy as np
import pytest

from storyreel.core.errors import UserError
from storyreel.generation.characters.pack import CharacterPack
from storyreel.generation.evaluate import (
    clip_image_score,
    clip_text_score,
    prompt_for_clip,
    read_clip_frames,
    temporal_consistency,
)


def test_clip_text_score_is_mean_cosine_over_frames():
    frames = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])  # unnormalized on purpose
    text = np.array([1.0, 0.0])
    assert clip_text_score(frames, text) == pytest.approx((1.0 + 0.0 + np.sqrt(0.5)) / 3)


def test_clip_image_score_averages_frames_and_concepts():
    frames = np.array([[1.0, 0.0], [0.0, 1.0]])
    concepts = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    # cosines: frame0 -> 1, -1, 0 ; frame1 -> 0, 0, 1
    assert clip_image_score(frames, concepts) == pytest.approx(1.0 / 6)


def test_temporal_consistency_uses_adjacent_frames_only():
    frames = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    assert temporal_consistency(frames) == pytest.approx((1.0 + 0.0 + 0.0) / 3)
    assert temporal_consistency(np.ones((5, 3))) == pytest.approx(1.0)
    with pytest.raises(UserError, match="at least 2 frames"):
        temporal_consistency(np.ones((1, 3)))


def test_character_tokens_are_replaced_by_init_words_for_clip():
    packs = [CharacterPack("<teddy>", "bear", "timeinv", np.zeros((1, 1)), 1000, {}, 4, 4.0, {}),
             CharacterPack("<kitty>", "cat", "ti", np.zeros((1, 1)), 1000, {}, 4, 4.0, {})]
    assert prompt_for_clip("<teddy> chases <kitty> on a beach", packs) == "bear chases cat on a beach"


def test_read_clip_frames_from_gif_and_png_folder(tmp_path):
    import imageio.v3 as iio

    frames = np.zeros((3, 16, 16, 3), dtype=np.uint8)
    for i in range(3):
        frames[i, :, :, i] = 200
    iio.imwrite(tmp_path / "clip.gif", frames, loop=0)
    gif = read_clip_frames(tmp_path / "clip.gif")
    assert gif.shape == (3, 16, 16, 3) and gif.dtype == np.uint8
    assert [int(np.argmax(f.reshape(-1, 3).mean(0))) for f in gif] == [0, 1, 2]
    (tmp_path / "frames").mkdir()
    for i, frame in enumerate(frames):
        iio.imwrite(tmp_path / "frames" / f"{i:04d}.png", frame)
    assert np.array_equal(read_clip_frames(tmp_path / "frames"), frames)
    with pytest.raises(UserError, match="does not exist"):
        read_clip_frames(tmp_path / "missing.mp4")


def test_read_clip_frames_decodes_mp4_with_the_index_decoder_and_fails_in_one_line(tmp_path):
    from storyreel.core.video import read_frames, write_mp4

    frames = np.zeros((5, 32, 48, 3), dtype=np.uint8)
    for i in range(5):
        frames[i, :, 8 * i:8 * i + 8] = 220  # a bar moving right
    write_mp4(tmp_path / "clip.mp4", frames, fps=8)
    clip = read_clip_frames(tmp_path / "clip.mp4")
    assert np.array_equal(clip, read_frames(str(tmp_path / "clip.mp4"), np.arange(5)))
    assert [int(np.argmax(f[16].mean(-1))) // 8 for f in clip] == [0, 1, 2, 3, 4]
    (tmp_path / "broken.mp4").write_bytes(b"not a video at all")
    with pytest.raises(UserError) as err:
        read_clip_frames(tmp_path / "broken.mp4")
    assert str(err.value).startswith(f"cannot read clip {tmp_path / 'broken.mp4'}: not a readable video (")
    assert "\n" not in str(err.value)


def test_score_clip_with_tiny_clip_on_a_still_clip_of_the_concept_image():
    import torch

    from storyreel.generation.evaluate import score_clip
    from storyreel.index.embed import load_clip

    embedder = load_clip("tiny")
    rng = np.random.RandomState(0)
    concept = (rng.rand(224, 224, 3) * 255).astype(np.uint8)
    pack = CharacterPack("<teddy>", "bear", "timeinv", torch.zeros(1, 4), 1000, {}, 4, 4.0, {},
                         concept_images=torch.from_numpy(concept[None].copy()))
    still = np.repeat(concept[None], 4, axis=0)
    scores = score_clip(still, "<teddy> on a beach", embedder, [pack])
    assert scores.prompt == "bear on a beach" and scores.frames == 4 and scores.model_id == embedder.model_id
    assert scores.clip_i == pytest.approx(1.0, abs=1e-5)  # every frame is the concept image
    assert scores.temporal_consistency == pytest.approx(1.0, abs=1e-5)
    assert scores.motion_magnitude == pytest.approx(0.0, abs=1e-3)  # ... and a still clip has no motion
    text = embedder.embed_text(["bear on a beach"])[0]
    assert scores.clip_t == pytest.approx(clip_text_score(embedder.embed_images(still), text), abs=1e-6)
    no_pack = score_clip(still, "bear on a beach", embedder)
    assert no_pack.clip_i is None and no_pack.clip_t == pytest.approx(scores.clip_t)
