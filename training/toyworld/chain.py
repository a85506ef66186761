"""The whole chain against text alone (Animate-A-Story table 1 in miniature), on held-out toy captions.

    rows = measure(weights_dir, world_dir)

For the first `captions` held-out clips' captions, two generated sets (seed = caption number):
  text only         the caption alone, no structure (τ = 0: the depth branch never runs);
  retrieval + depth the train split indexed by the real indexer (storyreel.index.build, the toy CLIP), the
                    best clip for the caption from storyreel.retrieval.search, its depth from the toy depth
                    model through storyreel.depth.conditioning_for_source, sampled at τ = 1.
Each set's Fréchet distance to the rest of the held-out clips (the reference), on toy-CLIP video
features (the mean of a clip's frame image embeddings), and its mean term alone (the squared distance of
the two feature means: what is left to read when the covariance term is noise). With so few samples the
covariances are singular and the distance is biased upward, so the floor row is the same measure for
real clips: the first `captions` held-out clips themselves against the same reference (equal sample
sizes); the retrieved train clips (no generation) are a row too.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from storyreel.generation.distribution_metrics import frechet_distance
from storyreel.training.toyworld.generator import (
    SAMPLE_FRAMES,
    SAMPLING,
    load_pipeline,
    sample,
    sample_text_only,
    toy_preset,
)
from storyreel.training.toyworld.generator_data import read_world

FOLDERS = ("base", "motion_adapter", "controlnet")
TAU = 1.0  # retrieval + depth samples follow the retrieved structure for the whole schedule


def measure(weights_dir: Path, world_dir: Path, captions: int = 16, index_clips: int = 240) -> list[dict]:
    """Rows: text only, retrieval + depth, retrieved clips, real floor (see module doc); `index_clips`: how
    many of the train split's videos are indexed."""
    from storyreel import depth
    from storyreel.index.embed import load_clip

    weights_dir = Path(weights_dir)
    preset = toy_preset(weights_dir)
    held = read_world(Path(world_dir), "heldout")
    queries, reference = held[:captions], held[captions:]
    embedder = load_clip(preset, device="cpu", dtype=torch.float32)
    reference_features = video_features(embedder, [c.frames[:SAMPLE_FRAMES] for c in reference])
    model = depth.create_depth_model(depth.model_for_preset(preset), device="cpu")
    with tempfile.TemporaryDirectory() as scratch:
        retrieved = retrieve_structures(Path(world_dir), Path(scratch), preset, embedder, model, queries, index_clips)
    pipe = load_pipeline(weights_dir)
    sets = {
        "text only (tau 0, no structure)": [sample_text_only(pipe, c.caption, k) for k, c in enumerate(queries)],
        f"retrieval + depth (tau {TAU})": [sample(pipe, c.caption, hint, TAU, seed=k)
                                           for k, (c, (hint, _)) in enumerate(zip(queries, retrieved))],
        "retrieved train clips (no generation)": [frames for _, frames in retrieved],
        "real held-out clips (floor)": [c.frames[:SAMPLE_FRAMES] for c in queries],
    }
    rows = []
    for name, clips in sets.items():
        features = video_features(embedder, clips)
        mean_term = float(((features.mean(0) - reference_features.mean(0)) ** 2).sum())
        rows.append({"row": name, "frechet_distance": round(frechet_distance(features, reference_features), 4),
                     "mean_term": round(mean_term, 4), "samples": len(clips),
                     "reference_clips": len(reference), "feature_dim": reference_features.shape[1],
                     "indexed_train_clips": index_clips, **SAMPLING})
    return rows


def retrieve_structures(world_dir: Path, scratch: Path, preset, embedder, model, queries, index_clips: int):
    """Per query, (depth hint (F, H, W) in [0, 1], the retrieved clip's frames): the first `index_clips` train
    videos indexed, the best hit for the caption, its depth through the project's depth front door."""
    from storyreel import depth, index
    from storyreel.retrieval import search

    names = json.loads((world_dir / "world.json").read_text())["train"][:index_clips]
    videos = scratch / "videos"
    videos.mkdir()
    for name in names:
        shutil.copyfile(world_dir / name, videos / Path(name).name)
    index.build(videos, scratch / "index", index.BuildSettings(preset=preset, device="cpu", dtype=torch.float32))
    size = queries[0].hint.shape[1:]
    found = []
    with index.open_index(scratch / "index") as opened:
        for query in queries:
            hit = search(opened, query.caption, k=1, embedder=embedder)[0]
            conditioning, info = depth.conditioning_for_source(hit.clip.clip_id, model=model, size=size,
                                                               num_frames=SAMPLE_FRAMES, index_dir=opened)
            frames = opened.read_frames(hit.clip.clip_id, info["frame_indices"])
            found.append((conditioning[:, 0].numpy(), frames))
    return found


def video_features(embedder, clips) -> np.ndarray:
    """(N, D): each clip's mean frame image embedding."""
    return np.stack([embedder.embed_images(np.asarray(frames)).mean(0) for frames in clips]).astype(np.float64)
