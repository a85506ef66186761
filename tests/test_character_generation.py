"""Character packs inside the structure-guided pipeline (tiny preset)."""

import copy

import numpy as np
import pytest
import torch

from storyreel.core.errors import UserError
from storyreel.generation import GenerationSettings, Steering, StructureGuidedPipeline
from storyreel.generation.characters import (
    CharacterConditioning,
    CharacterPack,
    adapter_name_for,
    add_spatial_lora,
    load_characters,
    save_pack,
)
from storyreel.generation.characters.lora import load_lora_state_dict, lora_state_dict
from storyreel.generation.characters.pack import load_pack
from storyreel.generation.characters.tokens import CharacterTokens, TimeInvTable
from storyreel.generation.components import create_components
from storyreel.training.train import CharacterTrainer, ConceptImage, TrainSettings

STEPS = 3


@pytest.fixture(scope="module")
def tiny():
    return create_components("tiny")


def make_pack(components, token: str, init_word: str, seed: int, buckets: int = 1000) -> CharacterPack:
    """A pack with a distinct row per bucket and non-zero LoRA, in the exact layout training writes."""
    generator = torch.Generator().manual_seed(seed)
    scratch = copy.deepcopy(components.unet)
    add_spatial_lora(scratch, "scratch", rank=4)
    lora = {k: torch.randn(v.shape, generator=generator) * 0.5 for k, v in lora_state_dict(scratch, "scratch").items()}
    dim = components.text_encoder.config.hidden_size
    return CharacterPack(token, init_word, "timeinv", torch.randn(buckets, dim, generator=generator), 1000, lora,
                         4, 4.0, dict(components.ids), {"steps": 1}, ["0" * 64],
                         torch.zeros(1, 224, 224, 3, dtype=torch.uint8))


@pytest.fixture
def packs(tiny, tmp_path):
    paths = []
    for token, word, seed in (("<teddy>", "bear", 1), ("<kitty>", "cat", 2)):
        path = tmp_path / f"{word}.safetensors"
        save_pack(make_pack(tiny, token, word, seed), path)
        paths.append(path)
    return paths


def character_conditioning(components, pack_paths, prompt, lora_scale=1.0):
    """Load the packs into `components` and return the pipeline's text hook for `prompt`."""
    tokens = load_characters(components, pack_paths, lora_scale)
    return CharacterConditioning(tokens, prompt, "", components.unet)


def generate(components, prompt, conditioning=None):
    pipe = StructureGuidedPipeline.from_components(components)
    pipe.set_progress_bar_config(disable=True)
    depth = torch.linspace(0, 1, 32).repeat(2, 3, 32, 1)  # (F, 3, H, W), a left-to-right ramp
    settings = GenerationSettings(frames=2, height=32, width=32, steps=STEPS, seed=0)
    return pipe(prompt, depth, settings, steering=Steering(text=conditioning)).frames


def test_pack_changes_generation_and_scale_zero_without_token_is_exactly_plain(tiny, packs):
    plain_token = generate(copy.deepcopy(tiny), "<teddy> on a beach")
    plain_bear = generate(copy.deepcopy(tiny), "a bear on a beach")

    with_pack = copy.deepcopy(tiny)
    conditioning = character_conditioning(with_pack, packs[:1], "<teddy> on a beach")
    assert not np.array_equal(generate(with_pack, "<teddy> on a beach", conditioning), plain_token)

    scale_zero = copy.deepcopy(tiny)
    conditioning = character_conditioning(scale_zero, packs[:1], "a bear on a beach", lora_scale=0.0)
    assert np.array_equal(generate(scale_zero, "a bear on a beach", conditioning), plain_bear)

    lora_only = copy.deepcopy(tiny)  # token unused but LoRA at full scale: the UNet itself differs
    conditioning = character_conditioning(lora_only, packs[:1], "a bear on a beach", lora_scale=1.0)
    assert not np.array_equal(generate(lora_only, "a bear on a beach", conditioning), plain_bear)


