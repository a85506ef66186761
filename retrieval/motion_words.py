"""Camera-motion words in a query ("pans left", "zooming in", "static shot", "tracking") → motion labels.

A verb of camera movement followed, within a few words, by a direction names one label
("the camera slowly pans to the left" → pan-left). Without a direction, a verb names both labels
of its axis ("a tracking shot" → pan-left or pan-right) if it is unmistakably about the camera:
an -ing form or next to "camera"/"shot" (so "a frying pan" or "a running track" name nothing).
Labels name the camera (CLI.md).
"""

from __future__ import annotations

import re

# verb stem → (axis directions → label); a verb with no direction matches every label of its axis.
_VERBS: dict[str, dict[str, str]] = {
    "pan": {"left": "pan-left", "right": "pan-right"},
    "track": {"left": "pan-left", "right": "pan-right"},
    "truck": {"left": "pan-left", "right": "pan-right"},
    "tilt": {"up": "tilt-up", "down": "tilt-down"},
    "zoom": {"in": "zoom-in", "out": "zoom-out"},
    "push": {"in": "zoom-in"},
    "pull": {"out": "zoom-out"},
    "dolly": {"in": "zoom-in", "out": "zoom-out"},
}
# Spelling variants of a direction word → the direction.
_DIRECTIONS = {
    "left": "left", "leftward": "left", "leftwards": "left",
    "right": "right", "rightward": "right", "rightwards": "right",
    "up": "up", "upward": "up", "upwards": "up",
    "down": "down", "downward": "down", "downwards": "down",
    "in": "in", "into": "in", "closer": "in",
    "out": "out", "back": "out", "away": "out",
}
# Phrases for a still or an erratic camera.
_PHRASES = {
    "static": ("static shot", "static camera", "still shot", "still camera", "locked off", "locked down",
               "fixed camera", "stationary camera", "tripod shot", "no camera movement", "camera does not move"),
    "dynamic": ("handheld", "hand held", "shaky camera", "shaky cam", "camera shake"),
}
_LOOKAHEAD = 4  # words after the verb that may carry its direction
_STEM = {
    form: stem
    for stem, forms in {
        "pan": ("pan", "pans", "panned", "panning"),
        "track": ("track", "tracks", "tracked", "tracking"),
        "truck": ("truck", "trucks", "trucked", "trucking"),
        "tilt": ("tilt", "tilts", "tilted", "tilting"),
        "zoom": ("zoom", "zooms", "zoomed", "zooming"),
        "push": ("push", "pushes", "pushed", "pushing"),
        "pull": ("pull", "pulls", "pulled", "pulling"),
        "dolly": ("dolly", "dollies", "dollied", "dollying"),
    }.items()
    for form in forms
}
_CAMERA_WORDS = ("camera", "shot", "shots")


def motion_in_query(text: str) -> set[str]:
    """Motion labels the query asks for (empty set: the query says nothing about camera motion)."""
    words = re.findall(r"[a-z]+", text.lower())
    joined = " ".join(words)
    labels = {label for label, phrases in _PHRASES.items() if any(f" {p} " in f" {joined} " for p in phrases)}
    for i, word in enumerate(words):
        stem = _STEM.get(word)
        if stem is None:
            continue
        by_direction = _VERBS[stem]
        ahead = [_DIRECTIONS.get(w) for w in words[i + 1:i + 1 + _LOOKAHEAD]]
        direction = next((d for d in ahead if d in by_direction), None)
        if direction is not None:
            labels.add(by_direction[direction])
        elif word.endswith("ing") or any(w in _CAMERA_WORDS for w in words[max(0, i - 2):i + 3]):
            labels.update(by_direction.values())
    return labels
