"""`python tests/slow_build.py VIDEO_DIR --index DIR --pause S`: an index build that pauses.

The real `storyreel.index.build`, which prints a progress line after every committed video and then
sleeps S seconds (through build's `on_video_committed` callback), so a test can kill it with SIGKILL
at a known point: after "files=N/M" is printed, video N is committed to the staging catalog and
nothing later is. tests/test_index_build.py uses it for the crash-safety test.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tests/slow_build.py", description=__doc__.split("\n")[0])
    parser.add_argument("video_dir", metavar="VIDEO_DIR")
    parser.add_argument("--index", required=True, metavar="INDEX_DIR")
    parser.add_argument("--models", default="tiny", metavar="PRESET", help="model preset (default tiny)")
    parser.add_argument("--pause", type=float, required=True, metavar="S", help="seconds to sleep after each commit")
    args = parser.parse_args(argv)

    from storyreel.core.progress import Progress
    from storyreel.index import BuildSettings, build

    report = build(args.video_dir, args.index, BuildSettings(preset=args.models),
                   progress=Progress("index build", every_s=0),
                   on_video_committed=lambda record: time.sleep(args.pause))
    json.dump(report.to_dict(), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
