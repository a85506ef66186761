"""Search: query motion words, re-ranking, filters, model check, contact sheet.

The ranking logic runs against `MemoryIndex` (tests/fake_index.py, held to the real index's
`ClipIndex` interface); the end-to-end tests at the bottom build a real index from synthetic videos
with the tiny preset.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from fake_index import DIM, FakeEmbedder, MemoryIndex
from fake_index import clip_row as row
from PIL import Image

from storyreel.core.errors import UserError
from storyreel.retrieval import contact_sheet, search
from storyreel.retrieval.motion_words import motion_in_query


def unit(v):
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_motion_words_in_queries():
    assert motion_in_query("a dog on a beach, camera pans left") == {"pan-left"}
    assert motion_in_query("Panning right across the city") == {"pan-right"}
    assert motion_in_query("the camera slowly tilts up to the sky") == {"tilt-up"}
    assert motion_in_query("tilting downwards") == {"tilt-down"}
    assert motion_in_query("zooms in on a face") == {"zoom-in"}
    assert motion_in_query("pull back to reveal the valley") == {"zoom-out"}
    assert motion_in_query("static shot of a lake") == {"static"}
    assert motion_in_query("a tracking shot of a car") == {"pan-left", "pan-right"}
    assert motion_in_query("a frying pan on a stove") == set()
    assert motion_in_query("runners on a track") == set()
    assert motion_in_query("a cat sleeping") == set()


def test_best_frame_and_motion_words_rerank(rng):
    base = unit(rng.standard_normal(DIM))
    other = unit(rng.standard_normal(DIM))
    # Clip 1: every frame fairly similar. Clip 2: one frame equal to the query, the rest unrelated.
    # Clip 3: like clip 1 but a pan-left. Pooled similarity favours 1 and 3 over 2.
    frames = {
        1: np.stack([unit(base + 1.5 * other + 0.1 * rng.standard_normal(DIM)) for _ in range(4)]),
        2: np.stack([base, *(unit(rng.standard_normal(DIM)) for _ in range(3))]),
        3: np.stack([unit(base + 1.5 * other + 0.1 * rng.standard_normal(DIM)) for _ in range(4)]),
    }
    index = MemoryIndex([row(1), row(2), row(3, motion="pan-left")], frames)
    plain = search(index, text="q", k=3, embedder=FakeEmbedder({"q": base}))
    assert plain[0].clip.clip_id == 2 and plain[0].frame_score == pytest.approx(1.0, abs=1e-5)
    assert plain[0].clip_score < min(h.clip_score for h in plain[1:])
    panning = search(index, text="camera pans left", k=3, embedder=FakeEmbedder({"camera pans left": base}))
    by_id = {h.clip.clip_id: h for h in panning}
    assert by_id[3].motion_match and not by_id[1].motion_match
    assert by_id[3].score == pytest.approx(by_id[3].clip_score / 2 + by_id[3].frame_score / 2 + 0.05, abs=1e-6)
    assert by_id[3].rank < by_id[1].rank
    assert [h.rank for h in panning] == [1, 2, 3]
    d = panning[0].to_dict()
    assert set(d) >= {"clip_id", "video", "start_frame", "end_frame", "start_s", "end_s", "fps", "width",
                      "height", "motion", "motion_magnitude", "score", "rank"}


def test_filters_fetch_more_candidates_until_k_pass(rng):
    # 600 clips; only the 10 least similar to the query are static and 3 s long.
    query = unit(rng.standard_normal(DIM))
    rows, frames = [], {}
    for i in range(600):
        similar = i < 590
        v = unit(query * (2.0 if similar else -1.0) + rng.standard_normal(DIM))
        frames[i] = np.stack([v] * 2)
        rows.append(row(i, motion="static" if not similar else "pan-right", seconds=3.0 if not similar else 1.0))
    index = MemoryIndex(rows, frames)
    embedder = FakeEmbedder({"q": query})
    hits = search(index, text="q", k=5, motion="static", min_seconds=2.5, embedder=embedder)
    assert len(hits) == 5 and all(h.clip.clip_id >= 590 for h in hits)
    assert index.fetched == [100]  # the filter runs inside the one vector search (over-fetch 100 for re-ranking)
    assert search(index, text="q", k=5, motion="zoom-in", embedder=embedder) == []
    assert len(search(index, text="q", k=7, min_seconds=1.0, embedder=embedder)) == 7


@pytest.mark.parametrize("spec", [None, "IVF256,Flat"])
def test_filters_inside_search_fill_k_for_a_1_percent_label(spec):
    """20,000 clips on the scan index the build picks, and on an IVF index (nprobe tuned low); 200 clips
    (1%) are `zoom-in`, all in clusters far from the query, so the unfiltered top 100 (or the probed
    lists) hold none of them: a post-filter finds none, the filtered search finds 10. So do 5,000 (25%)
    `pan-left` clips next furthest away: too many for the exact pass, too few for a plain search."""
    from storyreel.index.vectors import choose_index_spec, index_family
    from storyreel.synthetic import clustered_vectors

    n, dim = 20_000, DIM
    vectors = clustered_vectors(n, dim, centres=400, noise=0.3, seed=5)
    query = vectors[0]
    order = np.argsort(vectors @ query)
    rare, quarter = set(order[:200].tolist()), set(order[200:5_200].tolist())  # the least similar to the query
    motion = lambda i: "zoom-in" if i in rare else "pan-left" if i in quarter else "static"  # noqa: E731
    rows = [row(i, motion=motion(i), seconds=1.0 + (i % 5), video=f"/videos/{'b' if i % 2 else 'a'}/v{i % 7}.mp4")
            for i in range(n)]
    index = MemoryIndex(rows, {i: vectors[i][None] for i in range(n)}, spec=spec)
    assert index_family(spec or choose_index_spec(n, dim)) == ("ivf" if spec else "scan")
    unfiltered, _ = index.search_vectors(query, 100)
    assert not rare & set(unfiltered.tolist())  # what a post-filter would see: no match
    embedder = FakeEmbedder({"q": query})
    hits = search(index, text="q", k=10, motion="zoom-in", embedder=embedder)
    assert len(hits) == 10 and {h.clip.clip_id for h in hits} <= rare
    # the 10 best zoom-in clips, exactly
    best = sorted(rare, key=lambda i: (-float(vectors[i] @ query), i))[:100]
    assert {h.clip.clip_id for h in hits} <= set(best)
    hits = search(index, text="q", k=10, motion="pan-left", embedder=embedder)
    best = sorted(quarter, key=lambda i: (-float(vectors[i] @ query), i))[:10]
    assert [h.clip.clip_id for h in hits] == best
    # duration range and source video (a folder or a file): every hit matches, k of them
    hits = search(index, text="q", k=10, min_seconds=2.0, max_seconds=3.0, video="/videos/b", embedder=embedder)
    assert len(hits) == 10
    assert all(2.0 <= h.clip.end_s - h.clip.start_s <= 3.0 and h.clip.video.startswith("/videos/b/") for h in hits)
    hits = search(index, text="q", k=10, motion="zoom-in", video="/videos/a/v3.mp4", embedder=embedder)
    expected = {i for i in rare if i % 2 == 0 and i % 7 == 3}
    assert len(hits) == min(10, len(expected)) > 0 and {h.clip.clip_id for h in hits} <= expected
    with pytest.raises(UserError, match="--max-seconds 1 is shorter than --min-seconds 2"):
        search(index, text="q", min_seconds=2, max_seconds=1, embedder=embedder)


def test_query_errors(rng, tmp_path):
    index = MemoryIndex([row(1)], {1: unit(rng.standard_normal((2, DIM)))})
    embedder = FakeEmbedder({"q": unit(rng.standard_normal(DIM))})
    with pytest.raises(UserError, match="exactly one query"):
        search(index, text="q", image="x.png", embedder=embedder)
    with pytest.raises(UserError, match="exactly one query"):
        search(index, embedder=embedder)
    with pytest.raises(UserError, match="unknown --motion 'sideways'"):
        search(index, text="q", motion="sideways", embedder=embedder)
    with pytest.raises(UserError, match="-k must be at least 1"):
        search(index, text="q", k=0, embedder=embedder)
    with pytest.raises(UserError, match="no such file"):
        search(index, image=tmp_path / "missing.png", embedder=embedder)
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(UserError, match="not a readable image"):
        search(index, image=tmp_path / "text.png", embedder=embedder)
    with pytest.raises(UserError) as err:
        search(index, text="q", embedder=FakeEmbedder({"q": np.ones(DIM)}, model_id="other-clip"))
    assert str(err.value) == ("the index /memory was built with model fake-clip, but the query model is "
                              "other-clip; leave out --models/--clip to use the index's own model")


def test_image_query_and_contact_sheet(rng, tmp_path):
    vectors = {i: unit(rng.standard_normal((3, DIM))) for i in range(1, 5)}
    index = MemoryIndex([row(i, seconds=1.0 + i) for i in vectors], vectors)
    # The query image's "embedding" is frame 2 of clip 3.
    embedder = FakeEmbedder({"image:7": vectors[3][2]})
    image = tmp_path / "query.png"
    Image.new("RGB", (32, 24), (7, 7, 7)).save(image)
    hits = search(index, image=image, k=3, embedder=embedder)
    assert hits[0].clip.clip_id == 3 and len(hits) == 3
    out = contact_sheet(index, hits, tmp_path / "sheets" / "results.png")
    sheet = Image.open(out)
    assert sheet.format == "PNG" and list((tmp_path / "sheets").iterdir()) == [out]
    assert sheet.height == 3 * (96 + 6) + 6  # one 96-px row per hit
    # The first row's first keyframe comes from clip 3 (the fake fills frames with clip_id * 37).
    assert sheet.getpixel((6 + 260 + 10, 6 + 10)) == (111, 111, 111)


# --- end to end: a real index built from synthetic videos with the tiny preset -------------------


@pytest.fixture(scope="module")
def built_index(tmp_path_factory):
    """Two videos of three 1.5 s shots (static, pan-left, pan-right / tilt-up, tilt-down, zoom-in)."""
    from storyreel import index
    from storyreel.synthetic import make_corpus

    root = tmp_path_factory.mktemp("search")
    truths = make_corpus(root / "videos", num_videos=2, shots_per_video=3, shot_seconds=1.5, size=(128, 72))
    index.build(root / "videos", root / "index", index.BuildSettings(preset="tiny"))
    return root / "index", truths


def middle_frame_png(idx, clip, path) -> Path:
    frame = idx.read_frames(clip.clip_id, [(clip.end_frame - clip.start_frame) // 2])[0]
    Image.fromarray(frame).save(path)
    return path


def test_a_frame_of_each_clip_finds_that_clip_first(built_index, tmp_path):
    from storyreel.index import open_index
    from storyreel.index.embed import load_clip

    index_dir, truths = built_index
    embedder = load_clip("tiny")
    with open_index(index_dir) as idx:
        clips = idx.clips()
        assert len(clips) == sum(len(t.shots) for t in truths)  # one clip per 1.5 s shot
        for clip in clips:
            image = middle_frame_png(idx, clip, tmp_path / f"clip{clip.clip_id}.png")
            hits = search(idx, image=image, k=3, embedder=embedder)
            assert hits[0].clip.clip_id == clip.clip_id, (clip, hits)


def test_cli_image_search_with_sheet(built_index, run_cli, tmp_path):
    import json

    from storyreel.index import open_index

    index_dir, _ = built_index
    with open_index(index_dir) as idx:
        target = next(c for c in idx.clips() if c.motion == "zoom-in")
        image = middle_frame_png(idx, target, tmp_path / "query.png")
    # no --models: the index records its CLIP (tiny here), which wins over $STORYREEL_MODELS
    proc = run_cli("search", "--image", image, "--index", index_dir, "-k", "4", "--json",
                   "--sheet", tmp_path / "sheet.png", check=True, env={"STORYREEL_MODELS": "default"})
    rows = json.loads(proc.stdout)
    assert rows[0]["clip_id"] == target.clip_id and [r["rank"] for r in rows] == [1, 2, 3, 4]
    sheet = Image.open(tmp_path / "sheet.png")
    assert sheet.format == "PNG" and sheet.height == 4 * (96 + 6) + 6  # a row of keyframes per result


def test_motion_and_length_filters(built_index):
    from storyreel.index import open_index
    from storyreel.index.embed import load_clip

    index_dir, _ = built_index
    embedder = load_clip("tiny")
    with open_index(index_dir) as idx:
        clips = idx.clips()
        # The synthetic corpus has exactly one pan-left shot, and its clip is labelled so.
        pan_left = [c.clip_id for c in clips if c.motion == "pan-left"]
        assert len(pan_left) == 1
        hits = search(idx, text="a scene", motion="pan-left", embedder=embedder)
        assert [h.clip.clip_id for h in hits] == pan_left
        lengths = sorted(c.end_s - c.start_s for c in clips)
        cutoff = lengths[len(lengths) // 2]
        hits = search(idx, text="a scene", k=50, min_seconds=cutoff, embedder=embedder)
        assert {h.clip.clip_id for h in hits} == {c.clip_id for c in clips if c.end_s - c.start_s >= cutoff - 1e-9}
        assert 0 < len(hits) < len(clips)


def test_cli_query_errors(built_index, run_cli):
    index_dir, _ = built_index
    proc = run_cli("search", "--index", index_dir, "--models", "tiny")
    assert proc.returncode == 2 and "give exactly one query" in proc.stderr and proc.stdout == ""  # bad usage
    assert run_cli("search", "x", "--index", index_dir, "--motion", "sideways").returncode == 2


def test_model_mismatch_names_both_models(built_index):
    from storyreel.index.embed import load_clip

    index_dir, _ = built_index
    tiny = load_clip("tiny")

    class OtherModel:
        model_id, dim = "open_clip:other", tiny.dim
        embed_text, embed_images = tiny.embed_text, tiny.embed_images

    expected = f"built with model {tiny.model_id}, but the query model is open_clip:other"
    with pytest.raises(UserError, match=re.escape(expected)):
        search(index_dir, text="a scene", embedder=OtherModel())
