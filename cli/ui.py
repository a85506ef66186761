"""`storyreel ui`: serve the web app (ui/app.py; see cli/__init__.py and docs/CLI.md).

    storyreel ui [--index DIR] [--story FILE] [--out DIR] [--root DIR ...] [--host 127.0.0.1] [--port 7860]
                 [--max-upload-mb 20] [--models P] [--device D] [--dtype T]
"""

from __future__ import annotations

from storyreel.cli.common import add_command


def add_commands(commands) -> None:
    """Register this package's subcommands on the top-level parser's subparsers."""
    parser = add_command(commands, "ui", _run_ui, "web app: index, search, story, characters, render",
                         description="Serve a web page (Gradio) with Index, Search, Story, Characters and Render "
                                     "tabs. Paths typed into the page must lie inside the index, story and "
                                     "output folders or a --root.", json=None)
    parser.add_argument("--index", metavar="INDEX_DIR", help="index folder the page opens with")
    parser.add_argument("--story", metavar="STORY.yaml", help="story file the page opens with")
    parser.add_argument("--out", metavar="DIR", default="storyreel-ui",
                        help="folder for renders and packs (default storyreel-ui)")
    parser.add_argument("--root", action="append", default=[], metavar="DIR",
                        help="another folder the page may read and write (repeatable)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0: every network)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--max-upload-mb", type=float, default=20.0, metavar="MB",
                        help="largest file the page accepts (default 20)")


def _run_ui(args) -> int:
    from pathlib import Path

    from storyreel.core.errors import UserError

    try:
        import gradio  # noqa: F401
    except ImportError:
        raise UserError("storyreel ui needs Gradio: pip install 'storyreel[ui]'") from None
    from storyreel.core.models import resolve_preset
    from storyreel.ui.app import StoryreelApp, UIConfig

    if not 0 < args.port < 65536:
        raise UserError(f"--port must be 1..65535, got {args.port}")
    if args.max_upload_mb <= 0:
        raise UserError(f"--max-upload-mb must be positive, got {args.max_upload_mb}")
    for flag, folder in [("--index", args.index), *[("--root", r) for r in args.root]]:
        if folder is not None and not Path(folder).is_dir():
            raise UserError(f"{flag} {folder} does not exist or is not a folder")
    if args.story is not None and not Path(args.story).resolve().parent.is_dir():
        raise UserError(f"--story {args.story}: folder {Path(args.story).resolve().parent} does not exist")
    from storyreel.core.devices import device_and_dtype

    device_and_dtype(args)  # a bad --device/--dtype is one line now, not an error on every page action
    Path(args.out).mkdir(parents=True, exist_ok=True)
    config = UIConfig(index=Path(args.index).resolve() if args.index else None,
                      story=Path(args.story).resolve() if args.story else None, out=Path(args.out),
                      roots=tuple(Path(r) for r in args.root), preset=resolve_preset(args.models),
                      device=args.device, dtype=args.dtype, host=args.host,
                      port=args.port, max_upload_mb=args.max_upload_mb)
    StoryreelApp(config).launch(block=True)
    return 0
