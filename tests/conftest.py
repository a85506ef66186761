"""Shared test helpers. Every test is offline: tiny presets, synthetic videos made by the tests."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import traceback
import warnings
from pathlib import Path

import pytest

# One torch/OpenMP thread per process: tiny models gain nothing from more, and on a shared 2-core
# machine oversubscribed threads made single tests 10x slower. Set before torch is imported;
# the few subprocesses the tests still start inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Presets of the person running the tests (~/.config/storyreel/presets) stay out of them.
os.environ["STORYREEL_PRESETS"] = str(Path(__file__).resolve().parent / "no-user-presets")

REPO = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def process_state_restored():
    """Undo what one in-process command leaves behind that a separate process would have taken with
    it: environment variables, working directory, logger levels, warning filters and, once torch is
    loaded, its RNG state, thread count, grad mode and default dtype."""
    env, cwd = dict(os.environ), os.getcwd()
    levels = {name: logger.level for name, logger in logging.Logger.manager.loggerDict.items()
              if isinstance(logger, logging.Logger)}
    root_level = logging.getLogger().level
    torch = sys.modules.get("torch")
    torch_state = _torch_state(torch) if torch else None
    try:
        with warnings.catch_warnings():
            yield
    finally:
        os.environ.clear()
        os.environ.update(env)
        os.chdir(cwd)
        logging.getLogger().setLevel(root_level)
        for name, level in levels.items():  # loggers a library created meanwhile keep the level it chose
            logging.getLogger(name).setLevel(level)
        if torch_state is not None:
            rng, threads, grad, dtype = torch_state
            torch.random.set_rng_state(rng)
            torch.set_num_threads(threads)
            torch.set_grad_enabled(grad)
            torch.set_default_dtype(dtype)


def _torch_state(torch):
    return torch.random.get_rng_state(), torch.get_num_threads(), torch.is_grad_enabled(), torch.get_default_dtype()


def exit_status(err: SystemExit) -> int:
    """The status a process would exit with after `raise SystemExit(code)` (a message goes to stderr)."""
    if err.code is None:
        return 0
    if isinstance(err.code, int):
        return err.code
    print(err.code, file=sys.stderr)
    return 1


@pytest.fixture
def run_cli(capfd):
    """Run `storyreel ARGS...` in this process: `storyreel.cli.main(argv)` with the working directory at
    the repo and `env` applied, stdout/stderr captured at the file-descriptor level (so output of
    child processes such as ffmpeg counts too), SystemExit turned into the exit status and an uncaught
    exception into status 1 plus its traceback on stderr, as the real process would.

    Returns a CompletedProcess (text) like the `subprocess.run` this replaces: `.returncode`, `.stdout`,
    `.stderr`. `timeout` is accepted for that call's signature and ignored. Only what this command
    printed is in the result; output the test printed before is dropped. Environment variables are
    seen by code that reads them at call time (STORYREEL_MODELS, ...); ones that libraries read at
    import (HF_HOME, OMP_NUM_THREADS) need the test to patch the library instead.
    tests/test_cli.py keeps one real subprocess of `python -m storyreel`."""

    def run(*args, check: bool = False, timeout: float | None = None, env: dict | None = None):
        from storyreel.cli import main

        argv = [str(a) for a in args]
        capfd.readouterr()
        with process_state_restored():
            os.environ.update({k: str(v) for k, v in (env or {}).items()})
            os.chdir(REPO)
            try:
                code = main(argv)
            except SystemExit as err:
                code = exit_status(err)
            except Exception:  # noqa: BLE001 - a crashing command is a result to assert on, like a process's
                traceback.print_exc()
                code = 1
            sys.stdout.flush()
            sys.stderr.flush()
        out, err = capfd.readouterr()
        proc = subprocess.CompletedProcess(["storyreel", *argv], code, out, err)
        if check and proc.returncode != 0:
            raise AssertionError(f"storyreel {' '.join(argv)} -> {proc.returncode}\n{proc.stderr}")
        return proc

    return run


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache folder that huggingface_hub looks in for this test."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch on one thread for a module's tests (modules opt in with `pytestmark`), whatever
    OMP_NUM_THREADS the caller set: on a shared 2-core machine torch's default pool oversubscribes."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def embedder():
    """The tiny CLIP (built in code, fixed seed), one per test module."""
    from storyreel.index.embed import load_clip

    return load_clip("tiny")


@pytest.fixture
def story_error():
    """`story_error(folder, text)`: load_story's error for a story file holding `text`, which must be
    one line; the file's path is shown as S."""
    from storyreel.core.errors import UserError
    from storyreel.story import load_story

    def error(folder: Path, text: str) -> str:
        path = folder / "story.yaml"
        path.write_text(text)
        with pytest.raises(UserError) as info:
            load_story(path)
        message = str(info.value)
        assert "\n" not in message
        return message.replace(str(path), "S")

    return error
