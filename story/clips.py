"""Clip choice: the source clip each plot of a story is generated from (retrieval, render.py step 2).

    choices = choose_clips(story, index, embedder, preset)   # one ClipChoice per plot
"""

from __future__ import annotations

from dataclasses import dataclass

from storyreel.core.errors import UserError
from storyreel.story.format import Story, resolved_plot_settings

RETRIEVAL_POOL = 50    # candidates fetched per plot, so already-used clips can be skipped


@dataclass(frozen=True)
class ClipChoice:
    """The source clip of one plot, and why it is that one."""

    clip: object                # the index's clip row (index/catalog.py ClipRow)
    score: float | None         # retrieval score, rounded; None: pinned by the story
    notes: list[str]            # the fallbacks retrieval took, for the manifest and the log


def choose_clips(story: Story, index, embedder, preset=None) -> list[ClipChoice]:
    """One source clip per plot: pinned, or the best unused clip that is long enough (motion preferred).

    Falls back step by step (any motion, any length, a reused clip) and says so in the choice's notes.
    Plots of one background group (story.consistency["backgrounds"]) prefer clips of the source video
    the group's first plot got, when it has fitting unused clips (retrieval/groups.py).
    """
    used: set[int] = set()
    choices = []
    group_of = {j: name for name, members in story.consistency.get("backgrounds", {}).items() for j in members}
    group_video: dict[str, str] = {}
    for i, plot in enumerate(story.plots):
        if plot.clip is not None:
            choice = ClipChoice(index.clip(plot.clip), None, [f"clip {plot.clip} pinned by the story"])
        else:
            choice = _retrieve(story, i, index, embedder, preset, used, group_video.get(group_of.get(i)))
        used.add(choice.clip.clip_id)
        if i in group_of:
            if plot.clip is None and choice.clip.video == group_video.get(group_of[i]):
                choice.notes.append(f"background group {group_of[i]!r}: same source video as its first plot")
            group_video.setdefault(group_of[i], choice.clip.video)
        choices.append(choice)
    return choices


def _retrieve(story: Story, i: int, index, embedder, preset, used: set[int], group_video: str | None) -> ClipChoice:
    """Plot `i`'s best clip not in `used` (from `group_video` when that has one), with the fallbacks taken."""
    from storyreel.retrieval import prefer_video, search

    settings = resolved_plot_settings(story, i, preset)
    seconds = settings["frames"] / settings["fps"] * settings["speed"]  # the source seconds one clip plays
    attempts = [(settings["motion"], seconds, None),
                (None, seconds, f"no unused clip with motion {settings['motion']!r}; any motion"),
                (None, None, f"no unused clip of at least {seconds:g} s; any length")]
    if settings["motion"] is None:
        attempts = attempts[1:]
    notes = []
    for attempt, (motion, min_seconds, fallback_note) in enumerate(attempts):
        if attempt > 0:  # the attempt before found nothing: say which fallback follows
            notes.append(fallback_note)
        hits = search(index, text=settings["query"], k=RETRIEVAL_POOL, motion=motion, min_seconds=min_seconds,
                      embedder=embedder)
        unused = prefer_video([h for h in hits if h.clip.clip_id not in used], group_video)
        if unused:
            return ClipChoice(unused[0].clip, round(float(unused[0].score), 6), notes)
    # Every fitting clip is taken: reuse the best one, and say so.
    hits = search(index, text=settings["query"], k=1, embedder=embedder)
    if not hits:
        raise UserError(f"index {index.path} has no clips to render plot {i} from; "
                        f"add videos with `storyreel index build VIDEO_DIR --index {index.path}`")
    notes.append(f"clip {hits[0].clip.clip_id} reused: no unused clip fits plot {i}")
    return ClipChoice(hits[0].clip, round(float(hits[0].score), 6), notes)


def clip_exists(index, clip_id: int) -> bool:
    """Whether `index` holds clip `clip_id`."""
    try:
        index.clip(clip_id)
        return True
    except UserError:
        return False
