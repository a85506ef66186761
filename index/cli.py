"""`storyreel index build|stats|ls|errors|verify` (see storyreel/cli.py and docs/CLI.md)."""

from __future__ import annotations

import json
import sys


def add_commands(commands) -> None:
    """Register this package's subcommands on the top-level parser's subparsers."""
    index_parser = commands.add_parser("index", help="build and inspect a clip index")
    sub = index_parser.add_subparsers(dest="index_command", required=True, metavar="ACTION")

    p = sub.add_parser("build", help="index every video under VIDEO_DIR (incremental, crash-safe)")
    p.add_argument("video_dir", metavar="VIDEO_DIR")
    p.add_argument("--index", required=True, metavar="INDEX_DIR")
    p.add_argument("--models", metavar="PRESET", help="tiny | default (else $STORYREEL_MODELS, else default)")
    p.add_argument("--workers", type=int, default=1, help="decode threads (default 1)")
    p.add_argument("--max-seconds", type=float, default=8.0, help="longest clip (default 8)")
    p.add_argument("--min-seconds", type=float, default=1.0, help="shortest clip (default 1)")
    p.add_argument("--json", action="store_true", help="print the build report as JSON")
    p.set_defaults(run=_run_build)

    for name, run, help_text in (
        ("stats", _run_stats, "videos, clips, errors, model id, index type, dim"),
        ("ls", _run_ls, "one row per clip"),
        ("errors", _run_errors, "files that could not be indexed, with reasons"),
        ("verify", _run_verify, "check that catalog and vector ids agree (exit 1 if not)"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--index", required=True, metavar="INDEX_DIR")
        p.add_argument("--json", action="store_true", help="one JSON document on stdout")
        p.set_defaults(run=run)


def _print_json(doc) -> None:
    json.dump(doc, sys.stdout, indent=2)
    sys.stdout.write("\n")


def _run_build(args) -> int:
    from storyreel.index.build import build
    from storyreel.core.errors import UsageError

    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    report = build(args.video_dir, args.index, args.models, max_clip_s=args.max_seconds,
                   min_clip_s=args.min_seconds, workers=args.workers)
    if args.json:
        _print_json(report.to_dict())
    else:
        print(f"{report.index}: {report.videos} videos, {report.clips} clips ({report.clips_added} new), "
              f"{report.errors} errors; {report.new} new, {report.changed} changed, {report.unchanged} "
              f"unchanged, {report.removed} removed files; {report.seconds:.1f} s")
    return 0


def _run_stats(args) -> int:
    from storyreel.index.reader import open_index

    with open_index(args.index) as idx:
        stats = idx.stats()
    if args.json:
        _print_json(stats)
    else:
        for key in ("index", "videos", "clips", "errors", "frames", "model_id", "index_type", "dim"):
            print(f"{key:11s} {stats[key]}")
    return 0


def _run_ls(args) -> int:
    from storyreel.index.reader import open_index

    with open_index(args.index) as idx:
        rows = [row.to_dict() for row in idx.clips()]
    if args.json:
        _print_json(rows)
    else:
        for r in rows:
            print(f"{r['clip_id']:>8}  {r['start_s']:8.2f}-{r['end_s']:<8.2f} {r['motion']:<10} "
                  f"{r['motion_magnitude']:6.2f}  {r['video']}")
    return 0


def _run_errors(args) -> int:
    from storyreel.index.reader import open_index

    with open_index(args.index) as idx:
        rows = idx.errors()
    if args.json:
        _print_json(rows)
    elif not rows:
        print(f"no errors: every video under the index {args.index} was indexed")
    else:
        for r in rows:
            print(f"{r['video']}: {r['reason']}")
    return 0


def _run_verify(args) -> int:
    from storyreel.index.reader import open_index

    with open_index(args.index) as idx:
        problems = idx.verify()
        clips = idx.stats()["clips"]
    if args.json:
        _print_json({"ok": not problems, "clips": clips, "problems": problems})
    elif problems:
        for problem in problems:
            print(f"storyreel: index {args.index}: {problem}", file=sys.stderr)
    else:
        print(f"ok: {clips} clips, catalog and vector ids agree")
    return 1 if problems else 0
