"""Find pretrained weights on disk: a local path or the Hugging Face cache, never the network.

Every preset that uses real weights resolves them through `hf_file`/`hf_folder`, so a missing
checkpoint always produces the same one-line `MissingWeightsError`.
"""

from __future__ import annotations

import os
from pathlib import Path

from storyreel.core.errors import MissingWeightsError


def hf_cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def hf_file(repo_id: str, filename: str, what: str) -> Path:
    """Path of `filename` from `repo_id` in the local HF cache, or a clear MissingWeightsError."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename)
    if isinstance(found, str) and os.path.exists(found):
        return Path(found)
    raise MissingWeightsError(
        f"missing weights for {what}: {repo_id}/{filename} is not in the Hugging Face cache "
        f"({hf_cache_dir()}); get it with `huggingface-cli download {repo_id} {filename}` "
        f"on a machine with internet (or set HF_HOME), or use --models tiny"
    )


def hf_folder(repo_id: str, what: str, subfolder: str | None = None) -> Path:
    """Local snapshot folder of a diffusers-format repo in the HF cache, or MissingWeightsError."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        root = Path(snapshot_download(repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError):
        root = None
    folder = root / subfolder if (root and subfolder) else root
    if folder is not None and folder.is_dir():
        return folder
    target = f"{repo_id}" + (f" (subfolder {subfolder})" if subfolder else "")
    raise MissingWeightsError(
        f"missing weights for {what}: {target} is not in the Hugging Face cache ({hf_cache_dir()}); "
        f"get it with `huggingface-cli download {repo_id}` on a machine with internet "
        f"(or set HF_HOME), or use --models tiny"
    )
