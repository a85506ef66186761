"""Query an index: text or image → ranked clips (front door: `storyreel.retrieval.search`).

`search(index_dir_or_index, text=..., image=..., k=5, motion=None, min_seconds=None, max_seconds=None,
video=None)` returns `SearchHit`s (catalog row + score + rank), k of them whenever k clips pass the
filters; `contact_sheet(index, hits, png)` draws them.
`prefer_video(hits, video)` puts one source video's clips first (background consistency groups).
"""

from storyreel.retrieval.groups import prefer_video
from storyreel.retrieval.query import SearchHit, search
from storyreel.retrieval.sheet import contact_sheet

__all__ = ["search", "SearchHit", "contact_sheet", "prefer_video"]
