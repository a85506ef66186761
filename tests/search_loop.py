"""`python tests/search_loop.py INDEX_DIR --stop FILE`: a reader that searches in a loop.

Until FILE exists it opens the index's current generation, checks that what it sees is one complete
generation (every catalog clip has a vector and K frame vectors, the vector index holds exactly the
catalog's ids, searches return catalog clips, a filtered search returns only matching ones) and
prints one JSON line per pass: {"generation", "clips", "ok"} or {"error": "..."}. A test runs it in
its own process beside a build (tests/test_index_build.py), kills the build and resumes it, and then
reads the lines: no error, and every generation seen had the same clips every time it was seen.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np


def check_once(index_dir: str, rng: np.random.Generator) -> dict:
    from storyreel.index import open_index
    from storyreel.index.catalog import ClipFilter
    from storyreel.index.reader import vector_ids

    with open_index(index_dir) as idx:
        rows = idx.clips()
        ids = {r.clip_id for r in rows}
        stored = sorted(vector_ids(idx.vector_index).tolist())
        if stored != sorted(ids):
            return {"error": f"{idx.generation}: vector ids {len(stored)} != catalog ids {len(ids)}"}
        k = int(idx.settings["frames_per_clip"])
        frames = idx.frame_vectors(sorted(ids))
        if sorted(frames) != sorted(ids) or any(v.shape != (k, idx.dim) for v in frames.values()):
            return {"error": f"{idx.generation}: frame vectors missing or misshapen"}
        query = rng.standard_normal(idx.dim).astype(np.float32)
        found, _ = idx.search_vectors(query / np.linalg.norm(query), 5)
        if not set(found.tolist()) <= ids or len(found) != min(5, len(ids)):
            return {"error": f"{idx.generation}: search returned {found.tolist()}"}
        if rows:
            motion = rows[0].motion
            found, _ = idx.search_vectors(query, 5, ClipFilter(motion=motion))
            matching = {r.clip_id for r in rows if r.motion == motion}
            if not set(found.tolist()) <= matching or len(found) != min(5, len(matching)):
                return {"error": f"{idx.generation}: filtered search returned {found.tolist()}"}
        return {"generation": idx.generation, "clips": len(ids),
                "digest": float(sum(float(v.sum()) for v in frames.values())), "ok": True}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tests/search_loop.py",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("index_dir", metavar="INDEX_DIR")
    parser.add_argument("--stop", required=True, metavar="FILE", help="stop once this file exists")
    parser.add_argument("--pause", type=float, default=0.2, metavar="S", help="seconds between passes (default 0.2)")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    while not os.path.exists(args.stop):
        try:
            line = check_once(args.index_dir, rng)
        except Exception as err:  # noqa: BLE001 - the test reads every failure as a line
            line = {"error": f"{type(err).__name__}: {err}"}
        print(json.dumps(line), flush=True)
        time.sleep(args.pause)  # leave the (shared) CPU to the build between passes
    return 0


if __name__ == "__main__":
    sys.exit(main())
