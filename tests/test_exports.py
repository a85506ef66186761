"""Interop exports: character packs for diffusers/kohya/TI loaders, the index as parquet + FAISS, depth PNGs."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

from storyreel.generation.characters.export import export_pack, inference_rows
from storyreel.generation.characters.lora import add_spatial_lora, load_lora_state_dict
from storyreel.generation.characters.pack import load_pack, save_pack
from storyreel.generation.components import create_components
from storyreel.training.train import CharacterTrainer, ConceptImage, TrainSettings


@pytest.fixture(scope="module")
def tiny():
    return create_components("tiny")


def train_pack(tiny, path, mode):
    rng = np.random.RandomState(0)
    images = [ConceptImage(f"img{i}", (rng.rand(40, 40, 3) * 255).astype(np.uint8), f"{i}") for i in range(2)]
    settings = TrainSettings(token="<teddy>", init_word="bear", mode=mode, steps=2, size=32, frames=2,
                             learning_rate=5e-2, num_buckets=None if mode == "ti" else 8)
    trainer = CharacterTrainer(copy.deepcopy(tiny), tiny.ids, settings, images,
                               lambda f: torch.full((len(f), 3, *f.shape[1:3]), 0.5))
    trainer.fit()
    save_pack(trainer.pack(), path)
    return load_pack(path)


@pytest.fixture(scope="module")
def timeinv_pack(tiny, tmp_path_factory):
    """(path, pack) of a TimeInv pack trained with the tiny models, shared read-only."""
    path = tmp_path_factory.mktemp("packs") / "teddy.safetensors"
    return path, train_pack(tiny, path, "timeinv")


def animatediff(tiny):
    """A plain diffusers AnimateDiffPipeline from the same tiny components."""
    from diffusers import AnimateDiffPipeline

    c = copy.deepcopy(tiny)
    pipe = AnimateDiffPipeline(vae=c.vae, text_encoder=c.text_encoder, tokenizer=c.tokenizer, unet=c.unet,
                               motion_adapter=None, scheduler=c.scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def frames(pipe, prompt="a bear walks"):
    return pipe(prompt, num_frames=2, height=32, width=32, num_inference_steps=2, output_type="np",
                generator=torch.Generator().manual_seed(0)).frames[0]


def test_lora_exports_load_into_plain_diffusers_and_match_the_pack(tiny, timeinv_pack, tmp_path):
    pack_path, pack = timeinv_pack
    export_pack(pack_path, tmp_path / "diffusers.safetensors", "diffusers")
    export_pack(pack_path, tmp_path / "kohya.safetensors", "kohya")

    plain = frames(animatediff(tiny))
    ours = animatediff(tiny)  # the pack's LoRA put in by storyreel's own loader: what the export must equal
    add_spatial_lora(ours.unet, "teddy", pack.lora_rank, pack.lora_alpha)
    load_lora_state_dict(ours.unet, "teddy", pack.lora)
    expected = frames(ours)
    assert np.abs(expected - plain).max() > 1e-3  # the LoRA changes the output

    loaded = animatediff(tiny)
    loaded.load_lora_weights(str(tmp_path / "diffusers.safetensors"))
    assert np.allclose(frames(loaded), expected, atol=1e-5)

    with safe_open(str(tmp_path / "kohya.safetensors"), "pt") as f:
        keys = set(f.keys())
        alpha = f.get_tensor("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.alpha")
    layers = {k.split(".")[0] for k in keys}
    assert len(layers) == len(pack.lora) // 2 and float(alpha) == pack.lora_alpha
    assert keys == {f"{layer}.{part}" for layer in layers for part in ("lora_down.weight", "lora_up.weight", "alpha")}
    assert all(layer.startswith("lora_unet_") and "motion_modules" not in layer for layer in layers)
    kohya = animatediff(tiny)
    kohya.load_lora_weights(str(tmp_path / "kohya.safetensors"))
    assert np.allclose(frames(kohya), expected, atol=1e-5)


def test_ti_export_loads_with_load_textual_inversion(tiny, timeinv_pack, tmp_path, run_cli):
    ti = train_pack(tiny, tmp_path / "ti_pack.safetensors", "ti")
    proc = run_cli("character", "export", tmp_path / "ti_pack.safetensors", "--format", "ti",
                   "--out", tmp_path / "ti.safetensors", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["note"] == "exact: the pack's only row"
    pipe = animatediff(tiny)
    pipe.load_textual_inversion(str(tmp_path / "ti.safetensors"))
    row = pipe.text_encoder.get_input_embeddings().weight[pipe.tokenizer.convert_tokens_to_ids("<teddy>")]
    assert torch.equal(row, ti.table[0])  # exact for a --mode ti pack
    assert not np.allclose(frames(pipe, "a <teddy> walks"), frames(animatediff(tiny), "a bear walks"))

    # A TimeInv pack: the mean of the rows 25-step sampling reads (documented approximation).
    pack_path, timeinv = timeinv_pack
    export_pack(pack_path, tmp_path / "timeinv_ti.safetensors", "ti")
    with safe_open(str(tmp_path / "timeinv_ti.safetensors"), "pt") as f:
        assert "approximation: mean of the" in f.metadata()["storyreel_note"]
        exported = f.get_tensor("<teddy>")
    rows = sorted(set(inference_rows(timeinv, 25)))
    assert len(rows) == 8 and torch.equal(exported, timeinv.table[rows].mean(0, keepdim=True))

    # A ti pack has no LoRA to export: one line that says what to do.
    proc = run_cli("character", "export", tmp_path / "ti_pack.safetensors", "--format", "kohya",
                   "--out", tmp_path / "k.safetensors")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "export its token with --format ti" in proc.stderr


def test_index_export_reads_back_through_duckdb_and_pyarrow(tmp_path, run_cli):
    import duckdb
    import faiss
    import pyarrow.parquet as pq

    from storyreel.index import BuildSettings, build
    from storyreel.index.reader import open_index
    from storyreel.synthetic import make_corpus

    make_corpus(tmp_path / "videos", num_videos=2, shots_per_video=2, shot_seconds=1.5, size=(64, 48), fps=12)
    build(tmp_path / "videos", tmp_path / "index", BuildSettings(preset="tiny"))
    out = tmp_path / "export"
    proc = run_cli("index", "export", "--index", tmp_path / "index", "--format", "parquet", "--out", out, "--json")
    assert proc.returncode == 0, proc.stderr
    with open_index(tmp_path / "index") as index:
        clips = [row.to_dict() for row in index.clips()]
        ids = np.array([c["clip_id"] for c in clips])
        frame_vectors = index.frame_vectors(ids)
        searched = [index.search_vectors(index.vector_index.reconstruct(int(i)), 1) for i in ids]
        dim = index.dim
    # The vectors the index searches: each one's nearest clip is itself, at cosine 1.
    assert [int(hit[0][0]) for hit in searched] == ids.tolist()

    embeddings = pq.read_table(out / "img_emb" / "img_emb_0.parquet")
    assert str(embeddings.schema.field("embedding").type) == f"fixed_size_list<element: float>[{dim}]"
    vectors = np.array(embeddings.column("embedding").to_pylist(), dtype=np.float32)
    assert embeddings.column("clip_id").to_pylist() == ids.tolist()
    for clip_id, vector in zip(ids, vectors):
        mean = frame_vectors[clip_id].mean(0)
        assert np.allclose(vector, mean / np.linalg.norm(mean), atol=1e-6)  # the clip's pooled CLIP vector
    assert pq.read_table(out / "metadata" / "metadata_0.parquet").to_pylist() == clips

    rows = duckdb.sql(f"SELECT e.clip_id, e.embedding::FLOAT[{dim}] AS v, m.video FROM "
                      f"'{out}/img_emb/img_emb_0.parquet' e JOIN '{out}/metadata/metadata_0.parquet' m "
                      "USING (clip_id) ORDER BY clip_id").fetchall()
    assert [r[0] for r in rows] == ids.tolist() and [r[2] for r in rows] == [c["video"] for c in clips]
    assert np.array_equal(np.array([r[1] for r in rows], dtype=np.float32), vectors)

    exported = faiss.read_index(str(out / "image.index"))
    assert exported.ntotal == len(ids)
    assert np.array_equal(np.stack([exported.reconstruct(int(i)) for i in ids]), vectors)
    assert json.loads((out / "index_infos.json").read_text())["clips"] == len(ids)
