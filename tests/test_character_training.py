"""Character training on the tiny preset: what changes, what gets gradient, packs, resume, bad input."""

import copy
import re

import numpy as np
import pytest
import torch
from PIL import Image

from storyreel.core.errors import UserError
from storyreel.generation.characters.pack import load_pack, save_pack
from storyreel.generation.components import create_components
from storyreel.training.train import CharacterTrainer, TrainSettings, load_concept_images


@pytest.fixture(scope="module")
def tiny():
    return create_components("tiny")


@pytest.fixture
def components(tiny):
    return copy.deepcopy(tiny)  # training adds LoRA and a token: every test gets its own copy


def gray_depth(frames: np.ndarray) -> torch.Tensor:
    """Stand-in depth model for unit tests: brightness as depth, (F, 3, H, W) in [0, 1]."""
    return torch.from_numpy(frames.copy()).permute(0, 3, 1, 2).float().mean(1, keepdim=True).repeat(1, 3, 1, 1) / 255


@pytest.fixture
def image_dir(tmp_path):
    rng = np.random.RandomState(0)
    folder = tmp_path / "teddy"
    folder.mkdir()
    Image.fromarray((rng.rand(40, 48, 3) * 255).astype(np.uint8)).save(folder / "a.png")
    Image.fromarray((rng.rand(36, 30, 3) * 255).astype(np.uint8)).save(folder / "b.webp")
    (folder / "notes.txt").write_text("not an image")
    return folder


def make_trainer(components, image_dir, **overrides):
    settings = dict(token="<teddy>", init_word="bear", steps=4, size=32, frames=2, learning_rate=5e-2, num_buckets=4)
    settings.update(overrides)
    return CharacterTrainer(components, components.ids, TrainSettings(**settings), load_concept_images(image_dir),
                            gray_depth)


def fixed_loss(trainer) -> float:
    generator = torch.Generator().manual_seed(123)  # same latents, noise and templates every time
    with torch.no_grad():
        return float(np.mean([trainer.clip_loss(clip, t, generator).item()
                              for clip in trainer.clips for t in (100, 400, 700, 950)]))


