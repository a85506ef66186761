"""Train a character pack (TimeInv table + spatial LoRA; `--mode ti`: one token embedding only; mode "lora": the
LoRA only, the ablation of training/toyworld/characters.py) from images.

Recipe (Animate-A-Story, He et al. 2023): every concept image becomes an L-frame *static* pseudo-video
whose depth is computed once; training is ordinary noise-prediction with every base weight frozen,
guided by that static depth through the ControlNet with the same timestep clamp as generation
(structure for t = T…τ, none after). Each step samples one timestep uniformly. By default the
table's rows are tied to `anchors` learned anchors (rows interpolated between the two nearest), so
that timestep's gradient also reaches its neighbouring rows and every row inference reads is
trained (tokens.AnchoredTimeInvTable); with `anchors=None` only the sampled bucket's row receives
gradient (the paper's literal table). Optional regularization clips (real videos of the init word's
class, prompted without the token) keep the LoRA from drifting the class prior.

All randomness (augmentation, prompt template, timestep, noise) comes from one seeded
torch.Generator whose state is checkpointed, so a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from storyreel.core.errors import UserError
from storyreel.core.files import atomic_write, check_output_path
from storyreel.core.images import IMAGE_SUFFIXES, read_rgb
from storyreel.generation.characters.lora import (
    LORA_PROJECTIONS,
    adapter_name_for,
    add_spatial_lora,
    load_lora_state_dict,
    lora_parameters,
    lora_state_dict,
)
from storyreel.generation.characters.pack import CharacterPack, base_identity
from storyreel.generation.characters.tokens import (
    MODES,
    CharacterTokens,
    check_token,
    make_timeinv_table,
    single_token_id,
)
from storyreel.generation.pipeline import structure_applies

MAX_IMAGES = 50
CONCEPT_THUMBNAIL = 224  # side of the square thumbnails stored in the pack (CLIP-I in evaluation)
PROMPT_TEMPLATES = ("a photo of {}", "a video of {}", "a picture of {}", "a close-up photo of {}")

# (frames uint8 (F, H, W, 3)) -> ControlNet conditioning float (F, 3, H, W) in [0, 1]
DepthFn = Callable[[np.ndarray], torch.Tensor]


@dataclass
class TrainSettings:
    token: str
    init_word: str
    mode: str = "timeinv"
    steps: int = 1000
    learning_rate: float = 1e-4
    lora_rank: int = 4
    lora_targets: tuple[str, ...] = LORA_PROJECTIONS  # the spatial attention projections the LoRA adapts
    num_buckets: int | None = None  # None: one row per training timestep (timeinv); "ti" and "lora" use 1
    # TimeInv rows are interpolated from this many learned anchors while training (the pack still holds
    # every row); None, or ≥ the number of rows: every row is a free parameter. 50 puts ~20 timesteps
    # between anchors, so 1,000 uniform steps reach each row ≥ ~40 times (1 without anchors).
    anchors: int | None = 50
    frames: int = 8  # L, frames of each static pseudo-video
    size: int | None = None  # square training resolution in pixels; None: the preset's train_size
    tau: float = 1.0  # structure clamp, the rule generation uses (generation/pipeline.py structure_applies)
    structure_scale: float = 1.0
    checkpoint_every: int = 100
    seed: int = 0
    # recompute UNet activations in backward: far less memory, ~30% slower; None: on with CUDA (train_character)
    gradient_checkpointing: bool | None = False
    # Regularization: `reg_clips` real clips of the init word's class from the index at `reg_index` (None: none)
    reg_index: str | None = None
    reg_clips: int = 200
    recipe: str = "fast"  # the recipe (core/recipes/) whose training values these settings started from

    @classmethod
    def from_recipe(cls, recipe: str | None = None, **given) -> TrainSettings:
        """The recipe's training values (core/recipes.py; None: fast) under `given` (None values: not given)."""
        from storyreel.core.recipes import get_recipe

        chosen = get_recipe(recipe)
        unknown = set(chosen.training) - {f.name for f in fields(cls)}
        if unknown:
            raise UserError(f"recipe {chosen.name}: unknown training settings {', '.join(sorted(unknown))}")
        return cls(**{**chosen.training, **{k: v for k, v in given.items() if v is not None}}, recipe=chosen.name)

    def __post_init__(self):
        import math

        from storyreel.generation.characters.lora import spatial_lora_targets

        self.lora_targets = tuple(self.lora_targets)  # a list from JSON (a recipe, a pack) is the same setting
        spatial_lora_targets(self.lora_targets)  # one line naming the projections if they are not known ones

        if self.reg_index is not None:
            self.reg_index = str(self.reg_index)  # a path; a str so the settings stay JSON
            if not 1 <= self.reg_clips <= 100_000:
                raise UserError(f"--reg-clips must be {'at least 1' if self.reg_clips < 1 else 'at most 100000'}, "
                                f"got {self.reg_clips}")

        for flag, value, lowest, highest in (("--lr", self.learning_rate, 1e-12, 10.0),
                                             ("--tau", self.tau, 0.0, 1.0),
                                             ("structure_scale", self.structure_scale, 0.0, 100.0)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and lowest <= value <= highest):
                raise UserError(f"{flag} must be a finite number from {lowest:g} to {highest:g}, got {value}")
        for flag, value, highest in (("--steps", self.steps, 10_000_000), ("--rank", self.lora_rank, 1024),
                                     ("--frames", self.frames, 256), ("--size", self.size or 8, 4096),
                                     ("--anchors", self.anchors or 2, 100_000), ("--seed", self.seed, 2**32 - 1),
                                     ("--buckets", self.num_buckets or 1, 100_000)):
            if value > highest:
                raise UserError(f"{flag} must be at most {highest}, got {value}")
        if self.seed < 0:
            raise UserError(f"--seed must be at least 0, got {self.seed}")
        if self.mode not in MODES:
            raise UserError(f"--mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.steps < 1:
            raise UserError(f"--steps must be at least 1, got {self.steps}")
        if not 0.0 <= self.tau <= 1.0:
            raise UserError(f"--tau must be between 0 and 1, got {self.tau}")
        for flag, value in (("--rank", self.lora_rank), ("--frames", self.frames),
                            ("--checkpoint-every", self.checkpoint_every)):
            if value < 1:
                raise UserError(f"{flag} must be at least 1, got {value}")
        if self.anchors is not None and self.anchors < 2:
            raise UserError(f"--anchors must be at least 2, got {self.anchors}")
        if self.size is not None and (self.size < 8 or self.size % 8):  # the VAE halves the size three times
            raise UserError(f"--size must be a positive multiple of 8, got {self.size}")


@dataclass
class ConceptImage:
    path: str
    pixels: np.ndarray  # uint8 (H, W, 3), EXIF-rotated
    sha256: str


@dataclass
class TrainingClip:
    """One training video: static (1 frame, repeated to L) or real (L frames), with its depth."""

    pixels: torch.Tensor  # (n, 3, S, S) uint8 (compact: ~200 regularization clips stay in memory)
    depth: torch.Tensor  # (n, 1, S, S) float in [0, 1] (the ControlNet sees it as 3 equal channels)
    subject: str  # what the prompt calls it: the token, or the init word for regularization clips


@dataclass
class StepResult:
    step: int
    loss: float
    timesteps: list[int] = field(default_factory=list)


def load_concept_images(folder: str | os.PathLike) -> list[ConceptImage]:
    """1–50 images (storyreel.core.images.IMAGE_SUFFIXES) from `folder`, EXIF-rotated to upright RGB."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"images folder {folder} does not exist")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise UserError(f"images folder {folder} has no images ({', '.join(IMAGE_SUFFIXES)}); "
                        "add 3-10 photos of the character")
    if len(paths) > MAX_IMAGES:
        raise UserError(f"images folder {folder} has {len(paths)} images; use at most {MAX_IMAGES}")
    images = []
    for path in paths:
        pixels = read_rgb(path, what="image")
        images.append(ConceptImage(str(path), pixels, hashlib.sha256(path.read_bytes()).hexdigest()))
    return images


def center_square(pixels: np.ndarray, size: int) -> np.ndarray:
    """Largest centered square, resized to size×size (uint8)."""
    from PIL import Image

    h, w = pixels.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = Image.fromarray(pixels[top : top + side, left : left + side])
    return np.array(square.resize((size, size), Image.BICUBIC))  # writable: torch.from_numpy-safe


def static_clips(images: list[ConceptImage], size: int, depth_fn: DepthFn, token: str) -> list[TrainingClip]:
    """One static clip per image; depth of a static video is one frame's depth, so it runs once per image."""
    clips = []
    for image in images:
        square = center_square(image.pixels, size)
        pixels = torch.from_numpy(square).permute(2, 0, 1)[None]
        clips.append(TrainingClip(pixels, depth_fn(square[None])[:, :1].float(), token))
    return clips


def augment(clip: TrainingClip, generator: torch.Generator) -> TrainingClip:
    """Light, identical augmentation of pixels and depth: horizontal flip, up to 10% zoom with shift.

    Returns pixels as float in [-1, 1].
    """
    stacked = torch.cat([clip.pixels.float() / 127.5 - 1.0, clip.depth], dim=1)
    if torch.rand((), generator=generator) < 0.5:
        stacked = stacked.flip(-1)
    size = stacked.shape[-1]
    zoomed = int(round(size * (1.0 + 0.1 * torch.rand((), generator=generator).item())))
    if zoomed > size:
        stacked = F.interpolate(stacked, size=(zoomed, zoomed), mode="bilinear", align_corners=False)
        top, left = (torch.randint(0, zoomed - size + 1, (2,), generator=generator)).tolist()
        stacked = stacked[..., top : top + size, left : left + size]
    return TrainingClip(stacked[:, :3], stacked[:, 3:], clip.subject)


def regularization_clips(index_dir, init_word: str, count: int, size: int, frames: int,
                         preset: str) -> list[TrainingClip]:
    """Real clips of the init word's class from an index (the paper used ~200), with their depth.

    Depth goes through `depth.conditioning_for_source`, so it lands in the index's depth cache and a
    second training run on the same index does not recompute it.
    """
    from storyreel import depth
    from storyreel.index import open_index
    from storyreel.retrieval import search

    index = open_index(index_dir)
    hits = search(index, text=f"a video of a {init_word}", k=count, preset=preset)
    if not hits:
        raise UserError(f"--reg-index {index_dir} returned no clips for {init_word!r}; index videos of that class")
    model = depth.create_depth_model(depth.model_for_preset(preset))
    clips = []
    for hit in hits:
        conditioning, info = depth.conditioning_for_source(
            hit.clip.clip_id, model=model, size=(size, size), num_frames=frames, index_dir=index)
        unique, inverse = np.unique(info["frame_indices"], return_inverse=True)
        video = index.read_frames(hit.clip.clip_id, unique.tolist())[inverse]
        pixels = torch.from_numpy(np.stack([center_square(f, size) for f in video])).permute(0, 3, 1, 2)
        clips.append(TrainingClip(pixels, conditioning[:, :1].float(), init_word))
    return clips


class CharacterTrainer:
    """Learns one character's TimeInv table and spatial LoRA (mode "ti": one embedding, no LoRA; mode "lora": the
    LoRA alone, the token fixed at the init word's embedding); the rest is frozen.

    `components` has `unet` (UNetMotionModel), `controlnet`, `vae`, `text_encoder`, `tokenizer` and
    `scheduler`; `base_model` holds the component ids recorded in the pack.
    """

    def __init__(
        self,
        components,
        base_model: dict[str, str],
        settings: TrainSettings,
        images: list[ConceptImage],
        depth_fn: DepthFn,
        regularization: list[TrainingClip] | None = None,
        autocast_dtype: torch.dtype = torch.float32,
    ):
        if settings.size is None:
            raise ValueError("settings.size is None: resolve it from the preset first (train_character does)")
        self.c = components
        # Where the components are (train_character moves them to --device); the weights stay fp32 and
        # the forward pass autocasts to `autocast_dtype` (bf16, or fp16 with loss scaling; fp32: off).
        self.device = next(components.unet.parameters()).device
        self.autocast_dtype = autocast_dtype
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=autocast_dtype == torch.float16)
        self.base_model = {role: base_identity(model) for role, model in base_model.items()}
        self.settings = settings
        self.images = images
        self.regularization = list(regularization or [])
        self.num_train_timesteps = int(components.scheduler.config.num_train_timesteps)
        for model in (components.unet, components.controlnet, components.vae, components.text_encoder):
            model.requires_grad_(False)

        init_id = single_token_id(components.tokenizer, settings.init_word)
        init_embedding = components.text_encoder.get_input_embeddings().weight[init_id]
        buckets = 1 if settings.mode in ("ti", "lora") else (settings.num_buckets or self.num_train_timesteps)
        self.table = make_timeinv_table(init_embedding, buckets, self.num_train_timesteps, settings.anchors)
        # the learned tensor: the anchors of an anchored table, else the rows themselves
        self.table_param = getattr(self.table, "anchors", None)
        if self.table_param is None:
            self.table_param = self.table.rows
        self.tokens = CharacterTokens(components.tokenizer, components.text_encoder)
        self.tokens.add(settings.token, self.table)

        self.adapter, self.lora_params = None, []
        if settings.mode != "ti":  # classic textual inversion learns the embedding alone: no adapter at all
            torch.manual_seed(settings.seed)  # LoRA init
            self.adapter = adapter_name_for(settings.token)
            add_spatial_lora(components.unet, self.adapter, settings.lora_rank, projections=settings.lora_targets)
            components.unet.set_adapters([self.adapter], [1.0])
            self.lora_params = lora_parameters(components.unet, self.adapter)
            for p in self.lora_params:
                p.requires_grad_(True)
        # mode "lora": the token keeps the init word's embedding (the LoRA-alone ablation)
        self.table_param.requires_grad_(settings.mode != "lora")
        groups = ([{"params": [self.table_param]}] if settings.mode != "lora" else []) + (
            [{"params": self.lora_params}] if self.lora_params else [])
        self.optimizer = torch.optim.AdamW(groups, lr=settings.learning_rate, weight_decay=0.0)
        if settings.gradient_checkpointing:
            components.unet.enable_gradient_checkpointing()
        self.generator = torch.Generator().manual_seed(settings.seed)
        self.clips = static_clips(images, settings.size, depth_fn, settings.token)
        self.step_count = 0
        self.losses: list[float] = []

    # -- one optimization step -------------------------------------------------------------------

    def step(self) -> StepResult:
        """One step: a random concept clip (plus one regularization clip, if any), each at its own timestep."""
        self.optimizer.zero_grad(set_to_none=True)
        batch = [self.clips[int(torch.randint(0, len(self.clips), (1,), generator=self.generator))]]
        if self.regularization:
            batch.append(self.regularization[self.step_count % len(self.regularization)])
        total, timesteps = 0.0, []
        for clip in batch:
            timestep = self.sample_timestep()
            with torch.autocast(self.device.type, dtype=self.autocast_dtype,
                                enabled=self.autocast_dtype != torch.float32):
                loss = self.clip_loss(augment(clip, self.generator), timestep, self.generator) / len(batch)
            self.scaler.scale(loss).backward()  # per clip, so only one clip's graph is alive at a time
            total += loss.item()
            timesteps.append(timestep)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.step_count += 1
        self.losses.append(total)
        return StepResult(self.step_count, total, timesteps)

    def sample_timestep(self) -> int:
        """The training timestep: uniform over [0, T). Coverage of the rows inference reads comes from the
        anchored table sharing each step's gradient, not from reweighting t (which would tie a pack to
        one inference step count: DDIM-25's timesteps are not DDIM-50's)."""
        return int(torch.randint(0, self.num_train_timesteps, (1,), generator=self.generator))

    def rows_updated(self) -> torch.Tensor:
        """Bool (B,): table rows the last step's gradient reached (an anchor they depend on, or the row itself)."""
        grad = self.table_param.grad
        if grad is None:
            return torch.zeros(self.table.num_buckets, dtype=torch.bool)
        if hasattr(self.table, "rows_reached"):
            return self.table.rows_reached(grad)
        return grad.abs().sum(1) > 0

    def clip_loss(self, clip: TrainingClip, timestep: int, generator: torch.Generator) -> torch.Tensor:
        """Noise-prediction loss of one clip at one timestep (depth-guided inside the clamp).

        `generator` draws the latent sample, the noise and the prompt template. Pixels may be the
        stored uint8 or augment()'s float in [-1, 1].
        """
        c, frames = self.c, self.settings.frames
        pixels = clip.pixels.float() / 127.5 - 1.0 if clip.pixels.dtype == torch.uint8 else clip.pixels
        pixels = pixels.to(self.device)
        with torch.no_grad():
            latents = c.vae.encode(pixels).latent_dist.sample(generator) * c.vae.config.scaling_factor
        latents = latents.expand(frames, -1, -1, -1) if latents.shape[0] == 1 else latents  # (F, C, h, w)
        depth = clip.depth.to(self.device).expand(frames, 3, -1, -1)
        # drawn on the CPU, so a seed gives the same noise on every device
        noise = torch.randn(latents.shape, generator=generator).to(self.device)
        t = torch.tensor([timestep], device=self.device)
        noisy = c.scheduler.add_noise(latents, noise, t)
        template = PROMPT_TEMPLATES[int(torch.randint(0, len(PROMPT_TEMPLATES), (1,), generator=generator))]
        embeds = self.tokens.encode([template.format(clip.subject)], timestep).expand(frames, -1, -1)

        residuals = {}
        if structure_applies(timestep, self.settings.tau, self.num_train_timesteps):
            down, mid = c.controlnet(
                noisy, t, encoder_hidden_states=embeds, controlnet_cond=depth,
                conditioning_scale=self.settings.structure_scale, return_dict=False,
            )
            residuals = {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
        video = noisy.permute(1, 0, 2, 3)[None]  # (1, C, F, h, w), the UNetMotionModel layout
        prediction = c.unet(video, t, encoder_hidden_states=embeds, **residuals).sample[0].permute(1, 0, 2, 3)
        if c.scheduler.config.prediction_type == "v_prediction":
            target = c.scheduler.get_velocity(latents, noise, t)
        else:
            target = noise
        return F.mse_loss(prediction.float(), target.float())

    # -- run, checkpoint, pack -------------------------------------------------------------------

    def fit(self, checkpoint_path: str | os.PathLike | None = None, progress=None) -> None:
        """Train to `settings.steps`, checkpointing every `checkpoint_every` steps."""
        start, first = time.monotonic(), self.step_count
        while self.step_count < self.settings.steps:
            result = self.step()
            if progress is not None:
                rate = (self.step_count - first) / max(time.monotonic() - start, 1e-9)
                progress.update(step=result.step, of=self.settings.steps, loss=result.loss, steps_per_s=rate)
            if checkpoint_path and self.step_count % self.settings.checkpoint_every == 0:
                self.save_checkpoint(checkpoint_path)
        if progress is not None:
            progress.done(step=self.step_count, of=self.settings.steps,
                          loss=self.losses[-1] if self.losses else float("nan"))

    def pack(self) -> CharacterPack:
        thumbnails = torch.from_numpy(np.stack([center_square(i.pixels, CONCEPT_THUMBNAIL) for i in self.images]))
        return CharacterPack(
            token=self.settings.token,
            init_word=self.settings.init_word,
            mode=self.settings.mode,
            table=self.table.rows.detach().cpu().clone(),
            num_train_timesteps=self.num_train_timesteps,
            lora=self._lora_state(),
            lora_rank=self.settings.lora_rank if self.adapter else 0,
            lora_alpha=float(self.settings.lora_rank) if self.adapter else 0.0,
            base_model=self.base_model,
            # the index's local path stays out of a file meant to be shared
            settings={**asdict(self.settings), "reg_index": None, "steps_done": self.step_count,
                      "timeinv_training": self._timeinv_training()},
            image_hashes=[i.sha256 for i in self.images],
            concept_images=thumbnails,
        )

    def save_checkpoint(self, path: str | os.PathLike) -> None:
        """Everything needed to continue bit-exactly: weights, optimizer moments, RNG state, losses."""
        state = {
            "step": self.step_count,
            "table": self.table_param.detach().cpu().clone(),
            "lora": self._lora_state(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "losses": list(self.losses),
            "identity": self._identity(),
        }
        atomic_write(path, lambda tmp: torch.save(state, tmp))

    def load_checkpoint(self, path: str | os.PathLike, state: dict | None = None) -> None:
        """Continue from the checkpoint at `path` (`state`: it, already read by `read_checkpoint`)."""
        path = Path(path)
        state = state if state is not None else read_checkpoint(path)
        if state["identity"] != self._identity():
            raise UserError(
                f"--resume: checkpoint {path} is for other training inputs (token, mode, images, base model, "
                f"size or TimeInv anchors differ); delete it or run without --resume"
            )
        try:
            if tuple(state["table"].shape) != tuple(self.table_param.shape):
                raise ValueError(f"table shape {tuple(state['table'].shape)}")
            with torch.no_grad():
                self.table_param.copy_(state["table"])
            if self.adapter:
                load_lora_state_dict(self.c.unet, self.adapter, state["lora"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.generator.set_state(state["generator"])
        except (RuntimeError, ValueError, TypeError, KeyError, UserError) as err:
            raise UserError(f"--resume: checkpoint {path} does not fit this training ({str(err)[:120]}); "
                            "delete it or run without --resume") from None
        self.step_count = state["step"]
        self.losses = list(state["losses"])

    def _lora_state(self) -> dict[str, torch.Tensor]:
        return {k: v.cpu() for k, v in lora_state_dict(self.c.unet, self.adapter).items()} if self.adapter else {}

    def _timeinv_training(self) -> str:
        """How the table was trained, for the pack's settings metadata."""
        anchors = getattr(self.table, "anchors", None)
        if anchors is None:
            return "free rows (one per bucket), timestep sampled uniformly"
        return (f"rows interpolated from {anchors.shape[0]} evenly spaced learned anchors, "
                "timestep sampled uniformly")

    def _identity(self) -> dict:
        s = self.settings
        return {
            "token": s.token, "init_word": s.init_word, "mode": s.mode, "buckets": self.table.num_buckets,
            "table_param": list(self.table_param.shape),  # anchors vs free rows: checkpoints don't mix
            "rank": s.lora_rank, "size": s.size, "frames": s.frames, "seed": s.seed,
            "images": [i.sha256 for i in self.images], "base_model": self.base_model,
        }


# ---------------------------------------------------------------------------------------------------
# `storyreel character train` (the coordinator registers it in cli/character.py)
# ---------------------------------------------------------------------------------------------------


def depth_conditioning_fn(preset, device=None) -> DepthFn:
    """Static-image depth with the preset's depth model, normalized as generation's conditioning."""
    from storyreel import depth

    model = depth.create_depth_model(depth.model_for_preset(preset), device=device)

    def conditioning(frames: np.ndarray) -> torch.Tensor:
        return depth.to_conditioning(depth.stabilize(model.predict(frames)), frames.shape[1:3], len(frames))

    return conditioning


def checkpoint_path_for(out: str | os.PathLike) -> Path:
    return Path(f"{out}.ckpt")


CHECKPOINT_KEYS = {"step": int, "table": torch.Tensor, "lora": dict, "optimizer": dict,
                   "generator": torch.Tensor, "losses": list, "identity": dict}


def read_checkpoint(path: str | os.PathLike) -> dict:
    """A training checkpoint (`CharacterTrainer.save_checkpoint`), checked: one-line UserErrors for a
    missing, truncated or tampered file (tensors only: `weights_only`, never arbitrary pickles)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--resume: no checkpoint at {path}; run without --resume to start fresh")
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as err:  # noqa: BLE001 - truncated zip, pickle with code, ...: all mean "unreadable"
        reason = " ".join(str(err).split())[:120] or type(err).__name__
        raise UserError(f"--resume: checkpoint {path} is unreadable ({reason}); delete it or run without "
                        "--resume") from None
    problem = None
    if not isinstance(state, dict):
        problem = "not a dict"
    else:
        for key, kind in CHECKPOINT_KEYS.items():
            if not isinstance(state.get(key), kind) or isinstance(state.get(key), bool):
                problem = f"field {key!r} missing or not a {kind.__name__}"
                break
        else:
            if not state["table"].is_floating_point() or not torch.isfinite(state["table"]).all():
                problem = "the table is not finite floats"
            elif not all(isinstance(v, torch.Tensor) and torch.isfinite(v).all() for v in state["lora"].values()):
                problem = "the LoRA weights are not finite tensors"
            elif state["step"] < 0:
                problem = f"step {state['step']}"
    if problem:
        raise UserError(f"--resume: checkpoint {path} is damaged ({problem}); delete it or run without --resume")
    return state




def train_character(images_dir, out, settings: TrainSettings, *, preset, resume: bool = False, progress=None,
                    device=None, dtype=None) -> dict:
    """Train a character pack from `images_dir` into `out` (.safetensors); returns a summary dict.
    Regularization clips come from `settings.reg_index` when set.

    A resumable checkpoint is kept at `OUT.ckpt` (every `settings.checkpoint_every` steps and at the end).
    `device`: where the models train (default CUDA when present); `dtype`: the autocast dtype (default
    bf16, else fp16, on CUDA; fp32 on the CPU). `settings.gradient_checkpointing` None: on with CUDA.
    progress: a `Progress` (core/progress.py) told each step; None reports nothing.
    """
    from storyreel.core.devices import pick_device, pick_dtype
    from storyreel.core.models import get_preset
    from storyreel.generation.characters.pack import save_pack
    from storyreel.generation.components import create_components

    device = pick_device(device) if device is None or isinstance(device, str) else device
    dtype = dtype or pick_dtype(None, device, training=True)
    if settings.size is None:
        settings = replace(settings, size=get_preset(preset).generator.train_size)
    if settings.gradient_checkpointing is None:
        settings = replace(settings, gradient_checkpointing=device.type == "cuda")
    out = Path(out)
    check_output_path(out, "--out")
    check_output_path(checkpoint_path_for(out), "--out (its checkpoint)")
    check_token(settings.token, "--token")
    images = load_concept_images(images_dir)  # fail on bad images before loading any model
    resume_state = read_checkpoint(checkpoint_path_for(out)) if resume else None
    regularization = (regularization_clips(settings.reg_index, settings.init_word, settings.reg_clips, settings.size,
                                           settings.frames, preset) if settings.reg_index else None)
    components = create_components(preset)
    for model in (components.unet, components.controlnet, components.vae, components.text_encoder):
        model.to(device)
    trainer = CharacterTrainer(components, components.ids, settings, images, depth_conditioning_fn(preset, device),
                               regularization, autocast_dtype=dtype)
    checkpoint = checkpoint_path_for(out)
    if resume:
        trainer.load_checkpoint(checkpoint, resume_state)
    trainer.fit(checkpoint, progress)
    trainer.save_checkpoint(checkpoint)
    save_pack(trainer.pack(), out)
    return {"pack": str(out), "token": settings.token, "mode": settings.mode, "steps": trainer.step_count,
            "final_loss": trainer.losses[-1] if trainer.losses else None, "images": len(images),
            "buckets": trainer.table.num_buckets, "regularization_clips": len(trainer.regularization),
            "checkpoint": str(checkpoint)}
