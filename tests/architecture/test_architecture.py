"""The house rules, checked on every test run: layers, no cycles, lint, types, module size and purpose.

import-linter (grimp) and mypy find packages by walking folders, and `imagegen_flows.*` exists as a folder
only once installed (setuptools maps flows/, tasks/, blocks/, deployments/ into it). So the checks run on
a copy laid out as a wheel installs it, under build/installed-layout, and report paths in the checkout.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
LAYOUT = REPO / "build" / "installed-layout"
# checkout folder -> installed package
PACKAGES = {"imagegen": "imagegen", "imagegen_flows": "imagegen_flows", "flows": "imagegen_flows/flows",
            "tasks": "imagegen_flows/tasks", "blocks": "imagegen_flows/blocks",
            "deployments": "imagegen_flows/deployments"}
MAX_MODULE_LINES = 500


def source_modules() -> list[Path]:
    return sorted(p for folder in PACKAGES for p in (REPO / folder).rglob("*.py") if "__pycache__" not in p.parts)


@pytest.fixture(scope="module")
def layout() -> Path:
    """The installed layout: the packages copied (mtimes kept, so mypy's cache stays warm) under LAYOUT."""
    if LAYOUT.exists():
        shutil.rmtree(LAYOUT / "imagegen", ignore_errors=True)
        shutil.rmtree(LAYOUT / "imagegen_flows", ignore_errors=True)
    for folder, installed in sorted(PACKAGES.items(), key=lambda kv: kv[1].count("/")):
        shutil.copytree(REPO / folder, LAYOUT / installed, copy_function=shutil.copy2, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy2(REPO / "pyproject.toml", LAYOUT / "pyproject.toml")
    return LAYOUT


def in_checkout(text: str) -> str:
    """Rewrite the layout's paths and module names to the checkout's folders, for readable failures."""
    for folder, installed in PACKAGES.items():
        if folder != installed:
            text = text.replace(f"{installed}/", f"{folder}/").replace(installed.replace("/", ".") + ".",
                                                                        f"{folder}.")
    return text


def run_tool(layout: Path, *command: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(layout)}  # the layout's packages win over the editable finder
    return subprocess.run(command, cwd=layout, env=env, capture_output=True, text=True, timeout=600)


def test_import_contracts_layers_no_prefect_in_core_no_cycles(layout):
    done = run_tool(layout, str(BIN / "lint-imports"), "pyproject.toml", "--no-cache")
    assert done.returncode == 0, in_checkout(done.stdout + done.stderr)[-6000:]
    assert "Contracts: 3 kept, 0 broken." in done.stdout


def test_mypy_is_clean_on_the_product_code(layout):
    done = run_tool(layout, str(BIN / "mypy"), "--cache-dir", str(REPO / "build" / "mypy-cache"),
                    "-p", "imagegen", "-p", "imagegen_flows")
    assert done.returncode == 0, in_checkout(done.stdout + done.stderr)[-6000:]
    assert re.search(r"Success: no issues found in \d+ source files", done.stdout)


def test_ruff_is_clean_everywhere():
    done = subprocess.run([str(BIN / "ruff"), "check", "--no-cache", "."], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-6000:]


@pytest.mark.parametrize("path", source_modules(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_module_says_its_job_and_stays_small(path):
    text = path.read_text()
    lines = text.count("\n")
    assert lines <= MAX_MODULE_LINES, f"{path.relative_to(REPO)} has {lines} lines: split it by job"
    if text.strip():
        assert ast.get_docstring(ast.parse(text)), f"{path.relative_to(REPO)} does not start with a docstring"


def test_the_layout_copy_holds_every_module(layout):
    """A guard on the check itself: the copy has every module the checkout has."""
    copied = {p.relative_to(layout).as_posix() for p in layout.rglob("*.py")}
    for path in source_modules():
        rel = path.relative_to(REPO).as_posix()
        top = rel.split("/")[0]
        assert PACKAGES[top] + rel[len(top):] in copied, rel
