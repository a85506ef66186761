"""Character pack files that hold a pack's header and no weights: enough for `load_story`, which reads a
pack's init word (the class word retrieval queries use), not for rendering."""

from pathlib import Path

from safetensors.torch import save_file

from storyreel.generation.characters.pack import PACK_FORMAT


def write_pack_header(path: Path, init_word: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({}, str(path), metadata={"format": PACK_FORMAT, "init_word": init_word})
    return path