def test_text_encoder_sees_the_table_row_of_each_steps_bucket(tiny, packs):
    components = copy.deepcopy(tiny)
    tokens = load_characters(components, packs)
    teddy_id, kitty_id = tokens.tokens["<teddy>"], tokens.tokens["<kitty>"]
    prompt = "<teddy> meets <kitty>"
    positions = components.tokenizer(prompt).input_ids
    seen = []  # (token embedding at <teddy>, at <kitty>) of every text-encoder call, positive prompt row
    hook = components.text_encoder.get_input_embeddings().register_forward_hook(
        lambda module, inputs, output: seen.append(
            (output[1, positions.index(teddy_id)].clone(), output[1, positions.index(kitty_id)].clone())))
    try:
        generate(components, prompt, CharacterConditioning(tokens, prompt, "", components.unet))
    finally:
        hook.remove()
    components.scheduler.set_timesteps(STEPS)
    timesteps = components.scheduler.timesteps.tolist()
    assert len(set(timesteps)) == STEPS and len(seen) == STEPS  # one encode per distinct bucket
    teddy_table, kitty_table = tokens.tables[teddy_id], tokens.tables[kitty_id]
    for (teddy_row, kitty_row), t in zip(seen, timesteps):
        assert torch.equal(teddy_row, teddy_table.rows[t]) and torch.equal(kitty_row, kitty_table.rows[t])
    assert not torch.equal(teddy_table.rows, kitty_table.rows)


def test_buckets_share_rows_and_cache_the_encoding(tiny, tmp_path):
    components = copy.deepcopy(tiny)
    save_pack(make_pack(tiny, "<teddy>", "bear", 1, buckets=2), tmp_path / "two.safetensors")
    conditioning = character_conditioning(components, [tmp_path / "two.safetensors"], "a <teddy>")
    assert conditioning(0, 999) is conditioning(1, 600)  # both in bucket 1: encoded once
    assert not torch.equal(conditioning(0, 999), conditioning(2, 100))


def test_two_packs_load_as_two_adapters_with_their_own_tables(tiny, packs):
    components = copy.deepcopy(tiny)
    tokens = load_characters(components, packs, lora_scale=0.7)
    assert set(tokens.tokens) == {"<teddy>", "<kitty>"}
    names = {adapter_name_for("<teddy>"), adapter_name_for("<kitty>")}
    layer = components.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn2.to_k
    assert set(layer.active_adapters) == names
    assert all(layer.scaling[name] == pytest.approx(0.7) for name in names)


def test_refusals_name_the_problem(tiny, packs, tmp_path):
    foreign = make_pack(tiny, "<teddy>", "bear", 1)
    foreign.base_model = {**foreign.base_model, "base": "runwayml/some-other-sd"}
    save_pack(foreign, tmp_path / "foreign.safetensors")
    with pytest.raises(UserError, match=r"foreign.safetensors was trained for base 'runwayml/some-other-sd' but this "
                                        r"generator uses 'storyreel/tiny-sd15\(seed=0\)'"):
        load_characters(copy.deepcopy(tiny), [tmp_path / "foreign.safetensors"])
    with pytest.raises(UserError, match="already taken by another --character pack"):
        load_characters(copy.deepcopy(tiny), [packs[0], packs[0]])
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(UserError, match="is not a character pack"):
        load_characters(copy.deepcopy(tiny), [tmp_path / "junk.safetensors"])


