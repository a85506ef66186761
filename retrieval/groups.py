"""Re-rank for consistency groups: plots that share a background (a VideoDirectorGPT background
group) should look like one place, so their source clips should come from one source video.

    hits = prefer_video(search(index, text=query, k=50), "/videos/park.mp4")

`prefer_video` is additive over `search`: it only reorders hits (clips of the preferred video first,
each part in its score order) and renumbers their ranks; scores are kept as the search gave them.
"""

from __future__ import annotations

import dataclasses

from storyreel.retrieval.query import SearchHit


def prefer_video(hits: list[SearchHit], video: str | None) -> list[SearchHit]:
    """`hits` with the clips of `video` first (order otherwise kept), ranks renumbered from 1."""
    if video is None:
        return list(hits)
    ordered = [h for h in hits if h.clip.video == video] + [h for h in hits if h.clip.video != video]
    return [dataclasses.replace(hit, rank=rank) for rank, hit in enumerate(ordered, start=1)]
