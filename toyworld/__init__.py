"""A procedural toy world with ground truth, for training and checking tiny models (numpy only).

Scenes (grass field, beach, night sky, room), objects (shape × colour × texture), camera moves with
the project's motion labels, per-pixel depth and a caption per clip; plus held-out characters whose
photos are only for personalization. Everything is deterministic from a seed and fast at 64 px.

    truths = write_world("world/", clips=200, seed=0)     # mp4 + truth JSON + depth .npz per clip
    spec = draw_clip([0, 5], motion="pan-left")          # one clip's truth, not yet drawn
    clip = render_clip(spec)                             # frames, depth, ids, boxes per frame
    caption(spec)                                        # "a red striped circle on a beach, the camera pans left"
    photos = character_images("pip", 12, seed=0)         # training photos for `character train`

Modules: noise.py (procedural noise at any world point), scenes.py (backgrounds and their depth ramp),
sprites.py (objects, depth layering, boxes), characters.py, clips.py (camera, rendering, captions),
world.py (writing a world to disk).
"""

from storyreel.toyworld.characters import CHARACTERS, character_images, write_character_photos
from storyreel.toyworld.clips import (
    CAMERA_MOTIONS,
    ClipSpec,
    RenderedClip,
    WorldObject,
    camera_path,
    caption,
    draw_clip,
    render_clip,
)
from storyreel.toyworld.scenes import SCENES, background, background_depth
from storyreel.toyworld.sprites import COLOURS, SHAPES, TEXTURES, shade
from storyreel.toyworld.world import held_out_clips, write_world

__all__ = ["CAMERA_MOTIONS", "CHARACTERS", "COLOURS", "SCENES", "SHAPES", "TEXTURES", "ClipSpec", "RenderedClip",
           "WorldObject", "background", "background_depth", "camera_path", "caption", "character_images",
           "draw_clip", "held_out_clips", "render_clip", "shade", "write_character_photos", "write_world"]
