"""Index build throughput: decode-only, embed-only and end-to-end frames/s on one generated corpus.

    python scripts/bench_index.py [--presets tiny vit-b-32-random] [--videos 12] [--workers 1]

All three rates count *source* video frames per second of wall time, so they compare directly:
- decode-only: the mapper's decode stage (`decode_video`: probe, every frame small for the cut
  detector, the sampled frames at analysis size, camera motion), over the whole corpus;
- embed-only:  the mapper's embed stage (`embed_video`: CLIP on K frames per clip) on those records,
  with the torch thread count the build uses beside its decode threads;
- end-to-end:  `index.build` into an empty folder (scan, both stages overlapped, DuckDB, FAISS).
Target: end-to-end >= 0.85 x min(decode-only, embed-only), i.e. the stages overlap.
`vit-b-32-random` is full-size ViT-B-32 at random init (speed does not depend on weight values).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

from storyreel.index import BuildSettings, build
from storyreel.index.embed import clip_embedder, load_clip
from storyreel.index.mapper import decode_video, embed_threads, embed_video
from storyreel.index.scan import find_videos
from storyreel.synthetic import make_corpus
from storyreel.testing.models import BENCH_ONLY_MODELS


def bench_preset(preset: str, corpus: Path, workers: int, source_frames: int, device=None, dtype=None) -> dict:
    place = {"device": device, "dtype": dtype}  # storyreel.core.devices: CUDA in fp16 when present
    embedder = (clip_embedder(BENCH_ONLY_MODELS[preset], **place) if preset in BENCH_ONLY_MODELS
                else load_clip(preset, **place))
    settings = BuildSettings()
    files = find_videos(corpus)
    embedder.embed_images(decode_video(files[0], settings).clips[0].frames)  # warm-up (allocations, threads)

    t = time.perf_counter()
    decoded = [decode_video(f, settings) for f in files]
    decode_s = time.perf_counter() - t

    import torch

    records = copy.deepcopy(decoded)
    threads = torch.get_num_threads()
    torch.set_num_threads(embed_threads(workers))  # the thread count the build embeds with
    t = time.perf_counter()
    for record in records:
        embed_video(record, embedder)
    embed_s = time.perf_counter() - t
    torch.set_num_threads(threads)

    with tempfile.TemporaryDirectory() as out:
        t = time.perf_counter()
        report = build(corpus, Path(out) / "index", BuildSettings(workers=workers), embedder=embedder)
        e2e_s = time.perf_counter() - t

    rates = {"decode_fps": source_frames / decode_s, "embed_fps": source_frames / embed_s,
             "end_to_end_fps": source_frames / e2e_s}
    slower = min(rates["decode_fps"], rates["embed_fps"])
    return {"preset": preset, "model_id": embedder.model_id, "videos": len(files), "clips": report.clips,
            "source_frames": source_frames, "embedded_frames": report.clips * settings.frames_per_clip,
            **{k: round(v, 1) for k, v in rates.items()},
            "ratio": round(rates["end_to_end_fps"] / slower, 3), "target_met": rates["end_to_end_fps"] >= 0.85 * slower}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "vit-b-32-random"])
    parser.add_argument("--videos", type=int, default=12)
    parser.add_argument("--shots", type=int, default=3, help="shots per video (2 s each)")
    parser.add_argument("--size", default="320x240", help="video size WxH")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--device", help="cpu, cuda (default: cuda when present)")
    parser.add_argument("--dtype", help="fp32, fp16, bf16 (default: fp16 on a GPU)")
    args = parser.parse_args()
    from storyreel.core.devices import pick_device, pick_dtype

    device = pick_device(args.device)
    dtype = pick_dtype(args.dtype, device)
    width, height = (int(v) for v in args.size.split("x"))

    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus"
        truths = make_corpus(corpus, num_videos=args.videos, shots_per_video=args.shots, size=(width, height), seed=0)
        source_frames = sum(t.num_frames for t in truths)
        results = [bench_preset(p, corpus, args.workers, source_frames, device, dtype) for p in args.presets]

    print(f"corpus: {args.videos} videos, {source_frames} frames at {width}x{height}, workers={args.workers}, "
          f"{device} {str(dtype).replace('torch.', '')}")
    print(f"{'preset':<16} {'clips':>5} {'decode f/s':>11} {'embed f/s':>10} {'end-to-end f/s':>15} {'e2e/slower':>11}")
    for r in results:
        print(f"{r['preset']:<16} {r['clips']:>5} {r['decode_fps']:>11.1f} {r['embed_fps']:>10.1f} "
              f"{r['end_to_end_fps']:>15.1f} {r['ratio']:>11.3f}")
    print(json.dumps({"bench": "index", "size": args.size, "workers": args.workers, "device": str(device),
                      "dtype": str(dtype).replace("torch.", ""), "results": results}))
    return 0 if all(r["target_met"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
