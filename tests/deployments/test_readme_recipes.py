"""The README's operator recipe, executed as written: every line of its shell block runs as it stands
(the two lines marked "terminal 1/2" are long-running, so they run in the background, as a second
terminal would), then an ad-hoc run started with the README's `prefect deployment run` completes.

The recipe names port 4200, so this test needs that port free; everything else (PREFECT_HOME, the
output folder) is the test's own.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import time
import uuid

import httpx
import pytest

from tests.deployments.conftest import BIN, REPO, Server, _base_env, _write_brief, stop, tail, wait_for

pytestmark = pytest.mark.prefect


def readme_block_after(marker: str) -> list[tuple[str, str]]:
    """(command, comment) per line of the first ```bash block after `marker`; comment-only lines dropped."""
    text = (REPO / "README.md").read_text()
    block = text.split(marker, 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    lines = []
    for raw in block.splitlines():
        command, _, comment = raw.partition("  #")
        if command.strip():
            lines.append((command.strip(), comment.strip()))
    return lines


def test_operators_recipe_runs_as_written_and_an_adhoc_run_completes(tmp_path):
    lines = readme_block_after("From a checkout on the machine that runs the worker:")
    env = _base_env(tmp_path / "home")
    (tmp_path / "home").mkdir()
    background: list[subprocess.Popen] = []
    try:
        for command, comment in lines:
            if command.startswith("export "):
                name, _, value = command.removeprefix("export ").partition("=")
                env[name] = value
                continue
            argv = shlex.split(command)
            if "terminal" in comment:  # a long-running command in a terminal of its own
                log = tmp_path / f"{argv[1]}.log"
                background.append(Server.spawn(argv, log, cwd=REPO, env=dict(env)))
                if "server" in argv:
                    wait_for(lambda: _healthy(background[-1], log), 120, what="the README's prefect server",
                             diagnostics=lambda: tail(log))
                continue
            done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=240,
                                  stdin=subprocess.DEVNULL)
            assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"

        # the table's ad-hoc recipe, with a real brief in place of /path/or/url.yaml
        table = (REPO / "README.md").read_text()
        recipe = re.search(r"by hand: `(prefect deployment run imagegen-campaign/adhoc --param brief=)"
                           r"/path/or/url\.yaml`", table)
        assert recipe, "the README's ad-hoc recipe changed: update this test with it"
        brief = _write_brief(tmp_path / "brief", campaign=f"readme-{uuid.uuid4().hex[:6]}")
        out = tmp_path / "out"
        argv = [str(BIN / "prefect"), *shlex.split(recipe.group(1) + str(brief))[1:], "--param", f"out_dir={out}",
                "--watch"]
        done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
                              stdin=subprocess.DEVNULL)
        assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n" + "\n".join(
            tail(tmp_path / f"{p.args[1]}.log") for p in background)
        assert "Completed" in done.stdout
        assert list((out / "assets").rglob("*.webp"))
    finally:
        for process in reversed(background):
            with contextlib.suppress(Exception):
                stop(process, grace=15)


def _healthy(process: subprocess.Popen, log) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"the README's server exited with {process.returncode}\n{tail(log)}")
    try:
        return httpx.get("http://127.0.0.1:4200/api/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_artifacts_recipe_runs_as_written(tmp_path):
    """The README's "see the run's artifacts in the UI" block, run by bash as one script in a folder laid
    out like the checkout (its .venv and examples), then the artifacts are on the server it started."""
    text = (REPO / "README.md").read_text()
    script = text.split("start a\nserver and point the run at it:", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    for name in (".venv", "examples"):
        (tmp_path / name).symlink_to(REPO / name)
    (tmp_path / "home").mkdir()
    log = tmp_path / "recipe.log"
    process = Server.spawn(["bash", "-c", script], log, cwd=tmp_path, env=_base_env(tmp_path / "home"))
    try:
        code = process.wait(timeout=600)
        assert code == 0, tail(log, 40)
        response = httpx.post("http://127.0.0.1:4200/api/artifacts/filter", json={"limit": 50}, timeout=10)
        keys = {a["key"] for a in response.json()}
        assert {"spring-launch-assets", "spring-launch-summary"} <= keys
        assert (tmp_path / "imagegen-output" / "index.html").is_file()
    finally:
        stop_group(process.pid)  # bash has exited; its background server is still in its process group


def stop_group(pgid: int) -> None:
    for sig, pause in ((signal.SIGTERM, 10), (signal.SIGKILL, 0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
            deadline = time.monotonic() + pause
            while time.monotonic() < deadline:
                os.killpg(pgid, 0)  # raises ProcessLookupError once the group is gone
                time.sleep(0.2)
