"""Find pretrained weights on disk: a local path or the Hugging Face cache, never the network.

Every preset that uses real weights resolves them through `hf_file`/`hf_folder`, so a missing
checkpoint always produces the same one-line `MissingWeightsError`: what is missing, where it was
looked for, and the `hf download REPO --include ...` command that fetches only the files needed.

    hf_file("lllyasviel/Annotators", "dpt_hybrid-midas-501f0c75.pt", "depth model dpt_hybrid_384")
    hf_folder("guoyww/animatediff-motion-adapter-v1-5-3", "the motion adapter", MODEL_FILES)
"""

from __future__ import annotations

import os
from pathlib import Path

from storyreel.core.errors import MissingWeightsError

# What one diffusers model folder needs; a weights file may also be there as its fp16 variant
# (`*.fp16.safetensors`), which the loaders then use (generation/components.py).
MODEL_FILES = ("config.json", "diffusion_pytorch_model.safetensors")
# What diffusers needs of an SD1.5-layout repo: its configs, the tokenizer and three weights files
# (not the safety checker, the EMA checkpoints or the single-file copies that make the repo tens of GB).
SD15_FILES = ("*.json", "tokenizer/*", "text_encoder/model.safetensors", "unet/diffusion_pytorch_model.safetensors",
              "vae/diffusion_pytorch_model.safetensors")
# The configs alone: enough to read a single-file checkpoint of that architecture (`--base FILE`).
SD15_CONFIG_FILES = ("*.json", "tokenizer/*")
FETCH_HINT = "on a machine with internet (or set HF_HOME), or use --models toy"


def hf_cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def fetch_command(repo_id: str, files) -> str:
    """The `hf download` command that fetches only `files` (names or glob patterns) of `repo_id`."""
    quoted = [f'"{f}"' if any(ch in f for ch in "*?[") else f for f in files]
    return f"hf download {repo_id} --include {' '.join(quoted)}"


def hf_file(repo_id: str, filename: str, what: str) -> Path:
    """Path of `filename` from `repo_id` in the local HF cache, or a clear MissingWeightsError."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename)
    if isinstance(found, str) and os.path.exists(found):
        return Path(found)
    raise MissingWeightsError(
        f"missing weights for {what}: {repo_id}/{filename} is not in the Hugging Face cache "
        f"({hf_cache_dir()}); get it with `{fetch_command(repo_id, [filename])}` {FETCH_HINT}"
    )


def fp16_variant(name: str) -> str:
    """`unet/diffusion_pytorch_model.safetensors` -> `unet/diffusion_pytorch_model.fp16.safetensors`."""
    stem, dot, suffix = name.rpartition(".")
    return f"{stem}.fp16.{suffix}" if dot else name


def missing_files(folder: Path, files) -> list[str]:
    """Entries of `files` (names or glob patterns, relative to `folder`) with nothing there; a weights
    file counts as present when its fp16 variant is."""
    missing = []
    for pattern in files:
        if any(ch in pattern for ch in "*?["):
            if not any(folder.glob(pattern)):
                missing.append(pattern)
        elif not (folder / pattern).is_file() and not (folder / fp16_variant(pattern)).is_file():
            missing.append(pattern)
    return missing


def hf_folder(repo_id: str, what: str, files=MODEL_FILES, subfolder: str | None = None) -> Path:
    """Local snapshot folder of a diffusers-format repo in the HF cache holding `files`, or MissingWeightsError
    naming the files that are not there."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        root = Path(snapshot_download(repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        root = None
    folder = root / subfolder if (root and subfolder) else root
    inside = [f"{subfolder}/{f}" for f in files] if subfolder else list(files)
    missing = inside if folder is None or not folder.is_dir() else missing_files(root, inside)
    if not missing:
        return folder
    raise MissingWeightsError(
        f"missing weights for {what}: {', '.join(missing)} of {repo_id} not in the Hugging Face cache "
        f"({hf_cache_dir()}); get them with `{fetch_command(repo_id, missing)}` {FETCH_HINT}"
    )
