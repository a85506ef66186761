"""Long-video memory: peak RSS of `storyreel index build` on one synthetic video, 1 minute vs 2 hours.

    python scripts/bench_long_video.py                       # 1 min and 2 h at 64x48, 24 fps (~10 min)
    python scripts/bench_long_video.py --minutes 1 20 --fps 8 # quicker

Each build runs in its own process (`storyreel index build --models tiny`), so its peak RSS
(ru_maxrss of the child) is the build's alone. The video is small frames with a hard cut every 10 s
(synthetic/corpus.py `write_long_video`). Targets: the long video's peak RSS within
500 MB of the 1-minute one's, and at most 1.5 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from storyreel.synthetic import write_long_video


def build_peak_rss_mb(video_dir: Path, index_dir: Path) -> tuple[float, float, dict]:
    """(peak RSS MiB, seconds, report) of one `index build` in a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "storyreel", "index", "build", str(video_dir), "--index",
                           str(index_dir), "--models", "tiny", "--json"], capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak <= before:
        raise SystemExit("a later build did not exceed an earlier child's peak RSS; run the sizes in separate runs")
    return peak / 1024, seconds, json.loads(proc.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 120], help="video lengths (ascending)")
    parser.add_argument("--fps", type=float, default=24.0)
    parser.add_argument("--size", default="64x48", help="frame size WxH")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in sorted(args.minutes):
            videos = Path(tmp) / f"videos-{minutes:g}"
            videos.mkdir()
            t = time.perf_counter()
            frames = write_long_video(videos / "long.mp4", minutes * 60, fps=args.fps, size=(width, height))
            write_s = time.perf_counter() - t
            rss, seconds, report = build_peak_rss_mb(videos, Path(tmp) / f"index-{minutes:g}")
            rows.append({"minutes": minutes, "frames": frames, "clips": report["clips"], "write_s": round(write_s, 1),
                         "build_s": round(seconds, 1), "peak_rss_mb": round(rss, 1)})
            os.remove(videos / "long.mp4")
    print(f"{'minutes':>8} {'frames':>9} {'clips':>6} {'build s':>8} {'peak RSS MB':>12}")
    for r in rows:
        print(f"{r['minutes']:>8g} {r['frames']:>9} {r['clips']:>6} {r['build_s']:>8.1f} {r['peak_rss_mb']:>12.1f}")
    growth = rows[-1]["peak_rss_mb"] - rows[0]["peak_rss_mb"]
    met = growth <= 500 and rows[-1]["peak_rss_mb"] <= 1536
    print(json.dumps({"bench": "long_video", "fps": args.fps, "size": args.size, "results": rows,
                      "rss_growth_mb": round(growth, 1), "target_met": met}))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
