"""`storyreel` commands of the `depth` package (see cli/__init__.py and docs/CLI.md).

    storyreel depth SOURCE --out depth.mp4|depth.png [--png-dir DIR] [--bits 8|16] [--depth-model NAME]
                     [--weights FILE] [--raw FILE.npy] [--sheet PNG] [--index INDEX_DIR] [--json] [--models P]
                     [--device D] [--dtype T]
"""

from __future__ import annotations

import json
from pathlib import Path

from storyreel.cli.common import add_command
from storyreel.core.errors import UserError


def add_commands(commands) -> None:
    """Register this package's subcommands on the top-level parser's subparsers."""
    parser = add_command(
        commands, "depth", _run_depth, "stable MiDaS depth video of a video, an image or an indexed clip",
        description="Estimate MiDaS depth for every frame of SOURCE, stabilize it over the clip and "
                    "write a gray depth video (near = bright) with a <out>.json sidecar.",
        models="model preset whose depth model to use (default: with --index, the preset the index was built "
               "with; else $STORYREEL_MODELS, else default)",
        components=("depth",),
    )
    parser.add_argument("source", metavar="SOURCE", help="video file, image file, or clip id (with --index)")
    parser.add_argument("--out", required=True,
                        help="depth video to write (.mp4), or a depth image (.png) for a single-frame source")
    parser.add_argument("--png-dir", metavar="DIR", help="also write every depth frame as DIR/000000.png, ...")
    parser.add_argument("--bits", type=int, choices=(8, 16), default=8,
                        help="bits per pixel of PNG output (--out .png, --png-dir): 8 or 16 (default 8)")
    parser.add_argument("--weights", help="checkpoint file in the official MiDaS layout (.pt)")
    parser.add_argument("--raw", help="also save the raw network output (float32 F x H x W, .npy)")
    parser.add_argument("--sheet", help="also save a PNG of source keyframes above their depth maps")
    parser.add_argument("--index", help="index directory (SOURCE is then a clip id)")
    parser.add_argument("--batch-size", type=int, default=8, help="frames per network batch (default 8)")


def _run_depth(args) -> int:
    from storyreel.core.devices import device_and_dtype
    from storyreel.core.models import get_preset, with_overrides
    from storyreel.core.progress import Progress
    from storyreel.depth.model import create_depth_model
    from storyreel.depth.temporal import flicker, stabilize

    out = _check_outputs(args)
    device, dtype = device_and_dtype(args)
    # 1. source first: a bad path should not wait for model loading
    source, frames, preset = _read_source(args, out)
    name = with_overrides(preset or get_preset(args.models), depth=args.depth_model).depth
    # 2. model
    model = create_depth_model(name, weights=args.weights, device=device, dtype=dtype)
    # 3. frames -> raw inverse depth -> stabilized [0, 1]
    progress = Progress("depth", quiet=args.quiet)
    raw = model.predict(frames, batch_size=args.batch_size, progress=progress)
    depth01 = stabilize(raw)
    # 4. outputs
    meta = {"model": model.model_id, "source": source.label, "frames": int(len(depth01)),
            "size": [int(depth01.shape[1]), int(depth01.shape[2])], "fps": source.fps}
    _write_outputs(args, out, frames, raw, depth01, meta)
    progress.done(frames=len(depth01), out=str(out))
    report = {"out": str(out), **meta, "flicker": flicker(depth01), "raw": args.raw, "sheet": args.sheet,
              "png_dir": args.png_dir, "bits": args.bits}
    if args.json:
        print(json.dumps(report))
    else:
        print(f"wrote {out} ({report['frames']} frames, {meta['size'][1]}x{meta['size'][0]}, model {model.model_id})")
    return 0


def _check_outputs(args) -> Path:
    """--out as a Path, after checking every output flag: no run that decodes and loads a model, then
    fails at the end."""
    from storyreel.core.files import check_output_path

    out = Path(args.out)
    if out.suffix.lower() not in (".mp4", ".png"):
        raise UserError(f"--out {out} must end in .mp4 (a depth video) or .png (a depth image)")
    outputs = [("--out", out), ("--raw", args.raw and Path(args.raw)), ("--sheet", args.sheet and Path(args.sheet))]
    for flag, path in outputs:
        if path:
            check_output_path(path, flag, create_parents=True)
    if args.png_dir:
        check_output_path(args.png_dir, "--png-dir", folder=True, create_parents=True)
    named = [p.resolve() for _, p in outputs if p]
    if len(set(named)) < len(named):
        raise UserError("--out, --raw and --sheet must be different files")
    if args.raw and Path(args.raw).suffix.lower() != ".npy":
        raise UserError(f"--raw {args.raw} must end in .npy")
    if args.sheet and Path(args.sheet).suffix.lower() != ".png":
        raise UserError(f"--sheet {args.sheet} must end in .png")
    if not 1 <= args.batch_size <= 4096:
        raise UserError(f"--batch-size must be from 1 to 4096 (got {args.batch_size})")
    return out


def _read_source(args, out: Path):
    """(source, its frames, the index's preset or None) of SOURCE: a file, or a clip id of --index."""
    from storyreel.core.models import preset_for_model_id
    from storyreel.depth.media import index_context, open_source

    with index_context(args.index) as index:
        source = open_source(args.source, index)
        if out.suffix.lower() == ".png" and source.num_frames != 1:
            raise UserError(f"--out {out}: a .png holds one depth image but {source.label} has {source.num_frames} "
                            f"frames; write a .mp4, and use --png-dir DIR for one PNG per frame")
        frames = source.read(list(range(source.num_frames)))
        # the index records the model it was built with: its preset's depth model, unless --models says
        preset = (preset_for_model_id(index.model_id) if index is not None and args.models is None else None)
    return source, frames, preset


def _write_outputs(args, out: Path, frames, raw, depth01, meta: dict) -> None:
    """--out and its sidecar, then --png-dir, --raw and --sheet: all of them or none (a later write that
    fails takes the earlier ones with it)."""
    from storyreel.core.files import sidecar_path
    from storyreel.depth.media import write_depth_png, write_depth_pngs, write_depth_video, write_npy, write_sheet

    written = []
    try:
        if out.suffix.lower() == ".png":
            write_depth_png(out, depth01[0], args.bits)
        else:
            write_depth_video(out, depth01, meta["fps"], meta)
        written += [out, sidecar_path(out)]
        if args.png_dir:
            written += write_depth_pngs(Path(args.png_dir), depth01, args.bits)
        if args.raw:
            write_npy(Path(args.raw), raw)
            written.append(Path(args.raw))
        if args.sheet:
            write_sheet(Path(args.sheet), frames, depth01)
    except BaseException as err:
        for path in written:
            path.unlink(missing_ok=True)
        if isinstance(err, OSError):  # disk full, permissions changed meanwhile, ...
            raise UserError(f"cannot write the depth outputs ({err.strerror or err}); none was kept") from None
        raise
