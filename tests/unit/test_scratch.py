"""Per-run scratch folders: removed on exit, swept when their run died, never while it lives."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from imagegen.scratch import run_scratch, sweep_dead_scratch


def test_folder_exists_while_the_run_lives_and_goes_with_it(tmp_path):
    with run_scratch(tmp_path, "run-a") as folder:
        (folder / "render.png").write_bytes(b"x")
        assert folder.is_dir()
    assert list(tmp_path.iterdir()) == []


def test_removed_even_when_the_run_fails(tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        with run_scratch(tmp_path, "run-a") as folder:
            (folder / "half.jpg").write_bytes(b"x")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_a_live_runs_folder_is_never_swept(tmp_path):
    with run_scratch(tmp_path, "run-a") as folder:
        (folder / "render.png").write_bytes(b"x")
        with run_scratch(tmp_path, "run-b"):  # a concurrent run's start sweeps the root
            assert (folder / "render.png").exists()
        assert sweep_dead_scratch(tmp_path) == []
        assert (folder / "render.png").exists()


def test_a_killed_runs_folder_is_swept_by_the_next_run(tmp_path):
    """The child takes the scratch folder, writes into it and dies by SIGKILL: no cleanup ran."""
    child = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from imagegen.scratch import run_scratch
        with run_scratch(Path({str(tmp_path)!r}), "run-killed") as folder:
            (folder / "render.png").write_bytes(b"x")
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    result = subprocess.run([sys.executable, "-c", child], timeout=60)
    assert result.returncode == -9
    assert (tmp_path / "run-killed" / "render.png").exists()
    (tmp_path / "old-style-asset-abc123").mkdir()  # scratch of a version without locks

    with run_scratch(tmp_path, "run-next"):
        assert sorted(p.name for p in tmp_path.iterdir()) == ["run-next", "run-next.lock"]
    assert list(tmp_path.iterdir()) == []


def test_the_same_name_cannot_be_held_twice(tmp_path):
    with run_scratch(tmp_path, "run-a"):
        with pytest.raises(RuntimeError, match="held by another live run"):
            with run_scratch(tmp_path, "run-a"):
                pass
