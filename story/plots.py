"""Plot generation: one plot of a story, its source clip chosen, into plots/NN.mp4 and its manifest record.

    generator = PlotGenerator(story, preset, embedder, backend)       # loads the models once
    record = generator.render_plot(plot, index, out_dir, on_stage)    # plot: a ResolvedPlot
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from storyreel.story.clips import ClipChoice
from storyreel.story.format import Story, layout_of, plot_settings
from storyreel.story.manifest import PlotRecord
from storyreel.story.storyboard import entity_colours, keyframe_indices, row_png, write_storyboard_row

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResolvedPlot:
    """Plot `index` as the render sees it: every setting resolved, its source clip chosen, its key known."""

    index: int
    settings: dict         # story/format.py `resolved_plot_settings` (as the manifest records them)
    choice: ClipChoice
    key: str               # story/manifest.py `plot_key`: a rerun keeps a plot whose key is unchanged

    @property
    def output(self) -> str:
        """Its video, relative to OUT_DIR."""
        return str(Path("plots") / f"{self.index:02d}.mp4")


class PlotGenerator:
    """The models a render needs, loaded once: the clip generator (with every character pack), CLIP for eval."""

    def __init__(self, story: Story, preset, embedder, backend: str, log=None, device=None, dtype=None,
                 cpu_offload: bool = False):
        from storyreel.generation.characters.pack import load_pack
        from storyreel.generation.generate import ClipGenerator

        self.story, self.preset, self.embedder, self.log = story, preset, embedder, log
        # `backend` (the first plot to render's) loads now; another one a later plot asks for, on first use.
        self.clips = ClipGenerator(preset, characters=[c.pack for c in story.characters.values()], backend=backend,
                                   device=device, dtype=dtype, cpu_offload=cpu_offload)
        self.packs = {token: load_pack(c.pack) for token, c in story.characters.items()}
        self.colours = entity_colours(story)

    def render_plot(self, plot: ResolvedPlot, index, out_dir: Path, on_stage, on_step=None) -> PlotRecord:
        """Generate `plot` into OUT_DIR/plots/NN.mp4 with its storyboard row; `on_stage(text)` is told each
        stage, `on_step(done, total)` each denoising step."""
        from storyreel.generation.evaluate import score_clip
        from storyreel.generation.generate import ClipRequest

        i, settings, clip = plot.index, plot.settings, plot.choice.clip
        video = out_dir / plot.output
        present = [c["token"] for c in settings["characters"]]  # only their LoRA stays on in this plot
        layout = layout_of(settings)
        request = ClipRequest(settings["prompt"], clip.clip_id, negative_prompt=settings["negative_prompt"],
                              index_dir=index, present=tuple(present), layout=layout)
        generated = self.clips.generate(request, video, plot_settings(self.story, i, self.preset),
                                        on_stage=on_stage, on_step=on_step)
        start = time.perf_counter()
        source_frames = index.read_frames(clip.clip_id, keyframe_indices(clip.end_frame - clip.start_frame))
        depth_frames = generated.depth[keyframe_indices(len(generated.depth))].permute(0, 2, 3, 1).cpu().numpy()
        keyframes = keyframe_indices(len(generated.frames))
        boxes = {} if layout is None else {e.name: b for e, b in zip(layout.entities,
                                                                      layout.frame_boxes(len(generated.frames)))}
        write_storyboard_row(row_png(video), f"{i:02d}  {settings['text']}", source_frames,
                             (depth_frames * 255).round().astype(np.uint8), generated.frames[keyframes],
                             [[(b[f], name, self.colours[name]) for name, b in boxes.items()] for f in keyframes])
        metrics = score_clip(generated.frames, settings["prompt"], self.embedder, [self.packs[t] for t in present])
        timings = {"depth_s": generated.timings["depth_s"], "generate_s": generated.timings["generate_s"],
                   "write_eval_s": round(generated.timings["write_s"] + time.perf_counter() - start, 3)}
        notes = plot.choice.notes + generated.sidecar["notes"]
        self._log_notes(i, notes)
        return PlotRecord(
            index=i, output=plot.output, settings=settings, clip={**clip.to_dict(), "score": plot.choice.score},
            notes=notes, structure_forward_passes=generated.sidecar["structure_forward_passes"], timings=timings,
            layout=None if layout is None else {**generated.sidecar["layout"], "frame_boxes": {
                name: np.round(b, 4).tolist() for name, b in boxes.items()}},
            metrics={"clip_t": metrics.clip_t, "clip_i": metrics.clip_i,
                     "temporal_consistency": metrics.temporal_consistency,
                     "motion_magnitude": metrics.motion_magnitude, "clip_model": metrics.model_id},
            key=plot.key, reused=False)

    def _log_notes(self, i: int, notes: list[str]) -> None:
        for note in notes:
            if self.log is not None:
                print(f"storyreel: note: plot {i}: {note}", file=self.log)
            else:
                logger.info("note: plot %d: %s", i, note)
