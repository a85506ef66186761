"""The tests' one fake index (`MemoryIndex`) is held to the real `Index`: both satisfy `ClipIndex`, with
the same signatures, and given the same catalog and vectors they give the same answers."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
from fake_index import MemoryIndex, clip_row

from storyreel.core.errors import UserError
from storyreel.index.reader import ClipIndex, Index


@pytest.fixture(scope="module")
def real_index(tmp_path_factory):
    """A real index of one synthetic video (three 1.5 s shots, so three clips), opened read-only."""
    from storyreel import index
    from storyreel.synthetic import make_corpus

    root = tmp_path_factory.mktemp("interface")
    make_corpus(root / "videos", num_videos=1, shots_per_video=3, shot_seconds=1.5, size=(64, 48), fps=12)
    index.build(root / "videos", root / "index", index.BuildSettings(preset="tiny"))
    with index.open_index(root / "index") as idx:
        assert len(idx.clips()) == 3
        yield idx


@pytest.fixture
def twin(real_index):
    """A MemoryIndex holding the real index's catalog rows and per-frame vectors, at the same path."""
    rows = real_index.clips()
    vectors = real_index.frame_vectors([r.clip_id for r in rows])
    return MemoryIndex(rows, vectors, path=real_index.path, model_id=real_index.model_id, dim=real_index.dim)


def protocol_methods() -> list[str]:
    return sorted(name for name, value in vars(ClipIndex).items()
                  if inspect.isfunction(value) and (not name.startswith("_") or name in ("__enter__", "__exit__")))


def shape(signature: inspect.Signature) -> list[tuple]:
    """What a caller depends on: parameter names, kinds and defaults (annotations are documentation)."""
    return [(p.name, p.kind, p.default) for p in signature.parameters.values()]


def test_protocol_names_what_the_stages_read():
    assert protocol_methods() == ["clip", "clip_ids", "clips", "clips_by_id", "close", "frame_vectors",
                                  "read_frames", "search_vectors"]
    assert set(ClipIndex.__annotations__) == {"path", "model_id", "dim", "vector_index"}


@pytest.mark.parametrize("cls", [Index, MemoryIndex])
def test_real_and_fake_have_the_protocols_signatures(cls):
    for name in protocol_methods():
        assert shape(inspect.signature(getattr(cls, name))) == shape(inspect.signature(getattr(ClipIndex, name))), \
            f"{cls.__name__}.{name}"


def test_fake_offers_no_method_the_real_index_lacks():
    public = lambda cls: {n for n, v in vars(cls).items() if callable(v) and not n.startswith("_")}  # noqa: E731
    assert public(MemoryIndex) <= public(Index)
    for name in public(MemoryIndex):
        assert shape(inspect.signature(getattr(MemoryIndex, name))) == shape(inspect.signature(getattr(Index, name)))


def test_both_satisfy_the_protocol_with_the_same_attribute_types(real_index, twin):
    for idx in (real_index, twin):
        assert isinstance(idx, ClipIndex)
        assert isinstance(idx.path, Path) and isinstance(idx.model_id, str) and isinstance(idx.dim, int)
        assert idx.vector_index.ntotal == len(idx.clips()) > 0


def test_same_catalog_gives_the_same_answers(real_index, twin):
    rows = real_index.clips()
    ids = [r.clip_id for r in rows]
    missing = max(ids) + 100
    assert twin.clips() == rows and twin.clip_ids() == real_index.clip_ids() == set(ids)
    assert twin.clips_by_id([*ids[:2], missing]) == real_index.clips_by_id([*ids[:2], missing])
    assert twin.clips_by_id([]) == real_index.clips_by_id([]) == {}
    assert twin.clip(ids[-1]) == real_index.clip(ids[-1])
    for idx in (real_index, twin):
        with pytest.raises(UserError) as err:
            idx.clip(missing)
        assert str(err.value) == f"clip id {missing} is not in the index {real_index.path}"
    real_vectors, fake_vectors = real_index.frame_vectors(ids + [missing]), twin.frame_vectors(ids + [missing])
    assert sorted(fake_vectors) == sorted(real_vectors) == ids
    for cid in ids:
        np.testing.assert_array_equal(fake_vectors[cid], real_vectors[cid])


def test_same_vectors_give_the_same_search_results(real_index, twin):
    second = real_index.clips()[1].clip_id
    query = real_index.frame_vectors([second])[second][0]
    for n in (1, 2, 100, 0):
        real_ids, real_scores = real_index.search_vectors(query, n)
        fake_ids, fake_scores = twin.search_vectors(query, n)
        np.testing.assert_array_equal(fake_ids, real_ids)
        np.testing.assert_allclose(fake_scores, real_scores, atol=1e-5)
        assert fake_ids.dtype == real_ids.dtype == np.int64 and fake_scores.dtype == real_scores.dtype == np.float32
    assert twin.fetched == [1, 2, 100, 0]
    for idx in (real_index, twin):
        with pytest.raises(UserError, match=f"query vector has dimension 3, the index {real_index.path} has"):
            idx.search_vectors(np.ones(3, np.float32), 1)


def test_frames_have_the_same_shape_and_range_checks(real_index, twin):
    row = real_index.clips()[0]
    length = row.end_frame - row.start_frame
    for indices in (None, [0, length - 1, 2]):
        real, fake = real_index.read_frames(row.clip_id, indices), twin.read_frames(row.clip_id, indices)
        assert fake.shape == real.shape and fake.dtype == real.dtype == np.uint8
    for idx in (real_index, twin):
        with pytest.raises(UserError) as err:
            idx.read_frames(row.clip_id, [length])
        assert str(err.value) == f"frame indices of clip {row.clip_id} must be in 0..{length - 1}"


def test_fake_reads_given_video_pixels_at_absolute_frames(tmp_path):
    video = np.arange(10, dtype=np.uint8)[:, None, None, None] * np.ones((1, 4, 6, 3), np.uint8)
    idx = MemoryIndex([clip_row(3, video="v.mp4", start_frame=4, fps=2.0, seconds=2.0, size=(6, 4)), clip_row(5)],
                      videos={"v.mp4": video}, path=tmp_path)
    assert idx.read_frames(3, [3, 0])[:, 0, 0, 0].tolist() == [7, 4]
    assert idx.read_frames(5, [0]).shape == (1, 90, 160, 3) and int(idx.read_frames(5, [0]).max()) == (5 * 37) % 256
