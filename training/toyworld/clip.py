"""Stage `clip`: a small open_clip CLIP trained on the toy world, saved as an open_clip folder.

A ViT image tower (64 px, 8 px patches) and open_clip's text transformer with the real CLIP BPE
tokenizer (context 24: the world's captions are short) learn from one frame of a train-split clip and
one of several phrasings of its caption (`caption_variants`): contrastive loss with a learned
temperature, where every text in the batch that describes an image counts as its match (the world
repeats objects and scenes, so a batch holds several right answers).

The folder (`open_clip_config.json` + `open_clip_model.safetensors`, fp16) loads wherever storyreel
takes a CLIP: `--clip FOLDER`, `ClipSpec("local-dir:FOLDER")`, a preset file's `"clip": "toy/clip"`.

`measure` indexes the held-out clips with the real indexer and searches them with the real search.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from storyreel.core.models import LOCAL_DIR, ClipSpec, with_overrides
from storyreel.toyworld.clips import MOTION_PHRASES
from storyreel.toyworld.scenes import SCENE_PHRASES
from storyreel.toyworld.sprites import TEXTURE_WORDS

# open_clip CLIP(**CONFIG): 0.5M-param image tower; the text tower's size is mostly the 49,408-token table.
CONFIG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "patch_size": 8, "width": 96, "layers": 4, "head_width": 32},
    "text_cfg": {"context_length": 24, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
STEPS = 700
BATCH = 64
LEARNING_RATE = 1e-3
WARMUP = 50
WEIGHT_DECAY = 0.05


def caption_variants(truth: dict) -> list[tuple[str, bool]]:
    """Ways to say what a clip shows, each with whether it names the texture: the world's own caption
    and other word orders, with and without the camera move and the texture word."""
    colour, shape, scene = truth["colour"], truth["shape"], truth["scene"]
    where, move = SCENE_PHRASES[scene], MOTION_PHRASES[truth["camera_motion"]]
    variants = []
    for texture in {TEXTURE_WORDS[truth["texture"]], ""}:
        thing = " ".join(w for w in (colour, texture, shape) if w)
        listed = ", ".join(w for w in (shape, colour, texture) if w)
        texts = (f"a {thing} {where}, {move}", f"a {thing} {where}", f"{where}, a {thing}",
                 f"a {scene} with a {thing}", f"{move}: a {thing} {where}", f"a photo of a {thing} {where}",
                 f"a {listed}, {where}")
        variants += [(text, bool(texture)) for text in texts]
    return variants


def query_captions(truth: dict) -> dict[str, str]:
    """The held-out queries of a clip: its caption without the camera phrase, and the whole caption."""
    return {"no_motion": truth["caption"].rsplit(", ", 1)[0], "full": truth["caption"]}


def read_split(world_dir: Path, split: str) -> tuple[list[Path], list[dict]]:
    """The clips of one split of a written world (toyworld/world.py) and their truths."""
    manifest = json.loads((Path(world_dir) / "world.json").read_text())
    videos = [Path(world_dir) / name for name in manifest[split]]
    return videos, [json.loads(Path(f"{v}.json").read_text()) for v in videos]


def create_model(seed: int = 0):
    """The stage's CLIP at random init (what training starts from and the tests compare with)."""
    import open_clip
    import torch
    from open_clip.transform import PreprocessCfg

    torch.manual_seed(seed)
    model = open_clip.CLIP(**CONFIG)
    # open_clip's default preprocessing (OpenAI mean/std, bicubic), written into the folder's config.
    open_clip.set_model_preprocess_cfg(model, asdict(PreprocessCfg(size=CONFIG["vision_cfg"]["image_size"])))
    return model


def save_clip(model, folder: Path) -> Path:
    """Write `model` as an open_clip folder in the Hugging Face layout (weights in fp16)."""
    import safetensors.torch
    from open_clip.push_to_hf_hub import save_config_for_hf

    folder.mkdir(parents=True, exist_ok=True)
    save_config_for_hf(model, folder / "open_clip_config.json", CONFIG)
    weights = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
    safetensors.torch.save_file(weights, str(folder / "open_clip_model.safetensors"))
    return folder


def matches(image_keys: np.ndarray, text_keys: np.ndarray, text_names_texture: np.ndarray):
    """(images, texts) float: 1 where the text describes the image. Keys: (shape, colour, texture, scene)
    codes; a text that leaves the texture out describes every texture."""
    import torch

    same = image_keys[:, None, :] == text_keys[None, :, :]
    same[:, :, 2] |= ~text_names_texture[None, :]
    return torch.from_numpy(same.all(axis=2).astype(np.float32))


def contrastive_loss(image_features, text_features, logit_scale, targets):
    """Symmetric cross-entropy against the (normalized) match matrix, at the learned temperature."""
    import torch.nn.functional as F

    logits = logit_scale.exp().clamp(max=100) * image_features @ text_features.T
    per_image = -(targets / targets.sum(1, keepdim=True) * F.log_softmax(logits, 1)).sum(1).mean()
    per_text = -(targets.T / targets.T.sum(1, keepdim=True) * F.log_softmax(logits.T, 1)).sum(1).mean()
    return (per_image + per_text) / 2


