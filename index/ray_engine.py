"""`index build --engine ray [--address ADDR]`: the mapper on Ray workers, the one writer here.

Ray Data reads the file list and runs `map_video` (probe, decode, shots, motion, CLIP) in a pool of
actors, each loading the preset's CLIP once (on a GPU when the cluster has them). Results come back
in file order (`preserve_order`), so the build's single writer commits them exactly as the local
engine does: same clip ids, same crash safety (index/writer.py). Install with
`pip install 'storyreel[ray]'`; the local engine never imports Ray.

Workers read the videos by the paths the driver scanned, so on a cluster VIDEO_DIR must be visible
at the same path on every node (a shared filesystem), and each node needs the preset's weights in
its Hugging Face cache (docs/index.md, "Index on a Ray cluster").
"""

from __future__ import annotations

import pickle

from storyreel.core.errors import UserError


class VideoMapper:
    """A Ray Data actor: CLIP loaded once, then `map_video` on each batch of files."""

    def __init__(self, settings: dict, preset: str, model_id: str):
        from storyreel.index.embed import load_clip
        from storyreel.index.records import BuildSettings

        self.settings = BuildSettings(**settings)
        self.embedder = load_clip(preset)  # on the worker's GPU when it has one (storyreel.core.devices)
        if self.embedder.model_id != model_id:
            raise RuntimeError(f"worker loaded CLIP {self.embedder.model_id}, the build uses {model_id}")

    def __call__(self, batch: dict) -> dict:
        from storyreel.index.mapper import map_video
        from storyreel.index.scan import FileStat

        records = [pickle.dumps(map_video(FileStat(str(p), int(s), int(m)), self.settings, self.embedder))
                   for p, s, m in zip(batch["path"], batch["size"], batch["mtime_ns"])]
        return {"order": batch["order"], "record": records}


def run_pipeline(files, settings, embedder, frames_progress=None):
    """Yield mapped `VideoRecord`s in `files` order, mapped on the Ray cluster at `settings.address`
    (None: a local Ray started here with `settings.workers` CPUs, or the cluster RAY_ADDRESS names).
    The workers load the preset's CLIP themselves and must get `embedder`'s model; `frames_progress`
    is not told (the frames are decoded on the workers): the same call as index/mapper.py's."""
    from storyreel.core.models import get_preset

    address, workers = settings.address, settings.workers
    try:
        import ray
    except ImportError:
        raise UserError("--engine ray needs Ray: pip install 'storyreel[ray]'") from None
    if not files:
        return
    started_here = not ray.is_initialized()
    if started_here:
        try:
            ray.init(address=address, num_cpus=None if address else max(1, workers), include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
        except (ConnectionError, ValueError, RuntimeError) as err:
            raise UserError(f"cannot reach the Ray cluster at {address}: {err}") from None
    try:
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True  # the writer assigns clip ids in file order
        context.enable_progress_bars = False
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
        items = [{"order": i, "path": f.path, "size": f.size, "mtime_ns": f.mtime_ns} for i, f in enumerate(files)]
        mapped = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            VideoMapper, batch_size=1, concurrency=max(1, workers), num_gpus=gpus,
            fn_constructor_kwargs={"settings": settings.catalog_settings(), "preset": get_preset(settings.preset).name,
                                   "model_id": embedder.model_id})
        expected = 0
        for row in mapped.iter_rows():
            if int(row["order"]) != expected:
                raise RuntimeError(f"Ray returned file {row['order']} where {expected} was due")
            expected += 1
            yield pickle.loads(row["record"])
    finally:
        if started_here:
            ray.shutdown()
