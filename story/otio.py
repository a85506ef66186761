"""`story.otio`: a rendered story as an OpenTimelineIO timeline, so an editor can open the cut.

    write_story_otio(manifest, out_dir)     # render_story calls it after story.mp4 (a manifest.py Manifest)

Two video tracks, one clip per plot, in plot order:

* "Plots": the generated clips `plots/NN.mp4` back to back, each its whole length at the plot's fps:
  the cut story.mp4 shows.
* "Sources": the retrieved source clip of each plot: its video file, with the window of the clip the
  plot's structure played (depth/conditioning.py `source_window`: frames/fps × speed seconds centred in
  the clip, at the source's fps) as the source range, and a LinearTimeWarp effect, time_scalar = the
  speed it played at (source length / plot length), that fits it to its plot.

Every clip's metadata["storyreel"] holds the plot index, its text and the clip id.
"""

from __future__ import annotations

from pathlib import Path

from storyreel.core.files import write_text_atomic
from storyreel.depth import Playback, source_window
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
        clip_frames = int(clip["end_frame"]) - int(clip["start_frame"])
        indices, speed = source_window(clip_frames, source_fps, frames,
                                       Playback(fps, float(plot.settings.get("speed", 1.0))))
        speed = speed or 1.0  # a one-frame plot: its source frame, held
        length = min(max(1, round(frames * speed * source_fps / fps)), clip_frames - indices[0])
        source = otio.schema.Clip(
            name=f"clip {int(clip['clip_id'])}",
            source_range=_range(int(clip["start_frame"]) + indices[0], length, source_fps),
            metadata={"storyreel": info},
            media_reference=otio.schema.ExternalReference(target_url=str(Path(clip["video"]).resolve())))
        source.effects.append(otio.schema.LinearTimeWarp(name="fit to plot", time_scalar=speed))
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
