"""`storyreel index build|export|stats|ls|errors|verify` (see cli/__init__.py and docs/CLI.md)."""

from __future__ import annotations

import json
import sys

from storyreel.cli.common import add_command
from storyreel.index.records import BuildSettings
from storyreel.index.scan import display_path


def add_commands(commands) -> None:
    """Register this package's subcommands on the top-level parser's subparsers."""
    index_parser = commands.add_parser("index", help="build and inspect a clip index")
    sub = index_parser.add_subparsers(dest="index_command", required=True, metavar="ACTION")

    p = add_command(sub, "build", _run_build, "index every video under VIDEO_DIR (incremental, crash-safe)",
                    json="print the build report as JSON", components=("clip",))
    p.add_argument("video_dir", metavar="VIDEO_DIR")
    p.add_argument("--index", required=True, metavar="INDEX_DIR")
    p.add_argument("--workers", type=int, default=BuildSettings.workers,
                   help=f"decode threads; --engine ray: mapper actors (default {BuildSettings.workers})")
    p.add_argument("--engine", choices=("local", "ray"), default=BuildSettings.engine,
                   help="where the mapper runs: here (default) or on Ray workers (pip install 'storyreel[ray]')")
    p.add_argument("--address", metavar="ADDR", help="with --engine ray: the Ray cluster (default: a local Ray)")
    p.add_argument("--max-seconds", type=float, default=BuildSettings.max_clip_s,
                   help=f"longest clip (default {BuildSettings.max_clip_s:g})")
    p.add_argument("--min-seconds", type=float, default=BuildSettings.min_clip_s,
                   help=f"shortest clip (default {BuildSettings.min_clip_s:g})")
    p.add_argument("--allow-removals", action="store_true",
                   help="let the build drop more than half of the index's videos (they left VIDEO_DIR)")
    p.add_argument("--repair", action="store_true",
                   help="rebuild damaged index files from what is intact (vectors from the frame vectors)")

    p = add_command(sub, "export", _run_export, "write the index as parquet + FAISS files (clip-retrieval layout)",
                    models=None, json="print the export summary as JSON")
    p.add_argument("--index", required=True, metavar="INDEX_DIR")
    p.add_argument("--format", required=True, choices=("parquet",),
                   help="parquet: metadata and FLOAT[dim] embeddings as parquet, plus the FAISS index file")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write (new, or an earlier export)")

    for name, run, help_text in (
        ("stats", _run_stats, "videos, clips, errors, model id, index type, dim"),
        ("ls", _run_ls, "one row per clip"),
        ("errors", _run_errors, "files that could not be indexed, with reasons"),
        ("verify", _run_verify, "check that catalog and vector ids agree (exit 1 if not)"),
    ):
        add_command(sub, name, run, help_text, models=None).add_argument("--index", required=True, metavar="INDEX_DIR")


def _print_json(doc) -> None:
    json.dump(doc, sys.stdout, indent=2)
    sys.stdout.write("\n")


def _run_build(args) -> int:
    from storyreel.core.devices import device_and_dtype
    from storyreel.core.errors import UsageError
    from storyreel.core.models import preset_from_args
    from storyreel.core.progress import Progress
    from storyreel.index.runner import build

    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    device, dtype = device_and_dtype(args)
    settings = BuildSettings(max_clip_s=args.max_seconds, min_clip_s=args.min_seconds, preset=preset_from_args(args),
                             workers=args.workers, engine=args.engine, address=args.address,
                             allow_removals=args.allow_removals, repair=args.repair, device=device, dtype=dtype)
    report = build(args.video_dir, args.index, settings, progress=Progress("index build", quiet=args.quiet))
    if args.json:
        _print_json(report.to_dict())
    else:
        print(f"vector index: {report.index_update}")  # the summary stays the last line
        print(f"{report.index}: {report.videos} videos, {report.clips} clips ({report.clips_added} new), "
              f"{report.errors} errors; {report.new} new, {report.changed} changed, {report.unchanged} "
              f"unchanged, {report.removed} removed files; {report.seconds:.1f} s")
    return 0


def _run_export(args) -> int:
    from storyreel.index.export import export_parquet

    summary = export_parquet(args.index, args.out)
    if args.json:
        _print_json(summary)
    else:
        print(f"wrote {summary['out']}: {summary['clips']} clips, metadata/, img_emb/ (FLOAT[{summary['dim']}]), "
              f"image.index ({summary['index_type']})")
    return 0


def _read_index(args, read):
    """`read(index)` on the last published generation of --index."""
    from storyreel.index.reader import open_index

    with open_index(args.index) as idx:
        return read(idx)


def _report(args, document, lines: list[str]) -> int:
    """The JSON document with --json, else the text lines."""
    if args.json:
        _print_json(document)
    else:
        print("\n".join(lines))
    return 0


def _run_stats(args) -> int:
    stats = _read_index(args, lambda idx: idx.stats())
    keys = ("index", "videos", "clips", "errors", "frames", "model_id", "index_type", "dim")
    return _report(args, stats, [f"{key:11s} {stats[key]}" for key in keys])


def _run_ls(args) -> int:
    rows = _read_index(args, lambda idx: [row.to_dict() for row in idx.clips()])
    return _report(args, rows, [f"{r['clip_id']:>8}  {r['start_s']:8.2f}-{r['end_s']:<8.2f} {r['motion']:<10} "
                                f"{r['motion_magnitude']:6.2f}  {display_path(r['video'])}" for r in rows])


def _run_errors(args) -> int:
    rows = _read_index(args, lambda idx: idx.errors())
    lines = [f"{display_path(r['video'])}: {r['reason']}" for r in rows]
    return _report(args, rows, lines or [f"no errors: every video under the index {args.index} was indexed"])


def _run_verify(args) -> int:
    problems, clips = _read_index(args, lambda idx: (idx.verify(), idx.stats()["clips"]))
    if args.json:
        _print_json({"ok": not problems, "clips": clips, "problems": problems})
    elif problems:
        for problem in problems:
            print(f"storyreel: index {args.index}: {problem}", file=sys.stderr)
    else:
        print(f"ok: {clips} clips, catalog and vector ids agree")
    return 1 if problems else 0