def test_loading_images_rotates_by_exif_and_skips_other_files(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    img = Image.new("RGB", (40, 20), (200, 10, 10))
    exif = img.getexif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
    img.save(folder / "rot.jpg", exif=exif)
    (folder / "skip.txt").write_text("x")
    images = load_concept_images(folder)
    assert [i.pixels.shape for i in images] == [(40, 20, 3)]
    assert len(images[0].sha256) == 64


def test_training_lowers_the_loss_and_changes_only_table_and_lora(components, image_dir):
    def frozen_state():
        # peft moves a wrapped layer's weights to `*.base_layer.*`; compare them under the original name
        state = {f"unet.{k.replace('.base_layer', '')}": v.clone()
                 for k, v in components.unet.state_dict().items() if "lora_" not in k}
        for name in ("controlnet", "vae", "text_encoder"):
            state.update({f"{name}.{k}": v.clone() for k, v in getattr(components, name).state_dict().items()})
        return state

    before_state = frozen_state()
    trainer = make_trainer(components, image_dir, steps=8)
    assert frozen_state().keys() == before_state.keys()  # adding LoRA renames no base weight
    table_before = trainer.table.rows.detach().clone()
    lora_before = [p.detach().clone() for p in trainer.lora_params]
    loss_before = fixed_loss(trainer)
    trainer.fit()
    assert trainer.step_count == 8 and len(trainer.losses) == 8
    assert fixed_loss(trainer) < loss_before - 0.05

    after_state = frozen_state()
    changed = [k for k in before_state if not torch.equal(before_state[k], after_state[k])]
    assert changed == []  # every base weight bit-identical
    assert not torch.equal(trainer.table.rows, table_before)
    assert all(not torch.equal(p, q) for p, q in zip(trainer.lora_params, lora_before))
    lora_names = [n for n, p in components.unet.named_parameters() if "lora_" in n]
    assert lora_names and all(".attentions." in n and "motion_modules" not in n for n in lora_names)
    assert {n.split(".transformer_blocks.0.")[1].split(".lora_")[0] for n in lora_names} == {
        f"{attn}.{proj}" for attn in ("attn1", "attn2") for proj in ("to_q", "to_k", "to_v", "to_out.0")}


@pytest.mark.parametrize("buckets", [None, 10])
def test_table_gets_gradient_only_in_the_sampled_timestep_row(components, image_dir, buckets):
    # free rows (anchors=None) pin the paper's literal table; 10 buckets < 50 anchors is free too
    trainer = make_trainer(components, image_dir, num_buckets=buckets, anchors=None if buckets is None else 50)
    result = trainer.step()
    (timestep,) = result.timesteps
    rows_with_gradient = trainer.table.rows.grad.abs().sum(1).nonzero().flatten().tolist()
    expected = timestep if buckets is None else timestep * 10 // 1000
    assert trainer.table.num_buckets == (1000 if buckets is None else 10)
    assert rows_with_gradient == [expected]


def test_anchored_table_shares_the_sampled_timesteps_gradient_with_its_neighbours(components, image_dir):
    trainer = make_trainer(components, image_dir, num_buckets=None)  # default: 1000 rows from 50 anchors
    assert trainer.table.num_buckets == 1000 and trainer.table_param.shape == (50, 32)
    (timestep,) = trainer.step().timesteps
    weights = trainer.table.weights
    anchors_with_gradient = trainer.table_param.grad.abs().sum(1).nonzero().flatten().tolist()
    assert anchors_with_gradient == weights[timestep].nonzero().flatten().tolist()
    reached = trainer.rows_updated()
    assert reached[timestep] and 20 <= int(reached.sum()) <= 62  # the sampled row and its neighbours
    assert torch.equal(reached, (weights[:, anchors_with_gradient] > 0).any(1))
    # every row is a convex combination of its two nearest anchors (anchor i at timestep i·999/49)
    assert torch.allclose(weights.sum(1), torch.ones(1000)) and int((weights > 0).sum(1).max()) == 2
    assert [b for b in range(1000) if int((weights[b] > 0).sum()) == 1] == [0, 999]  # 49 and 999 are coprime
    assert torch.allclose(trainer.pack().table, weights @ trainer.table_param.detach())


def ddim_rows(trainer, steps: int) -> list[int]:
    scheduler = copy.deepcopy(trainer.c.scheduler)
    scheduler.set_timesteps(steps)
    return sorted({trainer.table.bucket(int(t)) for t in scheduler.timesteps})


def updates_per_row(trainer, steps: int) -> torch.Tensor:
    """Steps (one timestep each, drawn by the trainer's own sampler) whose gradient reaches each row."""
    counts = torch.zeros(trainer.table.num_buckets, dtype=torch.long)
    weights = getattr(trainer.table, "weights", None)
    for _ in range(steps):
        bucket = trainer.table.bucket(trainer.sample_timestep())
        if weights is None:
            counts[bucket] += 1
        else:  # the row depends on an anchor that this timestep's gradient reaches
            counts += (weights[:, weights[bucket] > 0] > 0).any(1).long()
    return counts


def test_every_ddim50_row_gets_ten_updates_in_1000_steps(components, image_dir):
    trainer = make_trainer(components, image_dir, num_buckets=None, steps=1000)
    rows = ddim_rows(trainer, 50)
    assert len(rows) == 50
    counts = updates_per_row(trainer, 1000)[rows]
    assert int((counts >= 10).sum()) == 50, counts.tolist()
    assert int(counts.min()) >= 10
    for steps in (25, 30):  # not tied to one schedule: DDIM-25's rows are not DDIM-50's
        assert int(updates_per_row(trainer, 1000)[ddim_rows(trainer, steps)].min()) >= 10
    assert "50 evenly spaced learned anchors" in trainer.pack().settings["timeinv_training"]


def test_free_rows_leave_ddim50_rows_untrained(tiny, image_dir):
    # free rows (anchors=None): ~1 update per row, a third of the rows never reached
    trainer = make_trainer(copy.deepcopy(tiny), image_dir, num_buckets=None, anchors=None, steps=1000)
    counts = updates_per_row(trainer, 1000)[ddim_rows(trainer, 50)]
    assert int((counts >= 10).sum()) == 0 and int((counts == 0).sum()) >= 5
    assert "free rows" in trainer.pack().settings["timeinv_training"]


def test_classic_ti_mode_is_one_row_and_no_lora(tiny, components, image_dir, tmp_path):
    from safetensors import safe_open

    unet_before = {k: v.clone() for k, v in components.unet.state_dict().items()}
    trainer = make_trainer(components, image_dir, mode="ti", num_buckets=None, steps=3, checkpoint_every=3)
    trainer.fit(tmp_path / "ti.ckpt")
    assert trainer.table.rows.shape == (1, 32) and trainer.table.rows.grad.abs().sum() > 0
    assert trainer.adapter is None and trainer.lora_params == []
    assert not any("lora_" in n for n, _ in components.unet.named_parameters())
    assert not getattr(components.unet, "peft_config", None)
    unet_after = components.unet.state_dict()
    assert unet_after.keys() == unet_before.keys()
    assert all(torch.equal(unet_before[k], unet_after[k]) for k in unet_before)  # the UNet is untouched
    assert [p for group in trainer.optimizer.param_groups for p in group["params"]] == [trainer.table.rows]

    save_pack(trainer.pack(), tmp_path / "ti.safetensors")
    with safe_open(str(tmp_path / "ti.safetensors"), framework="pt") as f:
        assert sorted(f.keys()) == ["concept.images", "timeinv.table"]  # zero LoRA tensors
    pack = load_pack(tmp_path / "ti.safetensors")
    assert pack.mode == "ti" and pack.lora == {} and (pack.lora_rank, pack.lora_alpha) == (0, 0.0)

    resumed = make_trainer(copy.deepcopy(tiny), image_dir, mode="ti", num_buckets=None, steps=3)
    resumed.load_checkpoint(tmp_path / "ti.ckpt")
    assert resumed.step_count == 3 and torch.equal(resumed.table.rows, trainer.table.rows)


def test_lora_mode_keeps_the_token_at_the_init_word_and_learns_only_the_lora(components, image_dir, tmp_path):
    from storyreel.generation.characters.tokens import single_token_id

    trainer = make_trainer(components, image_dir, mode="lora", num_buckets=None, steps=3)
    lora_before = [p.detach().clone() for p in trainer.lora_params]
    trainer.fit()
    init = components.text_encoder.get_input_embeddings().weight[single_token_id(components.tokenizer, "bear")]
    assert trainer.table.rows.shape == (1, 32) and torch.equal(trainer.table.rows[0], init)
    assert [p for group in trainer.optimizer.param_groups for p in group["params"]] == trainer.lora_params
    assert any(not torch.equal(a, b) for a, b in zip(lora_before, trainer.lora_params))
    save_pack(trainer.pack(), tmp_path / "lora.safetensors")
    pack = load_pack(tmp_path / "lora.safetensors")
    assert pack.mode == "lora" and pack.lora and pack.table.shape == (1, 32)


@pytest.mark.parametrize("buckets", [4, None])  # free rows; 1000 rows from 50 anchors
def test_pack_round_trip_and_exact_resume(tiny, image_dir, tmp_path, buckets):
    straight = make_trainer(copy.deepcopy(tiny), image_dir, steps=3, num_buckets=buckets)
    straight.fit()

    first = make_trainer(copy.deepcopy(tiny), image_dir, steps=2, checkpoint_every=2, num_buckets=buckets)
    first.fit(tmp_path / "pack.ckpt")
    resumed = make_trainer(copy.deepcopy(tiny), image_dir, steps=3, num_buckets=buckets)
    resumed.load_checkpoint(tmp_path / "pack.ckpt")
    assert resumed.step_count == 2
    resumed.fit()
    assert torch.equal(resumed.table.rows, straight.table.rows)
    assert resumed.losses == straight.losses
    for p, q in zip(resumed.lora_params, straight.lora_params):
        assert torch.equal(p, q)

    pack = resumed.pack()
    save_pack(pack, tmp_path / "teddy.safetensors")
    loaded = load_pack(tmp_path / "teddy.safetensors")
    assert torch.equal(loaded.table, pack.table) and loaded.lora.keys() == pack.lora.keys()
    assert all(torch.equal(loaded.lora[k], pack.lora[k]) for k in pack.lora)
    assert torch.equal(loaded.concept_images, pack.concept_images) and loaded.concept_images.shape == (2, 224, 224, 3)
    assert (loaded.token, loaded.init_word, loaded.mode, loaded.base_model) == ("<teddy>", "bear", "timeinv", tiny.ids)
    assert loaded.image_hashes == [i.sha256 for i in resumed.images]
    assert loaded.settings["steps_done"] == 3 and loaded.settings["num_buckets"] == buckets
    assert loaded.table.shape == (buckets or 1000, 32)

    free = make_trainer(copy.deepcopy(tiny), image_dir, steps=3, num_buckets=buckets, anchors=None)
    if buckets is None:  # a free-row checkpoint and an anchored one hold different tensors: refused
        with pytest.raises(UserError, match="checkpoint .* is for other training inputs"):
            free.load_checkpoint(tmp_path / "pack.ckpt")

    other = make_trainer(copy.deepcopy(tiny), image_dir, steps=3, token="<bear2>")
    with pytest.raises(UserError, match="checkpoint .* is for other training inputs"):
        other.load_checkpoint(tmp_path / "pack.ckpt")


def one_line(err) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_bad_input_gives_one_clear_line(components, tmp_path, image_dir):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError) as err:
        load_concept_images(tmp_path / "empty")
    assert "has no images" in one_line(err)

    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "cat.png").write_bytes(b"definitely not a png")
    with pytest.raises(UserError) as err:
        load_concept_images(tmp_path / "broken")
    assert one_line(err) == (f"image {tmp_path / 'broken' / 'cat.png'}: not a readable image (UnidentifiedImageError); "
                             "give one of .jpg, .jpeg, .png, .webp, .bmp, .tif, .tiff")

    with pytest.raises(UserError) as err:
        make_trainer(components, image_dir, token="bear")
    assert "--token 'bear' is already in the tokenizer's vocabulary" in one_line(err)

    with pytest.raises(UserError) as err:
        make_trainer(components, image_dir, init_word="teddybearish")
    assert "--init-word 'teddybearish' is 2 tokens" in one_line(err)


