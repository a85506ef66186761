import subprocess
import sys

from storyreel.core.errors import UserError
from storyreel.core.models import resolve_preset


def test_help_lists_every_package_command(run_cli):
    proc = run_cli("--help", check=True)
    assert "usage: storyreel" in proc.stdout
    listed = {line.split()[0] for line in proc.stdout.split("COMMAND\n", 1)[1].split("\n\n")[0].splitlines()
              if line.startswith("    ") and not line.startswith("      ")}
    assert listed >= {"index", "search", "depth", "generate", "character", "eval", "plan", "render", "demo"}


def test_console_entry_point_in_a_real_process(tmp_path):
    """The one CLI test that starts a process: `python -m storyreel` from outside the repo, exit status
    and the one-line error included (the other CLI tests call `storyreel.cli.main` in-process)."""
    proc = subprocess.run([sys.executable, "-m", "storyreel", "index", "stats", "--index", str(tmp_path / "none")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("storyreel: error: ")
    assert "is not a storyreel index" in proc.stderr


def test_bad_usage_exits_2(run_cli):
    proc = run_cli("no-such-command")
    assert proc.returncode == 2


def test_preset_resolution(monkeypatch):
    monkeypatch.delenv("STORYREEL_MODELS", raising=False)
    assert resolve_preset(None) == "default"
    monkeypatch.setenv("STORYREEL_MODELS", "tiny")
    assert resolve_preset(None) == "tiny"
    assert resolve_preset("default") == "default"
    try:
        resolve_preset("huge")
    except UserError as err:
        assert "unknown model preset 'huge'" in str(err)
    else:
        raise AssertionError("unknown preset accepted")


def test_usage_errors_found_after_parsing_exit_2(run_cli, tmp_path):
    proc = run_cli("index", "build", tmp_path, "--index", tmp_path / "idx", "--workers", "0")
    assert proc.returncode == 2
    assert proc.stderr == "storyreel: error: --workers must be at least 1\n"
