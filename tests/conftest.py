"""Shared test helpers. Every test is offline: tiny presets, synthetic videos made by the tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# One torch/OpenMP thread per process: tiny models gain nothing from more, and on a shared 2-core
# machine oversubscribed threads made single tests 10x slower. Set before torch is imported;
# subprocesses (run_cli) inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def run_cli():
    """Run `storyreel ARGS...` in a real subprocess; returns CompletedProcess (text mode)."""

    def run(*args: str, check: bool = False, timeout: float = 600, env: dict | None = None):
        full_env = {**os.environ, **(env or {})}
        proc = subprocess.run(
            [sys.executable, "-m", "storyreel", *map(str, args)],
            capture_output=True, text=True, timeout=timeout, env=full_env, cwd=REPO,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"storyreel {' '.join(map(str, args))} -> {proc.returncode}\n{proc.stderr}")
        return proc

    return run