@pytest.mark.parametrize("field, value, message", [
    ("checkpoint_every", 0, "--checkpoint-every must be at least 1, got 0"),
    ("lora_rank", 0, "--rank must be at least 1, got 0"),
    ("frames", 0, "--frames must be at least 1, got 0"),
    ("size", 30, "--size must be a positive multiple of 8, got 30"),
    ("size", 0, "--size must be a positive multiple of 8, got 0"),
    ("anchors", 1, "--anchors must be at least 2, got 1"),
])
def test_bad_settings_name_their_flag(field, value, message):
    with pytest.raises(UserError) as err:
        TrainSettings(token="<teddy>", init_word="bear", **{field: value})
    assert one_line(err) == message


def test_zero_regularization_clips_is_refused_before_any_work(tmp_path, image_dir):
    from storyreel.training.train import train_character

    with pytest.raises(UserError) as err:
        train_character(image_dir, tmp_path / "teddy.safetensors", TrainSettings(
            token="<teddy>", init_word="bear", reg_index=tmp_path / "index", reg_clips=0), preset="tiny")
    assert one_line(err) == "--reg-clips must be at least 1, got 0"


def test_train_command_with_regularization_clips_writes_a_pack(tmp_path, image_dir, run_cli):
    import json

    from storyreel.index import BuildSettings, build
    from storyreel.synthetic import make_corpus

    make_corpus(tmp_path / "videos", num_videos=1, shots_per_video=2, shot_seconds=1.5, size=(64, 48))
    build(tmp_path / "videos", tmp_path / "index", BuildSettings(preset="tiny"))
    out = tmp_path / "teddy.safetensors"
    proc = run_cli("character", "train", image_dir, "--token", "<teddy>", "--init-word", "bear", "--out", out,
                   "--steps", "2", "--frames", "2", "--models", "tiny", "--json",
                   "--reg-index", tmp_path / "index", "--reg-clips", "5")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["steps"] == 2 and summary["regularization_clips"] == 2 and summary["images"] == 2
    assert "[character train] step=2/2 loss=" in proc.stderr  # progress lines: stderr is not a terminal
    assert "\r" not in proc.stderr and "\x1b" not in proc.stderr
    pack = load_pack(out)
    assert pack.settings["steps_done"] == 2 and pack.table.shape == (1000, 32)
    assert pack.settings["size"] == 64  # no --size: the tiny preset's training size
    assert (tmp_path / "teddy.safetensors.ckpt").is_file()
    assert sorted(p.name for p in (tmp_path / "index").glob("**/depth_cache/*.npy"))  # reg depth was cached


