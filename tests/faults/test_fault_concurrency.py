"""Two runs of the same brief at once, as two `imagegen run` processes on one machine: same --out,
same Prefect API (the session server), same PREFECT_HOME (so the same result storage, i.e. the same
generation cache). Neither may double-spend (at most one provider call per master across both runs)
or double-publish (one row per file, no conflict copies, no orphan).

Why this set-up: two processes with one PREFECT_HOME but no PREFECT_API_URL would each start a
temporary server on the same SQLite database; with separate PREFECT_HOMEs the runs would not share a
cache at all, and double-spending would be guaranteed by construction. A shared API and a shared
result storage is how two workers on one host run, and the only set-up where the cache can help.
"""

from __future__ import annotations

import pytest

from tests.faults.conftest import (
    consistency_problems,
    imagegen_env,
    master_files,
    spawn_run,
    summary_from_log,
    tail,
    write_brief,
)

pytestmark = pytest.mark.prefect


def test_two_runs_of_one_brief_at_once_neither_double_spend_nor_double_publish(api_url, nvidia, tmp_path):
    # A slow provider makes the two runs' generate tasks overlap whatever the processes' start skew.
    nvidia.faults.slow = 4.0
    brief = write_brief(tmp_path, "concurrent", provider={"name": "nvidia"},
                        subjects=[{"subject": "a glass teapot", "seed": 9090, "variations": 3}])
    out, home = tmp_path / "out", tmp_path / "home"
    env = imagegen_env(api_url, home)
    logs = [tmp_path / "run-a.log", tmp_path / "run-b.log"]
    runs = [spawn_run(brief, out, env, log) for log in logs]
    codes = [run.wait(timeout=150) for run in runs]
    diagnostics = "\n".join(tail(log) for log in logs)
    assert codes == [0, 0], diagnostics
    summaries = [summary_from_log(log) for log in logs]

    problems = consistency_problems(out, masters=3)
    if len(master_files(out)) != 3:
        problems.append(f"{len(master_files(out))} master files for 3 masters")
    calls = [s["provider_calls"] for s in summaries]
    if nvidia.spent != 3:
        problems.append(f"double spend: the provider was paid {nvidia.spent} times for 3 masters "
                        f"(provider calls per run: {calls})")
    assert problems == [], "\n".join(problems)
