"""`story.otio`: a rendered story as an OpenTimelineIO timeline, so an editor can open the cut.

    write_story_otio(manifest, out_dir)     # render_story calls it after story.mp4 (a manifest.py Manifest)

Two video tracks, one clip per plot, in plot order:

* "Plots": the generated clips `plots/NN.mp4` back to back, each its whole length at the plot's fps:
  the cut story.mp4 shows.
* "Sources": the retrieved source clip of each plot: its video file, with the clip's in and out frames
  (`start_frame`..`end_frame`, at the source's fps) as the source range. A plot's frames are spread
  evenly over its whole source clip (depth/conditioning.py), so each source clip carries a
  LinearTimeWarp effect, time_scalar = source length / plot length, that fits it to its plot.

Every clip's metadata["storyreel"] holds the plot index, its text and the clip id.
"""

from __future__ import annotations

from pathlib import Path

from storyreel.core.files import write_text_atomic
from storyreel.story.manifest import Manifest

OTIO_FILE = "story.otio"


def story_timeline(manifest: Manifest, out_dir):
    """The opentimelineio Timeline of a render's manifest."""
    import opentimelineio as otio

    out_dir = Path(out_dir).resolve()
    timeline = otio.schema.Timeline(name=manifest.title or "story")
    generated = otio.schema.Track(name="Plots", kind=otio.schema.TrackKind.Video)
    sources = otio.schema.Track(name="Sources", kind=otio.schema.TrackKind.Video)
    for plot in manifest.plots:
        fps, frames = float(plot.settings["fps"]), int(plot.settings["frames"])
        clip = plot.clip
        info = {"plot": plot.index, "text": plot.settings.get("text", ""), "clip_id": int(clip["clip_id"])}
        plot_range = _range(0, frames, fps)
        generated.append(otio.schema.Clip(
            name=f"plot {plot.index:02d}", source_range=plot_range, metadata={"storyreel": info},
            media_reference=otio.schema.ExternalReference(target_url=str(out_dir / plot.output),
                                                          available_range=plot_range)))
        source_fps = float(clip["fps"])
        length = int(clip["end_frame"]) - int(clip["start_frame"])
        source = otio.schema.Clip(
            name=f"clip {int(clip['clip_id'])}", source_range=_range(int(clip["start_frame"]), length, source_fps),
            metadata={"storyreel": info},
            media_reference=otio.schema.ExternalReference(target_url=str(Path(clip["video"]).resolve())))
        source.effects.append(otio.schema.LinearTimeWarp(
            name="fit to plot", time_scalar=(length / source_fps) / (frames / fps)))
        sources.append(source)
    timeline.tracks.append(generated)
    timeline.tracks.append(sources)
    return timeline


def write_story_otio(manifest: Manifest, out_dir) -> Path:
    """Write OUT_DIR/story.otio (atomically); returns its path."""
    import opentimelineio as otio

    path = Path(out_dir) / OTIO_FILE
    write_text_atomic(path, otio.adapters.write_to_string(story_timeline(manifest, out_dir), "otio_json"))
    return path


def _range(start: int, duration: int, fps: float):
    import opentimelineio as otio

    return otio.opentime.TimeRange(otio.opentime.RationalTime(start, fps), otio.opentime.RationalTime(duration, fps))