def _attribute_codes(truths: list[dict]) -> np.ndarray:
    """(clips, 4) int codes of (shape, colour, texture, scene)."""
    fields = ("shape", "colour", "texture", "scene")
    names = {f: sorted({t[f] for t in truths}) for f in fields}
    return np.array([[names[f].index(t[f]) for f in fields] for t in truths], np.int64)


def train(world_dir: Path, out_dir: Path, seed: int = 0, progress=None) -> dict:
    """Train the stage's CLIP on the world's train split; writes out_dir/clip/ (the open_clip folder)."""
    import torch

    from storyreel.core.video import read_video
    from storyreel.index.embed import ClipEmbedder

    videos, truths = read_split(world_dir, "train")
    frames = np.stack([read_video(v) for v in videos])  # (clips, T, H, W, 3) as the indexer decodes them
    codes = _attribute_codes(truths)
    variants = [caption_variants(t) for t in truths]
    model = create_model(seed)
    # The embedder's own preprocessing, so training sees frames exactly as indexing does.
    embedder = ClipEmbedder(model, open_clip_tokenizer(), "training", device="cpu", dtype=torch.float32)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min((s + 1) / WARMUP, 1.0) * 0.5 * (
        1 + math.cos(math.pi * min(s / STEPS, 1.0))))
    rng = np.random.default_rng([seed, 11])
    started, losses = time.time(), []
    for step in range(STEPS):
        clips = rng.choice(len(videos), size=min(BATCH, len(videos)), replace=False)
        picked = [variants[c][rng.integers(len(variants[c]))] for c in clips]
        images = embedder.preprocess(frames[clips, rng.integers(frames.shape[1], size=len(clips))])
        targets = matches(codes[clips], codes[clips], np.array([named for _, named in picked]))
        image_features = model.encode_image(images, normalize=True)
        text_features = model.encode_text(embedder.tokenizer([text for text, _ in picked]), normalize=True)
        loss = contrastive_loss(image_features, text_features, model.logit_scale, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
        if progress is not None and (step + 1) % 50 == 0:
            progress.update(step=step + 1, of=STEPS, loss=round(float(np.mean(losses[-50:])), 3),
                            temperature=round(1 / model.logit_scale.exp().item(), 4))
    folder = save_clip(model.eval(), Path(out_dir) / "clip")
    return {"folder": str(folder), "steps": STEPS, "batch": BATCH, "train_clips": len(videos),
            "seconds": round(time.time() - started, 1), "final_loss": round(float(np.mean(losses[-50:])), 4),
            "temperature": round(1 / model.logit_scale.exp().item(), 4),
            "parameters": sum(p.numel() for p in model.parameters()),
            "bytes": sum(f.stat().st_size for f in folder.iterdir())}


def open_clip_tokenizer():
    """The real CLIP BPE tokenizer at the stage's context length."""
    import open_clip

    return open_clip.tokenizer.SimpleTokenizer(context_length=CONFIG["text_cfg"]["context_length"])


# -- measuring on held-out clips ---------------------------------------------------------------------


def recall_chance(relevant: np.ndarray, total: int, k: int) -> float:
    """Mean chance that k clips drawn at random hold one of a query's `relevant` clips."""
    miss = [math.comb(total - r, k) / math.comb(total, k) for r in relevant]
    return float(1 - np.mean(miss))


def index_held_out(world_dir: Path, work_dir: Path, clip: ClipSpec):
    """Build a real index (storyreel.index.build) of the world's held-out clips with `clip` as embedder;
    returns (index folder, truths by video path)."""
    import torch

    from storyreel import index

    videos, truths = read_split(world_dir, "heldout")
    video_dir, index_dir = work_dir / "videos", work_dir / "index"
    shutil.rmtree(work_dir, ignore_errors=True)
    video_dir.mkdir(parents=True)
    for video in videos:
        shutil.copyfile(video, video_dir / video.name)
    preset = with_overrides("tiny", clip=clip)
    index.build(video_dir, index_dir, index.BuildSettings(preset=preset, device="cpu", dtype=torch.float32))
    return index_dir, {str((video_dir / v.name).resolve()): t for v, t in zip(videos, truths)}


def measure(out_dir: Path, world_dir: Path) -> list[dict]:
    """Rows: text -> clip recall@1/@5 (a hit shows the query's shape, colour and scene) for captions
    without and with the camera phrase, searched with and without the query offset, beside chance and a
    random-init CLIP of the same config; and the index's camera-motion labels against the truth."""
    from storyreel.index import open_index
    from storyreel.index.embed import clip_embedder

    folder = Path(out_dir) / "clip"
    trained = ClipSpec(f"{LOCAL_DIR}{folder.resolve()}")
    random_init = ClipSpec("toy-clip-random-init", config=CONFIG)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:  # the measure's indexes never land beside the weights
        for name, spec in (("trained", trained), ("random init", random_init)):
            index_dir, truth_of = index_held_out(world_dir, Path(scratch) / name.replace(" ", "-"), spec)
            embedder = clip_embedder(spec, device="cpu")
            with open_index(index_dir) as idx:
                rows += search_rows(idx, embedder, truth_of, name)
                if name == "trained":
                    rows.append(motion_row(idx, truth_of))
    return rows


def learned_offset(idx, embedder):
    """The query offset a build learns (index/vectors.py QueryOffset), from the index's clip vectors and
    the build's tuning captions. Indexes under FLAT_MAX clips are searched exactly and keep none, so
    `measure` sets it on the opened index (`Index.query_offset`) to search with it."""
    from storyreel.index.vectors import TUNING_CAPTIONS, QueryOffset, query_offset

    ids = np.array(sorted(idx.clip_ids()), np.int64)
    vectors = idx.clip_vectors(ids)
    return QueryOffset.learn(query_offset(embedder.embed_text(list(TUNING_CAPTIONS)), vectors), (ids, vectors))


def search_rows(idx, embedder, truth_of: dict[str, dict], model: str) -> list[dict]:
    """Recall@1/@5 of storyreel.retrieval.search for each query kind, with and without the query offset."""
    from storyreel.retrieval import search

    truths = list(truth_of.values())
    key = {path: (t["shape"], t["colour"], t["scene"]) for path, t in truth_of.items()}
    relevant = np.array([sum(k == (t["shape"], t["colour"], t["scene"]) for k in key.values()) for t in truths])
    chance = {k: round(recall_chance(relevant, len(truths), k), 4) for k in (1, 5)}
    offsets = {"none": None, "learned": learned_offset(idx, embedder)}
    rows = []
    for kind in ("no_motion", "full"):
        for offset_name, offset in offsets.items():
            idx.query_offset = offset
            found = [[key[hit.clip.video] for hit in search(idx, query_captions(t)[kind], k=5, embedder=embedder)]
                     for t in truths]
            wanted = [(t["shape"], t["colour"], t["scene"]) for t in truths]
            rows.append({"row": f"clip recall ({model}, {kind.replace('_', ' ')} captions, offset {offset_name})",
                         "recall@1": round(float(np.mean([w in f[:1] for w, f in zip(wanted, found)])), 4),
                         "recall@5": round(float(np.mean([w in f[:5] for w, f in zip(wanted, found)])), 4),
                         "chance@1": chance[1], "chance@5": chance[5], "queries": len(truths)})
    idx.query_offset = None
    return rows + projected_rows(idx, embedder, truth_of, offsets["learned"], model)


def projected_rows(idx, embedder, truth_of: dict[str, dict], offset, model: str) -> list[dict]:
    """Recall@1/@5 of ranking every clip vector by the query as given and by the query with its offset
    component removed: what the offset-projected FAISS stage ranks by before the exact re-score
    (index/vectors.py `search`). A small index passes every clip on to that re-score, so `search`
    itself ranks the same with or without the offset."""
    ids = np.array(sorted(idx.clip_ids()), np.int64)
    rows = idx.clips_by_id(ids)
    keys = [tuple(truth_of[rows[int(i)].video][f] for f in ("shape", "colour", "scene")) for i in ids]
    truths = list(truth_of.values())
    wanted = [(t["shape"], t["colour"], t["scene"]) for t in truths]
    queries = embedder.embed_text([query_captions(t)["no_motion"] for t in truths])
    out = []
    for name, vectors in (("as given", queries),
                          ("offset removed", queries - np.outer(queries @ offset.direction, offset.direction))):
        top = np.argsort(-(vectors @ idx.clip_vectors(ids).T), axis=1, kind="stable")[:, :5]
        hits = [[keys[j] == w for j in row] for w, row in zip(wanted, top)]
        out.append({"row": f"clip-vector ranking alone, query {name} ({model}, no motion captions)",
                    "recall@1": round(float(np.mean([h[0] for h in hits])), 4),
                    "recall@5": round(float(np.mean([any(h) for h in hits])), 4), "queries": len(truths)})
    return out


def motion_row(idx, truth_of: dict[str, dict]) -> dict:
    """The index's camera-motion label of each held-out clip against the truth (chance: the commonest move)."""
    rows = idx.clips()
    truth = [truth_of[row.video]["camera_motion"] for row in rows]
    labels = [row.motion for row in rows]
    commonest = max(set(truth), key=truth.count)
    accuracy = float(np.mean([a == b for a, b in zip(labels, truth)]))
    return {"row": "index camera-motion labels", "accuracy": round(accuracy, 4),
            "chance": round(truth.count(commonest) / len(truth), 4), "clips": len(rows)}