def test_autocast_training_keeps_fp32_weights(components, image_dir):
    # What a GPU runs (bf16 autocast, gradient checkpointing), on the CPU: the trained tensors stay fp32.
    trainer = CharacterTrainer(components, components.ids, TrainSettings(
        token="<teddy>", init_word="bear", steps=2, size=32, frames=2, learning_rate=5e-2, num_buckets=4,
        gradient_checkpointing=True), load_concept_images(image_dir), gray_depth, autocast_dtype=torch.bfloat16)
    table_before = trainer.table.rows.detach().clone()
    trainer.fit()
    assert trainer.device.type == "cpu" and len(trainer.losses) == 2 and np.isfinite(trainer.losses).all()
    assert trainer.table.rows.dtype == torch.float32 and not torch.equal(trainer.table.rows, table_before)
    assert all(p.dtype == torch.float32 and p.grad is not None for p in trainer.lora_params)
    assert components.unet.is_gradient_checkpointing


def test_training_shows_a_bar_with_eta_on_a_terminal(components, image_dir):
    from test_progress import ETA, Terminal

    from storyreel.core.progress import Progress

    stream = Terminal()
    make_trainer(components, image_dir, steps=3).fit(progress=Progress("character train", stream=stream))
    assert re.search(r"character train: 100%.*3/3.*loss=", stream.getvalue()) and ETA.search(stream.getvalue())