def todays_loading(components, path):
    """A pack loaded by hand, step by step (its table rows, its LoRA): what the library's loader must match."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    rows = tensors["timeinv.table"]
    table = TimeInvTable(rows[0], rows.shape[0], int(meta["num_train_timesteps"]))
    with torch.no_grad():
        table.rows.copy_(rows)
    tokens = CharacterTokens(components.tokenizer, components.text_encoder)
    tokens.add(meta["token"], table)
    name = adapter_name_for(meta["token"])
    add_spatial_lora(components.unet, name, int(meta["lora_rank"]), float(meta["lora_alpha"]))
    load_lora_state_dict(components.unet, name, {k[5:]: v for k, v in tensors.items() if k.startswith("lora.")})
    components.unet.set_adapters([name], [1.0])
    return tokens


@pytest.mark.parametrize("mode, buckets", [("timeinv", 1000), ("timeinv", 7), ("ti", 1)])
def test_a_pack_written_by_todays_code_loads_and_generates_identical_frames(tiny, tmp_path, mode, buckets):
    pack = make_pack(tiny, "<teddy>", "bear", 3, buckets)  # a ti pack that carries LoRA keeps it
    pack.mode = mode
    save_pack(pack, tmp_path / "old.safetensors")
    prompt = "<teddy> on a beach"

    reference = copy.deepcopy(tiny)
    tokens = todays_loading(reference, tmp_path / "old.safetensors")
    expected = generate(reference, prompt, CharacterConditioning(tokens, prompt, "", reference.unet))

    components = copy.deepcopy(tiny)
    frames = generate(components, prompt, character_conditioning(components, [tmp_path / "old.safetensors"], prompt))
    assert np.array_equal(frames, expected)
    assert not np.array_equal(frames, generate(copy.deepcopy(tiny), prompt))


def train_ti_pack(tiny, path, steps=3):
    rng = np.random.RandomState(0)
    images = [ConceptImage(f"img{i}", (rng.rand(40, 40, 3) * 255).astype(np.uint8), f"{i}") for i in range(2)]
    settings = TrainSettings(token="<teddy>", init_word="bear", mode="ti", steps=steps, size=32, frames=2,
                             learning_rate=5e-2)
    trainer = CharacterTrainer(copy.deepcopy(tiny), tiny.ids, settings, images,
                               lambda f: torch.full((len(f), 3, *f.shape[1:3]), 0.5))
    trainer.fit()
    save_pack(trainer.pack(), path)


def test_a_ti_pack_changes_only_the_token(tiny, tmp_path):
    train_ti_pack(tiny, tmp_path / "ti.safetensors")
    pack = load_pack(tmp_path / "ti.safetensors")
    assert pack.mode == "ti" and pack.lora == {} and pack.table.shape[0] == 1

    components = copy.deepcopy(tiny)
    unet_before = {k: v.clone() for k, v in components.unet.state_dict().items()}
    character_conditioning(components, [tmp_path / "ti.safetensors"], "")
    unet_after = components.unet.state_dict()
    assert unet_after.keys() == unet_before.keys() and all(torch.equal(unet_before[k], unet_after[k])
                                                           for k in unet_before)  # no adapter was added
    assert not any("lora_" in n for n, _ in components.unet.named_parameters())

    with_pack = copy.deepcopy(tiny)
    conditioning = character_conditioning(with_pack, [tmp_path / "ti.safetensors"], "a bear on a beach")
    assert np.array_equal(generate(with_pack, "a bear on a beach", conditioning),
                          generate(copy.deepcopy(tiny), "a bear on a beach"))  # exactly the plain pipeline

    with_token = copy.deepcopy(tiny)
    conditioning = character_conditioning(with_token, [tmp_path / "ti.safetensors"], "a <teddy> on a beach")
    token_frames = generate(with_token, "a <teddy> on a beach", conditioning)
    assert not np.array_equal(token_frames, generate(copy.deepcopy(tiny), "a bear on a beach"))
    assert not np.array_equal(token_frames, generate(copy.deepcopy(tiny), "a <teddy> on a beach"))


@pytest.mark.parametrize("with_lora_pack", [False, True])
def test_clip_generator_takes_a_ti_pack(tiny, tmp_path, packs, with_lora_pack):
    from storyreel.core.writers import write_video
    from storyreel.generation.generate import ClipGenerator, ClipRequest

    train_ti_pack(tiny, tmp_path / "ti.safetensors")  # token <teddy>; packs[1] is <kitty> with LoRA
    depth = np.repeat(np.linspace(0, 255, 32).astype(np.uint8)[None, None, :, None], 32, axis=1)
    write_video(np.repeat(np.repeat(depth, 3, axis=-1), 2, axis=0), tmp_path / "depth.mp4", metadata={"kind": "depth"})
    characters = [tmp_path / "ti.safetensors"] + ([packs[1]] if with_lora_pack else [])
    generator = ClipGenerator("tiny", device="cpu", characters=characters)
    settings = GenerationSettings.for_preset("tiny", frames=2, height=32, width=32, steps=1)
    for present in (None, ["<teddy>"]):
        request = ClipRequest("<teddy> and <kitty>", tmp_path / "depth.mp4", present=present)
        clip = generator.generate(request, tmp_path / "out.gif", settings)
        assert clip.sidecar["characters"][0]["token"] == "<teddy>"
    unet = generator.pipeline("animatediff")[0].unet
    adapters = {n.split(".lora_")[1].split(".")[1] for n, _ in unet.named_parameters() if ".lora_" in n}
    assert adapters == ({adapter_name_for("<kitty>")} if with_lora_pack else set())
