"""Hostile and careless input through the CLI: every case gets one line and exit 1, never a traceback,
and nothing already rendered is lost (the index cases live in the index tests).

The table `ROWS` is (command, input) -> (exit status, message pattern); every row runs in this process
through `run_cli` (tests/conftest.py) against a tiny real index, pack and story files this module
builds. Below it: the data-loss cases of render, the LLM client against fake servers on 127.0.0.1, the
CLI's safety net, and a Hypothesis fuzz of story files and CLI numbers.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import struct
import threading
import time
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from fake_http import FakeServer
from safetensors.torch import load_file, save_file

from storyreel.core.errors import UserError

ENV = {"STORYREEL_MODELS": "tiny"}
TINY = ["--frames", "2", "--height", "32", "--width", "32", "--steps", "1"]
TINY_DEFAULTS = "defaults: {frames: 2, height: 32, width: 32, steps: 1, fps: 8}\n"


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A valid PNG signature and header claiming width x height, and no pixels: a decompression bomb's
    first bytes (a reader that trusts the header allocates width*height*3 bytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def tampered_pack(source: Path, target: Path, *, tensors=None, metadata=None) -> Path:
    """A copy of the pack at `source` with `tensors(dict) -> dict` and `metadata(dict) -> dict` applied."""
    from safetensors import safe_open

    with safe_open(str(source), framework="pt") as f:
        meta = dict(f.metadata())
    data = load_file(str(source))
    save_file((tensors or (lambda d: d))(data), str(target), metadata=(metadata or (lambda m: m))(meta))
    return target


def lora_a(tensors: dict) -> str:
    return sorted(k for k in tensors if ".lora_A." in k)[0]


def without(mapping: dict, key: str) -> dict:
    return {k: v for k, v in mapping.items() if k != key}


def write_pack(path: Path) -> Path:
    """A character pack in the real file format, made without training (its LoRA holds one layer pair of the
    tiny UNet, so it loads and checks as a pack but the UNet finds layers missing)."""
    from storyreel.core.models import get_preset
    from storyreel.generation.characters.pack import CharacterPack, save_pack

    generator = get_preset("tiny").generator
    rows = torch.Generator().manual_seed(0)
    layer = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
    save_pack(CharacterPack(
        token="<teddy>", init_word="bear", mode="timeinv", table=torch.randn(1000, 32, generator=rows),
        num_train_timesteps=1000, lora={f"{layer}.lora_A.weight": torch.randn(4, 16, generator=rows),
                                        f"{layer}.lora_B.weight": torch.zeros(16, 4)},
        lora_rank=4, lora_alpha=4.0, base_model={"base": generator.base, "controlnet": generator.controlnet,
                                                 "motion_adapter": generator.motion_adapter},
        concept_images=torch.zeros(1, 8, 8, 3, dtype=torch.uint8)), path)
    return path


@pytest.fixture(scope="module")
def h(tmp_path_factory):
    """The hostile workspace: a tiny index (one synthetic video), a character pack and tampered copies,
    bombs, a file where folders are expected; read-only for the rows (each writes under its own folder)."""
    from storyreel import index
    from storyreel.story.demo import write_character_images
    from storyreel.synthetic import make_corpus

    root = tmp_path_factory.mktemp("hostile")
    make_corpus(root / "videos", num_videos=1, shots_per_video=2, shot_seconds=1.5, size=(64, 48), fps=8)
    index.build(root / "videos", root / "index", index.BuildSettings(preset="tiny"))
    write_character_images(root / "images", (150, 90, 40), "round", count=1)
    pack = write_pack(root / "teddy.safetensors")
    (root / "a_file").write_text("not a folder")
    (root / "bomb").mkdir()
    png_header_only(root / "bomb" / "huge.png", 30000, 30000)  # past PIL's own limit: refused at open
    (root / "big").mkdir()
    png_header_only(root / "big" / "big.png", 9000, 8000)  # below PIL's limit, above ours: refused by size
    (root / "prose.txt").write_text("Teddy walks. Then he sits.")
    (root / "latin1.txt").write_bytes("Teddy mange une pêche.".encode("latin-1"))
    packs = root / "packs"
    packs.mkdir()
    table = load_file(str(pack))["timeinv.table"]
    variants = {
        "shape": dict(tensors=lambda d: {**d, "timeinv.table": table[None]}),
        "int": dict(tensors=lambda d: {**d, "timeinv.table": table.to(torch.int64)}),
        "nan": dict(tensors=lambda d: {**d, "timeinv.table": table * float("nan")}),
        "no_token": dict(metadata=lambda m: without(m, "token")),
        "bad_json": dict(metadata=lambda m: {**m, "base_model": "{not json"}),
        "emoji": dict(metadata=lambda m: {**m, "token": "\U0001F43B"}),
        "half_lora_pair": dict(tensors=lambda d: without(d, lora_a(d))),
    }
    for name, change in variants.items():
        tampered_pack(pack, packs / f"{name}.safetensors", **change)
    return SimpleNamespace(root=root, index=root / "index", pack=pack, images=root / "images",
                           file=root / "a_file", packs=packs)


def story(folder: Path, text: str, name: str = "story.yaml") -> Path:
    path = folder / name
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def generate(h, out, *extra):
    return ["generate", "--prompt", "a dog", "--structure", "0", "--index", h.index, "--out", out, *TINY, *extra]


def render(h, story_path, out):
    return ["render", story_path, "--index", h.index, "--out", out]


def train(h, out, *extra, images=None):
    return ["character", "train", images or h.images, "--token", "<bear1>", "--init-word", "bear", "--out", out,
            "--steps", "1", "--size", "32", "--frames", "2", *extra]


def plan(h, out, *extra):
    return ["plan", h.root / "prose.txt", "--out", out, *extra]


def corrupt_checkpoint(kind):
    def write(tmp):
        path = tmp / "c.safetensors.ckpt"
        if kind == "garbage":
            path.write_bytes(b"PK\x03\x04 truncated zip")
        else:
            torch.save({"step": 1} if kind == "keys" else [1, 2, 3], path)
    return write


# (id, argv(h, tmp), expected exit status, stderr pattern[, setup(tmp)])
ROWS = [
    # -- numbers without upper bounds, NaN; refused before any model loads
    ("frames-huge", lambda h, t: generate(h, t / "o.mp4", "--frames", "100000"), 1, r"frames must be from 1 to 4096"),
    ("height-huge", lambda h, t: generate(h, t / "o.mp4", "--height", "100000"), 1, r"height must be from 8 to 4096"),
    ("steps-huge", lambda h, t: generate(h, t / "o.mp4", "--steps", str(10**7)), 1, r"steps must be from 1 to 1000"),
    ("seed-huge", lambda h, t: generate(h, t / "o.mp4", "--seed", str(10**23)), 1,
     r"seed must be from 0 to 4294967295"),
    ("cfg-nan", lambda h, t: generate(h, t / "o.mp4", "--cfg", "nan"), 1, r"cfg must be a finite number"),
    ("structure-scale-nan", lambda h, t: generate(h, t / "o.mp4", "--structure-scale", "nan"), 1,
     r"structure_scale must be a finite number"),
    ("lora-scale-inf", lambda h, t: generate(h, t / "o.mp4", "--lora-scale", "inf"), 1,
     r"--lora-scale must be a finite number from 0 to 10"),
    ("memory-estimate", lambda h, t: generate(h, t / "o.mp4", "--frames", "4096", "--height", "4096",
                                              "--width", "4096"), 1,
     r"4096 frames of 4096x4096 need at least 2048\.0 GiB of memory"),
    ("story-fps-inf", lambda h, t: render(h, story(t, TINY_DEFAULTS.replace("fps: 8", "fps: .inf")
                                                   + "plots:\n  - text: A dog.\n"), t / "r"), 1,
     r"story\.yaml:1: defaults\.fps: expected a finite number, got inf"),
    ("story-seed-huge", lambda h, t: render(h, story(t, "plots:\n  - text: A dog.\n    seed: 1000000000000000000000\n"),
                                            t / "r"), 1,
     r"story\.yaml:3: plots\[0\]\.seed: must be from 0 to 4294967295"),
    ("story-frames-huge", lambda h, t: render(h, story(t, "defaults: {frames: 99999}\nplots:\n  - text: A dog.\n"),
                                              t / "r"), 1, r"defaults\.frames: must be from 1 to 4096"),
    ("story-not-utf8", lambda h, t: render(h, story(t, b"plots:\n  - text: caf\xe9\n"), t / "r"), 1,
     r"story\.yaml: cannot read story file"),
    ("train-lr-nan", lambda h, t: train(h, t / "c.safetensors", "--lr", "nan"), 1, r"--lr must be a finite number"),
    ("train-steps-huge", lambda h, t: train(h, t / "c.safetensors", "--steps", str(10**9)), 1,
     r"--steps must be at most"),
    # -- tampered character packs (all but the last fail before any model loads)
    *[(f"pack-{name}", lambda h, t, name=name: generate(h, t / "o.mp4", "--character", h.packs / f"{name}.safetensors"),
       1, pattern) for name, pattern in [
        ("shape", r"is damaged: timeinv\.table must be a 2-D float table, got \(1, \d+, 32\)"),
        ("int", r"is damaged: timeinv\.table must be a 2-D float table, got .* torch\.int64"),
        ("nan", r"is damaged: timeinv\.table holds NaN or infinite values"),
        ("no_token", r"is damaged: metadata 'token' is missing"),
        ("bad_json", r"is damaged: bad metadata \(Expecting"),
        ("emoji", r"is damaged: token '\U0001F43B': a character token is 1-64 ASCII"),
        ("half_lora_pair", r"is damaged: LoRA tensor .*lora_B\.weight has no partner .*lora_A\.weight"),
    ]],
    ("pack-lora-layers-missing", lambda h, t: generate(h, t / "o.mp4", "--character", h.pack), 1,
     r"character pack LoRA does not fit this UNet \(94 layers missing, e\.g\. down_blocks"),
    ("story-token-not-packs", lambda h, t: render(h, story(t, f'characters:\n  "<rex>": {{pack: {h.pack}}}\n'
                                                          "plots:\n  - text: <rex> runs.\n"), t / "r"), 1,
     r"characters\.<rex>: pack .*teddy\.safetensors is for token '<teddy>'"),
    ("story-emoji-token", lambda h, t: render(h, story(t, f'characters:\n  "\U0001F436": {{pack: {h.pack}}}\n'
                                                       "plots:\n  - text: a dog runs.\n"), t / "r"), 1,
     r"characters: '\U0001F436': a character token is 1-64 ASCII"),
    ("train-emoji-token", lambda h, t: [*train(h, t / "c.safetensors")[:3], "--token", "\U0001F436",
                                        *train(h, t / "c.safetensors")[5:]], 1,
     r"--token '\U0001F436': a character token"),
    # -- corrupt files
    ("bomb-train", lambda h, t: train(h, t / "c.safetensors", images=h.root / "bomb"), 1,
     r"image .*huge\.png is 900 megapixels, above the 67-megapixel limit; downscale it first"),
    ("big-train", lambda h, t: train(h, t / "c.safetensors", images=h.root / "big"), 1,
     r"image .*big\.png is 9000x8000 \(72 megapixels\), above the 67-megapixel limit"),
    ("bomb-search", lambda h, t: ["search", "--image", h.root / "bomb" / "huge.png", "--index", h.index], 1,
     r"--image .*huge\.png is 900 megapixels"),
    ("bomb-depth", lambda h, t: ["depth", h.root / "bomb" / "huge.png", "--out", t / "d.mp4"], 1,
     r"source image .*huge\.png is 900 megapixels"),
    *[(f"resume-{kind}", lambda h, t: train(h, t / "c.safetensors", "--resume"), 1, pattern, corrupt_checkpoint(kind))
      for kind, pattern in [("garbage", r"--resume: checkpoint .*c\.safetensors\.ckpt is unreadable"),
                            ("keys", r"--resume: checkpoint .* is damaged \(field 'table' missing"),
                            ("list", r"--resume: checkpoint .* is damaged \(not a dict\)")]],
    # -- output paths under a file or onto a folder, found before any work
    ("depth-out-under-file", lambda h, t: ["depth", "0", "--index", h.index, "--out", h.file / "d.mp4"], 1,
     r"--out .*a_file/d\.mp4: .*a_file is a file, not a folder"),
    ("depth-raw-folder", lambda h, t: ["depth", "0", "--index", h.index, "--out", t / "d.mp4", "--raw", t], 1,
     r"--raw .* is a folder; give a file name"),
    ("depth-sheet-under-file", lambda h, t: ["depth", "0", "--index", h.index, "--out", t / "d.mp4",
                                             "--sheet", h.file / "s.png"], 1,
     r"--sheet .*a_file is a file, not a folder"),
    ("render-out-file", lambda h, t: render(h, story(t, "plots:\n  - text: A dog.\n"), h.file), 1,
     r"--out .*a_file is a file; give a folder"),
    ("render-out-under-file", lambda h, t: render(h, story(t, "plots:\n  - text: A dog.\n"), h.file / "r"), 1,
     r"--out .*a_file/r: .*a_file is a file, not a folder"),
    ("plan-out-folder", lambda h, t: plan(h, t), 1, r"--out .* is a folder; give a file name"),
    ("plan-out-under-file", lambda h, t: plan(h, h.file / "s.yaml"), 1, r"a_file is a file, not a folder"),
    ("train-out-under-file", lambda h, t: train(h, h.file / "c.safetensors"), 1, r"a_file is a file, not a folder"),
    ("generate-out-under-file", lambda h, t: generate(h, h.file / "o.mp4"), 1, r"a_file is a file, not a folder"),
    # -- the LLM client's options, and story text that is not UTF-8
    ("llm-timeout-negative", lambda h, t: plan(h, t / "s.yaml", "--llm", "http://127.0.0.1:9", "--llm-model", "m",
                                               "--llm-timeout", "-1"), 1,
     r"--llm-timeout must be a number of seconds above 0"),
    ("llm-timeout-nan", lambda h, t: plan(h, t / "s.yaml", "--llm", "http://127.0.0.1:9", "--llm-model", "m",
                                          "--llm-timeout", "nan"), 1, r"--llm-timeout must be .* \(got nan\)"),
    ("llm-not-a-url", lambda h, t: plan(h, t / "s.yaml", "--llm", "not a url", "--llm-model", "m"), 1,
     r"--llm 'not a url': give an http:// or https:// URL"),
    ("llm-ftp", lambda h, t: plan(h, t / "s.yaml", "--llm", "ftp://127.0.0.1/", "--llm-model", "m"), 1,
     r"--llm 'ftp://127\.0\.0\.1/': give an http:// or https:// URL"),
    ("plan-not-utf8", lambda h, t: ["plan", h.root / "latin1.txt", "--out", t / "s.yaml"], 1,
     r"latin1\.txt: the story text is not UTF-8 \(byte 17\); save it as UTF-8"),
]


@pytest.mark.parametrize("row", ROWS, ids=[row[0] for row in ROWS])
def test_hostile_input_gets_one_line(run_cli, h, tmp_path, row):
    _, argv, code, pattern, *setup = row
    for prepare in setup:
        prepare(tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    proc = run_cli(*argv(h, tmp_path), env=ENV)
    assert "Traceback" not in proc.stderr
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("storyreel: error: "), proc.stderr
    assert re.search(pattern, lines[0]), lines[0]
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert [p for p in written if p not in before and p.name != "story.yaml"] == []  # no partial output


# ---------------------------------------------------------------------------------------------------
# Render owns its output folder; an interrupted re-render forgets nothing


RENDER_STORY = TINY_DEFAULTS + "plots:\n  - text: A dog runs.\n  - text: A cat sits.\n  - text: A bird flies.\n"


def test_render_refuses_a_foreign_folder_and_a_foreign_manifest(run_cli, h, tmp_path):
    from storyreel.story.folder import MARKER

    out = tmp_path / "out"
    out.mkdir()
    (out / "story.mp4").write_bytes(b"my holiday video")
    (out / "manifest.json").write_text('{"shipping": "manifest"}')
    proc = run_cli(*render(h, story(tmp_path, RENDER_STORY), out), env=ENV)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr == (f"storyreel: error: --out {out} is a folder with other files in it (manifest.json, "
                           "story.mp4) and not a storyreel render; choose a new or empty folder, or pass --force "
                           "to render into it\n")
    assert (out / "story.mp4").read_bytes() == b"my holiday video" and sorted(os.listdir(out)) == [
        "manifest.json", "story.mp4"]

    (out / MARKER).write_text("{}")  # a render folder whose manifest was replaced by something else
    proc = run_cli(*render(h, story(tmp_path, RENDER_STORY), out), env=ENV)
    assert proc.returncode == 1
    assert proc.stderr == (f"storyreel: error: --out {out / 'manifest.json'} is not a storyreel render manifest; "
                           "move it away, choose another --out, or pass --force to replace it\n")
    assert (out / "manifest.json").read_text() == '{"shipping": "manifest"}'


def test_a_second_render_into_the_same_folder_says_one_is_running(run_cli, h, tmp_path):
    from storyreel.story.folder import claim_output_folder, render_lock

    out = tmp_path / "out"
    claim_output_folder(out)
    with render_lock(out):  # the first render, still running
        proc = run_cli(*render(h, story(tmp_path, RENDER_STORY), out), env=ENV)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr == (f"storyreel: error: --out {out}: another storyreel render is writing there (process "
                           f"{os.getpid()}); wait for it to finish or choose another --out\n")
    with render_lock(out):  # released when the first one ends (or dies: an flock goes with its process)
        pass


def test_interrupted_rerender_keeps_finished_plots_and_unrelated_files(h, tmp_path, monkeypatch):
    """Data-loss case 3 and 4: a rerender interrupted in its second plot still records the third plot
    (rendered earlier, unchanged; the earlier render of the changed plot is no longer current and is
    dropped), so the next run renders only the changed plot; --force renders into a
    foreign folder without touching the files render does not write."""
    from storyreel.generation.pipeline import StructureGuidedPipeline
    from storyreel.story.render import RenderOptions, render_story

    calls, interrupt = [], [True]
    original = StructureGuidedPipeline.__call__

    def sampler(self, prompt, *args, **kwargs):
        calls.append(prompt)
        if prompt.startswith("A cat dances") and interrupt:
            interrupt.clear()
            raise KeyboardInterrupt  # Ctrl-C in the middle of plot 1's sampling, once
        return original(self, prompt, *args, **kwargs)

    monkeypatch.setattr(StructureGuidedPipeline, "__call__", sampler)
    # The three renders share their (read-only, deterministic) models: loaded once, not three times.
    from storyreel.generation import generate
    from storyreel.index import embed

    loaded = {}

    def once(load):
        def cached(*args, **kwargs):
            key = repr((load.__name__, args, sorted(kwargs.items())))
            if key not in loaded:
                loaded[key] = load(*args, **kwargs)
            return loaded[key]
        return cached

    monkeypatch.setattr(generate, "ClipGenerator", once(generate.ClipGenerator))
    monkeypatch.setattr(embed, "load_clip", once(embed.load_clip))
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    path = story(tmp_path, RENDER_STORY)
    with pytest.raises(UserError, match="not a storyreel render"):
        render_story(path, h.index, out, RenderOptions(preset="tiny"))
    first = render_story(path, h.index, out, RenderOptions(preset="tiny", force=True))
    assert len(calls) == 3 and (out / "notes.txt").read_text() == "mine"
    plot2 = (out / "plots" / "02.mp4").read_bytes()

    calls.clear()
    story(tmp_path, RENDER_STORY.replace("A cat sits.", "A cat dances."))
    with pytest.raises(KeyboardInterrupt):
        render_story(path, h.index, out, RenderOptions(preset="tiny"))
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(manifest["plots"]) == ["0", "2"]  # plot 2 is not forgotten; changed plot 1 is not done yet
    assert manifest["plots"]["2"]["key"] == first.plots[2].key

    calls.clear()
    final = render_story(path, h.index, out, RenderOptions(preset="tiny"))
    assert calls == ["A cat dances."]  # only the changed plot; plot 2 kept, not re-rendered
    assert [p.reused for p in final.plots] == [True, False, True]
    assert (out / "plots" / "02.mp4").read_bytes() == plot2 and (out / "notes.txt").read_text() == "mine"


# ---------------------------------------------------------------------------------------------------
# Caches and temp files


def test_damaged_depth_cache_entry_is_discarded_and_recomputed_with_a_note(h, tmp_path):
    from storyreel import depth

    index = tmp_path / "index"
    shutil.copytree(h.index, index, ignore=shutil.ignore_patterns("depth_cache"))  # renders above cached some
    kwargs = dict(model="tiny", size=(32, 32), num_frames=2, index_dir=index)
    first, info = depth.conditioning_for_source(0, **kwargs)
    assert info["cache"] == "miss"
    [cached] = (index / "depth_cache").glob("clip0_*.npy")
    for damage in (b"\x93NUMPY truncated", None):
        if damage is None:
            np.save(cached, np.full((3, 32, 32), np.nan, np.float32))  # a valid .npy of the wrong shape
        else:
            cached.write_bytes(damage)
        again, info = depth.conditioning_for_source(0, **kwargs)
        assert info["cache"] == "miss" and info["cache_note"] == (
            f"depth cache file {cached} was damaged; discarded and recomputed")
        assert torch.equal(again, first)
    _, info = depth.conditioning_for_source(0, **kwargs)
    assert info["cache"] == "hit" and "cache_note" not in info


def test_depth_writes_all_outputs_or_none(run_cli, h, tmp_path, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("storyreel.depth.media.write_sheet", disk_full)
    proc = run_cli("depth", "0", "--index", h.index, "--out", tmp_path / "d.mp4", "--raw", tmp_path / "d.npy",
                   "--sheet", tmp_path / "d.png", env=ENV)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[-1] == ("storyreel: error: cannot write the depth outputs (No space left on "
                                            "device); none was kept")
    assert list(tmp_path.iterdir()) == []


def test_temp_files_of_a_killed_writer_are_removed_by_the_next_write(run_cli, h, tmp_path):
    from storyreel.core.files import TEMP_MARK

    dead = tmp_path / f".s.yaml.{TEMP_MARK}999999999.x1.yaml"  # no such process: it was killed mid-write
    alive = tmp_path / f".s.yaml.{TEMP_MARK}1.x2.yaml"  # process 1 runs: its write is in progress
    dead_dir = tmp_path / f".frames.{TEMP_MARK}999999999.x3"
    for path in (dead, alive):
        path.write_text("partial")
    dead_dir.mkdir()
    run_cli(*plan(h, tmp_path / "s.yaml"), env=ENV, check=True)
    assert not dead.exists() and not dead_dir.exists() and alive.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, "s.yaml"])


# ---------------------------------------------------------------------------------------------------
# The LLM client against fake servers


def second_loopback() -> str:
    """127.0.0.2 where the OS routes all of 127/8 to loopback (Linux), else 127.0.0.1 on another port."""
    try:
        with socket.socket() as probe:
            probe.bind(("127.0.0.2", 0))
        return "127.0.0.2"
    except OSError:
        return "127.0.0.1"


def test_redirect_to_another_host_never_receives_the_key(run_cli, h, tmp_path):
    def elsewhere(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", "2")
        handler.end_headers()
        handler.wfile.write(b"{}")

    with FakeServer(second_loopback(), elsewhere) as thief:
        def redirect(handler):
            handler.send_response(307)
            handler.send_header("Location", f"{thief.url}/v1/chat/completions")
            handler.send_header("Content-Length", "0")
            handler.end_headers()

        with FakeServer("127.0.0.1", redirect) as server:
            proc = run_cli(*plan(h, tmp_path / "s.yaml", "--llm", server.url, "--llm-model", "m"),
                           env={**ENV, "STORYREEL_LLM_API_KEY": "sk-secret"})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr == (f"storyreel: error: LLM server {server.url}/v1/chat/completions redirects (HTTP 307) to "
                           f"{thief.url}/v1/chat/completions; storyreel follows no redirects (the API key must "
                           "not go to another address): give the final URL with --llm\n")
    assert server.requests[0]["headers"]["Authorization"] == "Bearer sk-secret"  # the host the user named
    assert thief.requests == []
    assert not (tmp_path / "s.yaml").exists()


def test_trickling_server_is_cut_off_at_the_deadline(run_cli, h, tmp_path):
    stop = threading.Event()

    def trickle(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", "100000")
        handler.end_headers()
        while not stop.is_set():  # one byte every 20 ms: each read is quick, the whole reply takes ~30 min
            try:
                handler.wfile.write(b" ")
                handler.wfile.flush()
            except OSError:
                return
            time.sleep(0.02)

    with FakeServer("127.0.0.1", trickle) as server:
        start = time.monotonic()
        proc = run_cli(*plan(h, tmp_path / "s.yaml", "--llm", server.url, "--llm-model", "m", "--llm-timeout", "0.5"),
                       env=ENV)
        elapsed = time.monotonic() - start
        stop.set()
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr == (f"storyreel: error: LLM server {server.url}/v1/chat/completions did not answer within "
                           "--llm-timeout 0.5 s; raise --llm-timeout or check the server\n")
    assert 0.5 <= elapsed < 3.0


def test_oversized_reply_is_refused(run_cli, h, tmp_path):
    def huge(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", str(10 * 2**20))
        handler.end_headers()

    with FakeServer("127.0.0.1", huge) as server:
        proc = run_cli(*plan(h, tmp_path / "s.yaml", "--llm", server.url, "--llm-model", "m"), env=ENV)
    assert proc.returncode == 1
    assert proc.stderr == (f"storyreel: error: LLM server {server.url}/v1/chat/completions sent a 10485760-byte reply; "
                           "the limit is 4194304 bytes\n")


# ---------------------------------------------------------------------------------------------------
# The safety net: an unexpected exception is one line plus the file with its traceback


def test_unexpected_error_is_one_line_with_the_traceback_file(run_cli, h, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr("storyreel.story.planner.plan_rule_based", broken)
    proc = run_cli(*plan(h, tmp_path / "s.yaml"), env=ENV)
    assert proc.returncode == 1
    match = re.fullmatch(r"storyreel: error: unexpected RuntimeError: boom second line \(full traceback in "
                         r"(\S+); rerun with --debug to print it\)\n", proc.stderr)
    assert match, proc.stderr
    saved = Path(match.group(1))
    try:
        text = saved.read_text()
        assert "Traceback (most recent call last)" in text and "RuntimeError: boom" in text
    finally:
        saved.unlink()

    proc = run_cli("--debug", *plan(h, tmp_path / "s.yaml"), env=ENV)
    assert proc.returncode == 1 and "Traceback (most recent call last)" in proc.stderr
    assert proc.stderr.rstrip().endswith("RuntimeError: boom\nsecond line")
    proc = run_cli(*plan(h, tmp_path / "s.yaml"), "--debug", env=ENV)  # anywhere on the line
    assert proc.returncode == 1 and "Traceback (most recent call last)" in proc.stderr

    monkeypatch.setattr("storyreel.story.planner.plan_rule_based",
                        lambda *a, **k: (_ for _ in ()).throw(MemoryError()))
    proc = run_cli(*plan(h, tmp_path / "s.yaml"), env=ENV)
    assert proc.returncode == 1 and proc.stderr.startswith("storyreel: error: ran out of memory; lower --frames")
    Path(re.search(r"full traceback in (\S+);", proc.stderr).group(1)).unlink()


# ---------------------------------------------------------------------------------------------------
# Fuzz: story files and CLI numbers never end in anything but a UserError (no model is loaded)

hypothesis = pytest.importorskip("hypothesis")  # in the `test` extra; CI has it
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

# 500 examples per target, generation only (no replay database, no shrinking unless one fails).
FUZZ = settings(max_examples=500, deadline=None, derandomize=True, database=None,
                phases=[Phase.explicit, Phase.generate, Phase.shrink],
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
EDGE_NUMBERS = ["nan", "inf", "-inf", "1e400", "-1e400", "0", "-0", "-1", "1e-400", "0x10", "", " ", "1_000", "٣",
                "4096", "4097", "4294967295", "4294967296", "1000", "1001", "0.05", "100.5", str(10**23), "2.5e9"]
NUMBER_TEXT = st.one_of(st.sampled_from(EDGE_NUMBERS), st.integers(-(10**30), 10**30).map(str),
                        st.floats(allow_nan=True, allow_infinity=True).map(repr))
YAML_SCALARS = [".inf", ".nan", "-.inf", "~", "1e999", "0", "-1", "4096", "4097", "8", "9", "0.5", "1.5", "true",
                "''", "'x'", "'<rex>'", "'\U0001F436'", "pan-left", "[]", "{}", "[1, 2]", "!!python/object:os.system x",
                str(10**25), "'a b'", "99999999999999999999"]
YAML_VALUE = st.one_of(st.sampled_from(YAML_SCALARS), st.integers(-(10**25), 10**25).map(str),
                       st.floats(allow_nan=True, allow_infinity=True).map(repr))
SETTING_KEYS = ["frames", "fps", "height", "width", "steps", "cfg", "tau", "seed", "structure_scale", "bogus"]
PLOT_KEYS = ["text", "query", "prompt", "motion", "frames", "tau", "seed", "clip", "characters", "backend"]


def flow_mapping(keys):
    """A YAML flow mapping such as `{frames: 1e999, tau: .nan}` over `keys`."""
    return st.dictionaries(st.sampled_from(keys), YAML_VALUE, max_size=4).map(
        lambda d: "{" + ", ".join(f"{k}: {v}" for k, v in d.items()) + "}")


STORY_TEXT = st.builds(
    lambda title, defaults, character, plots: f"{title}defaults: {defaults}\n{character}plots:\n" + "".join(
        f"  - {plot}\n" for plot in plots),
    st.sampled_from(["", "title: T\n", "title: [1]\n", "backend: sora\n", "backend: t2v-zero\n"]),
    flow_mapping(SETTING_KEYS),
    st.sampled_from(["", 'characters: {"<rex>": {pack: rex.safetensors}}\n', "characters: {a b: {pack: p}}\n",
                     "characters: 3\n", 'characters: {"\U0001F436": {pack: x, tau: .nan}}\n']),
    st.lists(st.one_of(flow_mapping(PLOT_KEYS).map(lambda m: m.replace("{", "{text: a dog, ", 1)), YAML_VALUE),
             min_size=0, max_size=3),
)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@FUZZ
@given(text=st.one_of(STORY_TEXT, st.text(max_size=40)))
def test_fuzz_story_files_end_in_a_user_error_or_valid_settings(fuzz_dir, text):
    from storyreel.story.format import _StoryReader, plot_settings

    try:
        story_ = _StoryReader("fuzz.yaml", fuzz_dir).read(text)  # parse + validate, as load_story does
        for i in range(len(story_.plots)):
            plot_settings(story_, i, "tiny").check()  # what render checks before any model loads
    except UserError as err:
        assert "\n" not in str(err).strip()


GENERATE_FLAGS = ["--frames", "--height", "--width", "--steps", "--seed", "--cfg", "--tau", "--structure-scale",
                  "--motion-strength", "--t0", "--t1", "--lora-scale"]


@pytest.fixture(scope="module")
def parser():
    from storyreel.cli import build_parser

    parser = build_parser()
    parser.error = lambda message: (_ for _ in ()).throw(SystemExit(2))  # argparse's usage line, unprinted
    for action in parser._subparsers._group_actions[0].choices.values():
        action.error = parser.error
    return parser


@FUZZ
@given(values=st.dictionaries(st.sampled_from(GENERATE_FLAGS), NUMBER_TEXT, min_size=1, max_size=4),
       backend=st.sampled_from(["animatediff", "t2v-zero"]), field=st.sampled_from(["-1,2", "nan,1", "1e400,0", "3"]))
def test_fuzz_generate_numbers_end_in_a_usage_error_or_a_user_error(parser, values, backend, field):
    """Parse as `storyreel generate` does, then its checks (settings, LoRA scale) up to the first model load."""
    from storyreel.cli.generate import generate_settings
    from storyreel.generation.settings import check_lora_scale

    argv = ["generate", "--prompt", "p", "--out", "o.mp4", "--backend", backend, f"--motion-field={field}",
            *(f"{flag}={value}" for flag, value in values.items())]
    try:
        args = parser.parse_args(argv)
    except SystemExit as err:  # argparse: one usage line, exit 2
        assert err.code == 2
        return
    for check in (lambda: generate_settings(args, "tiny").check(), lambda: check_lora_scale(args.lora_scale)):
        try:
            check()
        except UserError as err:
            assert "\n" not in str(err)


@FUZZ
@given(k=NUMBER_TEXT, min_seconds=NUMBER_TEXT, timeout=NUMBER_TEXT, url=st.one_of(
    st.sampled_from(["http://127.0.0.1:9", "ftp://x", "http://[::1", "http://h:99999", "file:///etc/passwd",
                     "https://u:p@h/", "javascript:x", ""]), st.text(max_size=20)))
def test_fuzz_search_and_llm_numbers_end_in_a_user_error(fuzz_dir, k, min_seconds, timeout, url):
    from storyreel.retrieval.query import search
    from storyreel.story.planner import LLMOptions

    for check in (lambda: search(fuzz_dir / "no-index", "dog", k=int(k), min_seconds=float(min_seconds)),
                  lambda: LLMOptions(url, "m", float(timeout)).check()):
        try:
            check()
        except ValueError:  # int("nan"), float("x"): argparse turns these into a usage line (exit 2)
            continue
        except UserError as err:
            assert "\n" not in str(err)
