"""`storyreel` commands of the `retrieval` package (see cli/__init__.py and docs/CLI.md)."""

from __future__ import annotations

from storyreel.cli.common import add_command
from storyreel.index.motion import MOTION_LABELS


def add_commands(commands) -> None:
    """Register this package's subcommands on the top-level parser's subparsers."""
    p = add_command(commands, "search", _run_search, "find clips by text or image (and camera motion)",
                    models="model preset whose CLIP to query with (default: the model the index records)",
                    components=("clip",),
                    json="one JSON document (a list of clip rows) on stdout")
    p.add_argument("text", nargs="?", metavar="TEXT", help="what the clip shows; camera words like "
                   "'pans left' or 'static shot' favour clips with that motion")
    p.add_argument("--index", required=True, metavar="INDEX_DIR", help="index folder (storyreel index build)")
    p.add_argument("-k", type=int, default=5, help="number of results (default 5)")
    p.add_argument("--image", metavar="PATH", help="search by an image instead of TEXT")
    p.add_argument("--motion", choices=MOTION_LABELS, metavar="LABEL",
                   help=f"only clips with this camera motion: {', '.join(MOTION_LABELS)}")
    p.add_argument("--min-seconds", type=float, metavar="S", help="only clips at least S seconds long")
    p.add_argument("--max-seconds", type=float, metavar="S", help="only clips at most S seconds long")
    p.add_argument("--video", metavar="PATH", help="only clips of this source video (a folder: of the videos under it)")
    p.add_argument("--sheet", metavar="PNG", help="also write a contact sheet of the results")


def _run_search(args) -> int:
    import json
    import sys

    from storyreel.core.devices import device_and_dtype
    from storyreel.core.errors import UsageError
    from storyreel.core.files import check_output_path
    from storyreel.index import open_index
    from storyreel.index.embed import clip_for_index
    from storyreel.index.scan import display_path
    from storyreel.retrieval.query import load_image, search
    from storyreel.retrieval.sheet import contact_sheet

    if (args.text is None) == (args.image is None):
        raise UsageError("give exactly one query: a TEXT or --image PATH")
    if args.sheet:
        check_output_path(args.sheet, "--sheet", create_parents=True)  # before CLIP loads and searches
    device, dtype = device_and_dtype(args)
    image = load_image(args.image) if args.image is not None else None  # a bad image fails before CLIP loads
    with open_index(args.index) as index:
        embedder = clip_for_index(index.model_id, args.models, args.clip_model, device=device, dtype=dtype)
        hits = search(index, text=args.text, image=image, k=args.k, motion=args.motion,
                      min_seconds=args.min_seconds, embedder=embedder,
                      max_seconds=args.max_seconds, video=args.video)
        if args.sheet:
            path = contact_sheet(index, hits, args.sheet)
            print(f"contact sheet: {path}", file=sys.stderr)
    if args.json:
        json.dump([hit.to_dict() for hit in hits], sys.stdout, indent=2)
        print()
        return 0
    if not hits:
        print("no clips match")
    for hit in hits:
        c = hit.clip
        print(f"{hit.rank:>3}  {hit.score:6.3f}  clip {c.clip_id:<6} {c.start_s:7.2f}-{c.end_s:<7.2f}s  "
              f"{c.motion:<9}  {display_path(c.video)}")
    return 0