@pytest.mark.parametrize("tau", [0.25, 0.5])
def test_training_and_generation_run_the_depth_branch_at_the_same_timesteps(components, image_dir, tau):
    from storyreel.generation import GenerationSettings, StructureGuidedPipeline

    called = []  # the timestep of every ControlNet call
    forward = components.controlnet.forward

    def recording(sample, timestep, *args, **kwargs):
        called.append(int(torch.as_tensor(timestep).flatten()[0]))
        return forward(sample, timestep, *args, **kwargs)

    components.controlnet.forward = recording
    pipe = StructureGuidedPipeline.from_components(components)
    pipe.set_progress_bar_config(disable=True)
    settings = GenerationSettings(frames=2, height=32, width=32, steps=20, tau=tau)
    pipe("a bear", torch.full((2, 3, 32, 32), 0.5), settings)
    schedule = [int(t) for t in pipe.scheduler.timesteps]
    generated, called[:] = sorted(set(called)), []
    trainer = make_trainer(components, image_dir, tau=tau)
    trained = []
    with torch.no_grad():
        for timestep in schedule:
            calls = len(called)
            trainer.clip_loss(trainer.clips[0], timestep, torch.Generator().manual_seed(0))
            if len(called) > calls:
                trained.append(timestep)
    print(f"tau={tau}: generation {generated}, training {sorted(trained)} of {schedule}")
    assert sorted(trained) == generated
    assert generated == sorted(t for t in schedule if t >= (1 - tau) * 1000) and 0 < len(generated) < len(schedule)
