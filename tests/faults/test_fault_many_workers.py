"""Several workers on one provider account, as on several machines: `imagegen run` processes with their
own PREFECT_HOME (so no shared generation cache) and their own `--out` (so no shared disk), one Prefect
API, and one PostgreSQL catalog, whose database then also holds the paid-call ledger and the masters.

- Same brief in three processes at once: each master is paid for once in total, every process ends
  with every master on its own disk, one catalog row per (campaign, asset, variant), every run exits 0.
- A process killed with SIGKILL while it holds claims (its requests held at the provider): the others
  wait for its leases, take its masters over once the leases have passed, and finish them. The only
  calls paid twice are the ones the dead process had in flight, which the provider bills anyway.
- Different briefs in three processes on one account whose provider answers 429 over its limit: the
  runs take their turns from one schedule in the catalog's database (a pause on the account holds them
  all), and the provider never says 429.
- Same brief published to GitLab by three processes: each file is uploaded once in total (the upload
  index is the catalog's `gitlab_uploads` table), one catalog row per file.
- Two briefs on one daily image budget (IMAGEGEN_NVIDIA_IMAGES_PER_DAY) at once: together they never
  pass it; the run that would stops before spending, saying how many are left and when the day resets;
  a rerun whose masters the ledger holds needs none of it.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import psycopg
import pytest

from imagegen.models import sha256_file
from tests.emulators.gitlab import PROJECT_ID
from tests.faults.conftest import (
    NVIDIA_KEY,
    imagegen_env,
    kill_group,
    master_files,
    spawn_run,
    summary_from_log,
    tail,
    wait_for,
    write_brief,
)
from tests.stores import conftest as store_fixtures

pytestmark = pytest.mark.prefect

# The store tests' throwaway PostgreSQL, as fixtures of this module.
postgres_server_dsn = store_fixtures.postgres_server_dsn
postgres_dsn = store_fixtures.postgres_dsn
gitlab_emu = store_fixtures.gitlab_emu

LEASE_SECONDS = "4"  # IMAGEGEN_LEDGER_LEASE_SECONDS: a killed worker's claims pass in seconds, not 2 minutes


def catalog_keys(dsn: str) -> Counter:
    with psycopg.connect(dsn) as conn:
        return Counter(conn.execute("SELECT campaign, asset_id, variant FROM media_assets").fetchall())


def recorded_masters(dsn: str) -> int:
    """Generations recorded in the shared ledger (entries with a value; a table not made yet holds none)."""
    with psycopg.connect(dsn) as conn:
        if conn.execute("SELECT to_regclass('imagegen_ledger')").fetchone()[0] is None:
            return 0
        return conn.execute("SELECT count(*) FROM imagegen_ledger "
                            "WHERE kind = 'GeneratedImage' AND value IS NOT NULL").fetchone()[0]


def masters_by_sha(out: Path) -> set[str]:
    return {sha256_file(path) for path in master_files(out)}


def worker(tmp_path: Path, name: str, api_url: str, dsn: str, **extra: str) -> tuple[Path, dict[str, str], Path]:
    """(out folder, environment, log) of the worker "machine" `name`."""
    env = imagegen_env(api_url, tmp_path / f"home-{name}", IMAGEGEN_CATALOG_URL=dsn,
                       IMAGEGEN_LEDGER_LEASE_SECONDS=LEASE_SECONDS, **extra)
    return tmp_path / f"out-{name}", env, tmp_path / f"run-{name}.log"


def test_three_workers_on_one_brief_pay_for_each_master_once(api_url, nvidia, postgres_dsn, tmp_path):
    nvidia.faults.slow = 2.0  # the three runs' generations overlap whatever their start skew
    brief = write_brief(tmp_path, "many-workers", provider={"name": "nvidia"},
                        subjects=[{"subject": "a glass teapot", "seed": 5151, "variations": 4}])
    machines = [worker(tmp_path, name, api_url, postgres_dsn) for name in "abc"]
    runs = [spawn_run(brief, out, env, log) for out, env, log in machines]
    try:
        codes = [run.wait(timeout=300) for run in runs]
    finally:
        for run in runs:
            kill_group(run)
    diagnostics = "\n".join(tail(log) for _, _, log in machines)
    assert codes == [0, 0, 0], diagnostics
    summaries = [summary_from_log(log) for _, _, log in machines]

    assert nvidia.spent == 4, f"paid {nvidia.spent} times for 4 masters (per run: " \
                              f"{[s['provider_calls'] for s in summaries]})\n{diagnostics}"
    assert sum(s["provider_calls"] for s in summaries) == 4
    assert all(s["generated"] == 4 for s in summaries), summaries
    shas = [masters_by_sha(out) for out, _, _ in machines]
    assert len(shas[0]) == 4 and shas[0] == shas[1] == shas[2], "every machine holds the same 4 masters"
    keys = catalog_keys(postgres_dsn)
    assert {n for n in keys.values()} == {1}, f"duplicate catalog rows: {[k for k, n in keys.items() if n > 1]}"
    assert len({asset for _, asset, _ in keys}) == 4


def test_a_worker_killed_holding_claims_is_taken_over_after_its_lease(api_url, nvidia, postgres_dsn, tmp_path):
    """K pays for 1 master, then its 3 other requests wait at the provider (held) while it holds their
    claims. B and C start, fetch K's finished master and wait on K's leases without paying. K is killed;
    once its leases pass, B and C make the 3 masters (each once). The provider bills K's 3 requests too
    (they were running when K died): 4 + 3 calls, exactly."""
    nvidia.hold_after = 1
    nvidia.bill_held = True
    brief = write_brief(tmp_path, "killed-worker", provider={"name": "nvidia"},
                        subjects=[{"subject": "a copper kettle", "seed": 6161, "variations": 4}])
    (out_k, env_k, log_k), *others = [worker(tmp_path, name, api_url, postgres_dsn) for name in "kbc"]
    killed = spawn_run(brief, out_k, env_k, log_k)
    runs = []
    try:
        wait_for(lambda: nvidia.held == 3 and recorded_masters(postgres_dsn) == 1, 180,
                 "1 master recorded and 3 requests held for the worker about to be killed",
                 diagnostics=lambda: tail(log_k))
        runs = [spawn_run(brief, out, env, log) for out, env, log in others]
        # both found K's finished master in the database (it is on their disks) and wait on its claims
        wait_for(lambda: all(len(master_files(out)) >= 1 for out, _, _ in others), 180,
                 "the first master fetched by both other workers",
                 diagnostics=lambda: "\n".join(tail(log) for _, _, log in others))
        assert nvidia.held == 3 and nvidia.spent == 1, "a worker paid for a master another worker had claimed"
        nvidia.hold_after = None  # requests from now on are answered
        kill_group(killed)
        codes = [run.wait(timeout=300) for run in runs]
    finally:
        kill_group(killed)
        for run in runs:
            kill_group(run)
    diagnostics = "\n".join(tail(log) for _, _, log in others)
    assert codes == [0, 0], diagnostics
    summaries = [summary_from_log(log) for _, _, log in others]
    assert sum(s["provider_calls"] for s in summaries) == 3, summaries  # K's 3 held masters, once each
    assert all(s["generated"] == 4 and not s["failed"] for s in summaries), summaries

    nvidia.release()  # the dead worker's requests finish at the provider, billed
    wait_for(lambda: nvidia.spent == 7, 30, "the 3 held requests billed", diagnostics=lambda: str(nvidia.spent))
    assert nvidia.spent == 4 + 3
    shas = [masters_by_sha(out) for out, _, _ in others]
    assert len(shas[0]) == 4 and shas[0] == shas[1]
    assert recorded_masters(postgres_dsn) == 4
    keys = catalog_keys(postgres_dsn)
    assert set(keys.values()) == {1} and len({asset for _, asset, _ in keys}) == 4


def test_three_workers_on_different_briefs_share_the_account_s_pace(api_url, nvidia, postgres_dsn, tmp_path):
    """Each run alone keeps IMAGEGEN_NVIDIA_RATE_PER_MINUTE (120/min: a turn every ~0.5 s); the provider
    allows 13 requests in any 5 s (156/min, room for the pacer's jitter but not for a second run's turns).
    The account starts paused (another worker's 429 said Retry-After: 20 s), so the three runs, started
    together, all queue behind the pause whatever their start skew, then share one pace: 24 requests,
    none before the pause ends, 0 x 429."""
    from imagegen.postgres_pacing import PostgresPacing
    from imagegen.providers.nvidia import nvidia_account_key

    nvidia.faults.rate_limit, nvidia.faults.rate_window = 13, 5.0
    pacing = PostgresPacing(postgres_dsn)
    try:
        pacing.prepare()
        pacing.pause(nvidia_account_key(NVIDIA_KEY), 20.0)
        pause_ends = time.monotonic() + 20.0
    finally:
        pacing.close()
    subjects = ["a glass teapot", "a copper kettle", "a paper lantern"]
    machines = []
    for name, subject in zip("abc", subjects):
        brief = write_brief(tmp_path / name, f"pace-{name}", provider={"name": "nvidia"},
                            subjects=[{"subject": subject, "seed": 7171, "variations": 8}])
        out, env, log = worker(tmp_path, name, api_url, postgres_dsn)
        env["IMAGEGEN_NVIDIA_RATE_PER_MINUTE"] = "120"
        machines.append((brief, out, env, log))
    runs = [spawn_run(brief, out, env, log) for brief, out, env, log in machines]
    try:
        codes = [run.wait(timeout=300) for run in runs]
    finally:
        for run in runs:
            kill_group(run)
    diagnostics = "\n".join(tail(log) for _, _, _, log in machines)
    assert codes == [0, 0, 0], diagnostics
    summaries = [summary_from_log(log) for _, _, _, log in machines]
    assert all(s["generated"] == 8 and s["provider_calls"] == 8 for s in summaries), summaries

    assert nvidia.statuses[429] == 0, f"{nvidia.statuses[429]} answers 429 (max {nvidia.max_in_window()} in 5 s)"
    assert nvidia.spent == 24 and nvidia.max_in_window() <= 13
    early = [round(pause_ends - t, 2) for t in nvidia.arrivals if t < pause_ends - 0.5]
    assert not early, f"requests sent during the account's pause (seconds before its end): {early}"
    with psycopg.connect(postgres_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM imagegen_pacing").fetchone()[0] == 1  # one account, one row


def run_all(machines: list[tuple[Path, dict[str, str], Path]], brief: Path) -> list[int]:
    runs = [spawn_run(brief, out, env, log) for out, env, log in machines]
    try:
        return [run.wait(timeout=300) for run in runs]
    finally:
        for run in runs:
            kill_group(run)


def test_three_workers_publishing_one_brief_to_gitlab_upload_each_file_once(api_url, nvidia, postgres_dsn,
                                                                             gitlab_emu, tmp_path):
    gitlab, gitlab_url = gitlab_emu
    nvidia.faults.slow = 1.0  # the runs' generations, and so their publishes, overlap
    gitlab.faults.delay_seconds = 0.2
    brief = write_brief(tmp_path, "many-uploads", provider={"name": "nvidia"},
                        subjects=[{"subject": "a brass desk lamp", "seed": 7171, "variations": 3}],
                        publish={"small_store": "gitlab", "large_store": "gitlab"})
    machines = [worker(tmp_path, name, api_url, postgres_dsn, GITLAB_URL=gitlab_url,
                       GITLAB_TOKEN=store_fixtures.GITLAB_TOKEN, IMAGEGEN_GITLAB_PROJECT=str(PROJECT_ID))
                for name in "abc"]
    codes = run_all(machines, brief)
    diagnostics = "\n".join(tail(log) for _, _, log in machines)
    assert codes == [0, 0, 0], diagnostics

    with psycopg.connect(postgres_dsn) as conn:
        files = conn.execute("SELECT store, store_key, url FROM media_assets").fetchall()
        index = conn.execute("SELECT path, url FROM gitlab_uploads").fetchall()
    assert files and {store for store, _, _ in files} == {"gitlab"}
    assert len({key for _, key, _ in files}) == len(files), "one catalog row per file"
    uploads = gitlab.calls_to("POST", "/uploads")
    assert len(uploads) == len(files) == len(gitlab.uploads), \
        f"{len(uploads)} uploads for {len(files)} files\n{diagnostics}"
    assert sorted(index) == sorted((key, url) for _, key, url in files), "the index names every catalogued upload"
    assert not any((out / "gitlab-uploads.json").exists() for out, _, _ in machines), "the index is the database's"
    assert nvidia.spent == 3


def test_runs_on_one_daily_budget_never_pass_it_and_the_one_that_would_stops_before_spending(
        api_url, nvidia, postgres_dsn, tmp_path):
    nvidia.faults.slow = 0.5
    briefs = [write_brief(tmp_path, f"daily-{name}", provider={"name": "nvidia"},
                          subjects=[{"subject": f"a {name} teacup", "seed": 8181, "variations": 3}])
              for name in ("red", "blue")]
    machines = [worker(tmp_path, name, api_url, postgres_dsn, IMAGEGEN_NVIDIA_IMAGES_PER_DAY="4") for name in "ab"]
    runs = [spawn_run(brief, out, env, log) for brief, (out, env, log) in zip(briefs, machines)]
    try:
        codes = [run.wait(timeout=300) for run in runs]
    finally:
        for run in runs:
            kill_group(run)
    diagnostics = "\n".join(tail(log) for _, _, log in machines)
    assert sorted(codes) == [0, 1], diagnostics
    assert nvidia.spent == 3, f"paid {nvidia.spent} images on a budget of 4 with 3 + 3 asked\n{diagnostics}"
    stopped = machines[codes.index(1)][2].read_text(errors="replace")
    refusal = [line for line in stopped.splitlines() if line.startswith("error: ")]
    assert len(refusal) == 1 and "IMAGEGEN_NVIDIA_IMAGES_PER_DAY" in refusal[0], stopped[-3000:]
    assert "needs 3 new nvidia image(s) but 1 of 4 are left today" in refusal[0]
    assert "00:00 UTC" in refusal[0] and "nothing was sent" in refusal[0]
    with psycopg.connect(postgres_dsn) as conn:
        assert conn.execute("SELECT sum(images) FROM imagegen_daily_images").fetchone()[0] == 3
        assert conn.execute("SELECT count(*) FROM imagegen_image_reservations").fetchone()[0] == 0, \
            "both runs gave their reservations back"

    done = briefs[codes.index(0)]  # its masters are in the shared ledger: a rerun elsewhere is free
    out, env, log = worker(tmp_path, "c", api_url, postgres_dsn, IMAGEGEN_NVIDIA_IMAGES_PER_DAY="4")
    assert run_all([(out, env, log)], done) == [0], tail(log)
    assert nvidia.spent == 3 and summary_from_log(log)["provider_calls"] == 0
