"""Local pre-flight checks (imagegen.preflight): folders that can or cannot take files, probed without
leaving anything behind, and the free space a plan needs."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from imagegen.preflight import estimate_space, folder_problem, human_bytes, space_problem


def listing(folder) -> list[str]:
    return sorted(p.name for p in folder.rglob("*"))


def test_a_writable_folder_and_a_creatable_one_pass_and_nothing_is_left(tmp_path):
    (tmp_path / "existing").mkdir()
    assert folder_problem(tmp_path / "existing") is None
    assert folder_problem(tmp_path / "new" / "deeper") is None
    assert listing(tmp_path) == ["existing"]


def test_a_file_is_not_a_folder_nor_a_parent_of_one(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert folder_problem(afile) == f"{afile} is a file, not a folder"
    assert folder_problem(afile / "a" / "b") == f"{afile / 'a' / 'b'} cannot be created: {afile} is a file, not a folder"


def test_a_folder_nothing_can_be_created_in():
    problem = folder_problem(Path("/proc/nonexistent/out"))
    assert problem is not None and problem.startswith("/proc/nonexistent/out cannot be created in /proc (")


class Master(SimpleNamespace):
    pass


def test_the_estimate_counts_each_master_twice_and_each_of_its_targets():
    masters = [Master(asset_id="a", width=1000, height=1000), Master(asset_id="b", width=100, height=100)]
    targets = {"a": [SimpleNamespace(width=10, height=10)] * 3, "b": []}
    estimate = estimate_space(masters, targets)
    per_file = 64 * 1024
    assert (estimate.masters, estimate.files) == (2, 7)
    assert estimate.bytes == 2 * (3_000_000 + per_file) + 2 * (30_000 + per_file) + 3 * (300 + per_file)
    assert estimate.needed > estimate.bytes
    assert "2 master(s), 7 file(s)" in estimate.describe()


def test_space_problem_says_what_is_free_and_what_is_needed(tmp_path, monkeypatch):
    estimate = estimate_space([Master(asset_id="a", width=2048, height=2048)], {})
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(free=estimate.needed))
    assert space_problem(tmp_path / "out", estimate) is None
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(free=estimate.needed - 1))
    problem = space_problem(tmp_path / "out", estimate)
    assert problem is not None and problem.startswith(f"not enough free space: {human_bytes(estimate.needed - 1)} "
                                                      f"free on the disk of {tmp_path}, the planned files need about ")


@pytest.mark.parametrize("count, text", [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KB"), (5 * 2**20, "5.0 MB"),
                                         (3 * 2**30, "3.0 GB"), (2**42, "4096.0 GB")])
def test_human_bytes(count, text):
    assert human_bytes(count) == text
