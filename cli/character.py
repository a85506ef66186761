"""`storyreel character train` and `storyreel character export` (see cli/__init__.py and docs/CLI.md).

Argument parsing and printing only: the work is done by storyreel.training and
storyreel.generation.characters; heavy imports happen inside the `_run_*` functions.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from storyreel.cli.common import add_command
from storyreel.cli.generate import add_recipe_flag


def add_commands(commands) -> None:
    """Register the `character` command group on the top-level parser's subparsers."""
    _add_character(commands)


# -- character train ---------------------------------------------------------------------------------


def _add_character(commands) -> None:
    character = commands.add_parser("character", help="personalized character packs (TimeInv + LoRA)")
    sub = character.add_subparsers(dest="character_command", required=True, metavar="COMMAND")
    parser = add_command(sub, "train", _run_character_train, "train a character pack from a folder of images",
                         components=("depth", "generator"))
    parser.add_argument("images_dir", help="folder with 1-50 photos of the character (jpg, png, webp, bmp, tif)")
    parser.add_argument("--token", required=True, help='the new token, e.g. "<teddy>"; must not be a known word')
    parser.add_argument("--init-word", required=True, help="one-token word of the character's class, e.g. bear")
    parser.add_argument("--out", required=True, help="character pack to write (.safetensors)")
    parser.add_argument("--mode", choices=("timeinv", "ti"), default="timeinv",
                        help="timeinv: one embedding per timestep bucket (default); ti: classic textual inversion")
    add_recipe_flag(parser, "training")
    parser.add_argument("--steps", type=int, help="training steps (default 1000, the paper's)")
    parser.add_argument("--lr", type=float, help="learning rate of table and LoRA (default 1e-4, the paper's)")
    parser.add_argument("--rank", type=int, help="LoRA rank (default 4)")
    parser.add_argument("--buckets", type=int, default=None,
                        help="TimeInv rows (timestep buckets); default one per training timestep")
    parser.add_argument("--anchors", type=int,
                        help="learned anchors the TimeInv rows are interpolated from while training (default 50; "
                             "the animate-a-story recipe learns every row on its own)")
    parser.add_argument("--frames", type=int, help="frames of each static pseudo-video (default 8)")
    parser.add_argument("--size", type=int, default=None,
                        help="training resolution, a multiple of 8 (default: the preset's, 256; tiny: 64)")
    parser.add_argument("--tau", type=float, help="depth clamp used in training, the rule generate uses (default 1)")
    parser.add_argument("--checkpoint-every", type=int, default=100, help="save a resumable checkpoint every N steps")
    parser.add_argument("--resume", action="store_true", help="continue from OUT.ckpt")
    parser.add_argument("--reg-index", default=None, metavar="INDEX_DIR",
                        help="mix in real clips of the init word's class retrieved from this index")
    parser.add_argument("--reg-clips", type=int, help="how many clips --reg-index retrieves (default 200, the paper's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=None,
                        help="recompute UNet activations in backward (much less memory, slower; "
                             "default: on with CUDA)")
    _add_character_export(sub)


def _add_character_export(sub) -> None:
    from storyreel.generation.characters.export import DEFAULT_TI_STEPS, FORMATS

    parser = add_command(sub, "export", _run_character_export,
                         "write a character pack as a diffusers or kohya LoRA, or a textual-inversion embedding",
                         models=None, json="print the export summary as JSON")
    parser.add_argument("pack", metavar="PACK", help="character pack (.safetensors) from `character train`")
    parser.add_argument("--format", required=True, choices=FORMATS,
                        help="diffusers: LoRA for pipe.load_lora_weights; kohya: lora_unet_* LoRA for ComfyUI/A1111; "
                             "ti: the token's embedding for load_textual_inversion")
    parser.add_argument("--out", required=True, metavar="FILE", help="file to write (.safetensors)")
    parser.add_argument("--steps", type=int, default=DEFAULT_TI_STEPS,
                        help="ti of a TimeInv pack: average the rows this many sampling steps read "
                             f"(default {DEFAULT_TI_STEPS})")


def _run_character_export(args) -> int:
    from storyreel.generation.characters.export import export_pack

    summary = export_pack(args.pack, args.out, args.format, steps=args.steps)
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"wrote {summary['out']} ({summary['format']}, token {summary['token']}, {summary['tensors']} tensors)"
              + (f"; {summary['note']}" if summary["note"] else ""))
    return 0


def _run_character_train(args) -> int:
    from storyreel.core.devices import device_and_dtype
    from storyreel.core.models import preset_from_args
    from storyreel.core.progress import Progress

    device, dtype = device_and_dtype(args, training=True)  # a bad --device fails before the heavy imports
    preset = preset_from_args(args)

    from storyreel.training.train import TrainSettings, train_character

    settings = TrainSettings.from_recipe(
        args.recipe, token=args.token, init_word=args.init_word, mode=args.mode, steps=args.steps,
        learning_rate=args.lr, lora_rank=args.rank, num_buckets=args.buckets, anchors=args.anchors, frames=args.frames,
        size=args.size, tau=args.tau, checkpoint_every=args.checkpoint_every, seed=args.seed, reg_index=args.reg_index,
        reg_clips=args.reg_clips,
    )
    # None is a value here ("on with CUDA"), not "not given"
    settings = dataclasses.replace(settings, gradient_checkpointing=args.gradient_checkpointing)
    summary = train_character(args.images_dir, args.out, settings, preset=preset, resume=args.resume,
                              device=device, dtype=dtype,
                              progress=Progress("character train", quiet=args.quiet))
    print(json.dumps(summary) if args.json else
          f"wrote {summary['pack']}: token {summary['token']} ({summary['mode']}, {summary['buckets']} rows), "
          f"{summary['steps']} steps, final loss {summary['final_loss']:.4f}, {summary['images']} images")
    return 0
