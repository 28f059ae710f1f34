"""The environment is checked before any spend: settings, the output folder, credentials and the catalog.

`imagegen run` answers a wrong environment with exit 1 and one `error:` line naming the variable (or
`--out`, or the brief field that needs it) and the reason, never a traceback and never a secret; a bad
flag exits 2. Nothing is written and the provider gets no generation request. Catalog checks connect
with a short timeout and no retries, so PostgreSQL down or Supabase hanging costs seconds, not the
24-30 s of the write path's retries after the images were made and published.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

# Imported at collection, not first inside a test under capsys: see test_fault_bad_credentials.
import imagegen_flows.flows.campaign  # noqa: F401
from imagegen.catalog.base import PREFLIGHT_CAMPAIGN, schema_sql
from imagegen_flows.deployments.cli import main as cli_main
from imagegen_flows.deployments.cli import validate
from tests.emulators.serve import _free_port
from tests.faults.conftest import write_brief
from tests.stores import conftest as store_fixtures
from tests.stores.conftest import SUPABASE_KEY

SMALL_NVIDIA = {"name": "nvidia", "master_width": 256, "master_height": 256}
SMALL_TARGET = [{"name": "thumb", "platform": "web", "width": 128, "height": 128, "format": "JPEG"}]
PG_PASSWORD = "pg-SENTINEL-password"
CATALOG_SECONDS = 15  # a refused or hanging catalog answers within its 5 s timeout, plus start-up

# The store tests' throwaway PostgreSQL and Supabase emulator, as fixtures of this module.
postgres_server_dsn = store_fixtures.postgres_server_dsn
postgres_dsn = store_fixtures.postgres_dsn
supabase_emulator = store_fixtures.supabase_emulator
supabase_emu = store_fixtures.supabase_emu


def run(capsys, brief: Path, *args: str) -> tuple[int, str]:
    """(exit code, stderr) of `imagegen run BRIEF ARGS --json` in this process."""
    code = cli_main(["run", str(brief), *args, "--json"])
    captured = capsys.readouterr()
    assert captured.out == "", "a refused run printed a summary"
    return code, captured.err


def refusal(code: int, err: str, expected_code: int = 1) -> str:
    """The one `error:` line of a refused run (exit `expected_code`, no traceback)."""
    assert code == expected_code, err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture
def brief(tmp_path) -> Path:
    return write_brief(tmp_path / "briefs", "preflight", provider=SMALL_NVIDIA, targets=SMALL_TARGET)


@pytest.fixture
def out(tmp_path) -> Path:
    return tmp_path / "out"


def assert_untouched(nvidia, *paths: Path) -> None:
    assert sum(nvidia.calls.values()) == 0 and nvidia.spent == 0, f"the provider was asked: {nvidia.calls}"
    for path in paths:
        assert not path.exists(), f"{path} was written by a refused run"


# --------------------------------------------------------------------------- settings

@pytest.mark.parametrize("variable, value, reason", [
    ("IMAGEGEN_LOCAL_MASTER_SIZE", "-5", "must be a whole number from 64 to 8192, got '-5'"),
    ("IMAGEGEN_LOCAL_MASTER_SIZE", "abc", "must be a whole number from 64 to 8192, got 'abc'"),
    ("IMAGEGEN_LOCAL_MASTER_SIZE", "100000", "must be a whole number from 64 to 8192, got '100000'"),
    ("IMAGEGEN_NVIDIA_RATE_PER_MINUTE", "0", "must be a finite number greater than 0, got '0'"),
    ("IMAGEGEN_NEUROFLASH_RATE_PER_MINUTE", "inf", "must be a finite number greater than 0, got 'inf'"),
    ("IMAGEGEN_MAX_PROVIDER_CALLS", "abc", "must be a whole number, 0 or more, got 'abc'"),
    ("IMAGEGEN_MAX_PROVIDER_CALLS", "-1", "must be a whole number, 0 or more, got '-1'"),
])
def test_a_setting_out_of_range_exits_1_naming_the_variable(nvidia, brief, out, capsys, monkeypatch, variable,
                                                            value, reason):
    monkeypatch.setenv(variable, value)
    line = refusal(*run(capsys, brief, "--out", str(out)))
    assert line == f"error: {variable}: {reason}"
    assert_untouched(nvidia, out)


def test_unknown_provider_in_the_environment_exits_1_and_as_a_flag_exits_2(nvidia, brief, out, capsys,
                                                                         monkeypatch):
    monkeypatch.setenv("IMAGEGEN_PROVIDER", "garbage")
    line = refusal(*run(capsys, brief, "--out", str(out)))
    assert line.startswith("error: IMAGEGEN_PROVIDER: unknown provider 'garbage'; known: local, nvidia, nim, ")
    monkeypatch.delenv("IMAGEGEN_PROVIDER")
    line = refusal(*run(capsys, brief, "--out", str(out), "--provider", "garbage"), expected_code=2)
    assert line.startswith("error: --provider: unknown provider 'garbage'; known: local, nvidia, nim, ")
    assert "invalid brief" not in line
    assert_untouched(nvidia, out)


# --------------------------------------------------------------------------- credentials for stores and catalog

@pytest.fixture
def no_supabase(monkeypatch):
    monkeypatch.delenv("SUPABASE_URL", raising=False)
    monkeypatch.delenv("SUPABASE_KEY", raising=False)


def test_catalog_supabase_without_credentials_names_the_variables(nvidia, no_supabase, brief, out, capsys,
                                                                 monkeypatch):
    monkeypatch.setenv("IMAGEGEN_CATALOG_URL", "supabase")
    line = refusal(*run(capsys, brief, "--out", str(out)))
    assert line == ("error: IMAGEGEN_CATALOG_URL: catalog 'supabase' needs SUPABASE_URL and SUPABASE_KEY in "
                    "the environment")
    assert_untouched(nvidia, out)


def test_a_store_without_credentials_is_the_environments_fault_not_the_briefs(nvidia, no_supabase, tmp_path, out,
                                                                              capsys):
    brief = write_brief(tmp_path / "briefs", "preflight-store", provider=SMALL_NVIDIA, targets=SMALL_TARGET,
                        publish={"small_store": "supabase", "large_store": "local"})
    line = refusal(*run(capsys, brief, "--out", str(out)))
    assert line.startswith("error: publish.small_store: store 'supabase' needs SUPABASE_URL and SUPABASE_KEY "
                           "in the environment")
    assert "invalid brief" not in line
    assert_untouched(nvidia, out)


# --------------------------------------------------------------------------- the output folder

def test_out_naming_a_file_exits_1(nvidia, brief, tmp_path, capsys):
    afile = tmp_path / "a-file"
    afile.write_text("not a folder")
    line = refusal(*run(capsys, brief, "--out", str(afile)))
    assert line == f"error: --out: {afile} is a file, not a folder"
    line = refusal(*run(capsys, brief, "--out", str(afile / "inside")))
    assert line == f"error: --out: {afile / 'inside'} cannot be created: {afile} is a file, not a folder"
    assert afile.read_text() == "not a folder"
    assert_untouched(nvidia)


def test_the_output_folder_from_the_environment_is_named_as_such(nvidia, brief, tmp_path, capsys, monkeypatch):
    afile = tmp_path / "a-file"
    afile.write_text("not a folder")
    monkeypatch.setenv("IMAGEGEN_OUTPUT_DIR", str(afile))
    line = refusal(*run(capsys, brief))
    assert line == f"error: IMAGEGEN_OUTPUT_DIR: {afile} is a file, not a folder"
    assert_untouched(nvidia)


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder nobody may write to: root ignores mode bits, not the immutable flag."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"as root a read-only folder needs `chattr +i`, which {folder} refuses: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_a_read_only_output_folder_exits_1(nvidia, brief, read_only_folder, capsys):
    line = refusal(*run(capsys, brief, "--out", str(read_only_folder)))
    assert line.startswith(f"error: --out: folder {read_only_folder} is not writable (")
    assert list(read_only_folder.iterdir()) == []
    line = refusal(*run(capsys, brief, "--out", str(read_only_folder / "sub")))
    assert line.startswith(f"error: --out: {read_only_folder / 'sub'} cannot be created in {read_only_folder} (")
    assert_untouched(nvidia)


def test_a_full_disk_exits_1_saying_the_estimate(nvidia, brief, out, capsys, monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(total=10**9, used=10**9 - 2**20,
                                                                           free=2**20))
    line = refusal(*run(capsys, brief, "--out", str(out)))
    assert line.startswith(f"error: --out: not enough free space: 1.0 MB free on the disk of {out.parent}, the "
                           "planned files need about ")
    assert "2 master(s), 6 file(s)" in line  # two variations, each kept twice and cut into one target
    assert_untouched(nvidia, out)


# --------------------------------------------------------------------------- SQLite catalog

def test_sqlite_catalog_where_nothing_can_be_created(nvidia, brief, out, capsys, monkeypatch):
    monkeypatch.setenv("IMAGEGEN_CATALOG_URL", "sqlite:////proc/nonexistent/x.db")
    line = refusal(*run(capsys, brief, "--out", str(out)))
    assert line.startswith("error: IMAGEGEN_CATALOG_URL: the catalog cannot be used: sqlite catalog "
                           "/proc/nonexistent/x.db: /proc/nonexistent cannot be created in /proc (")
    assert_untouched(nvidia, out)


def test_sqlite_catalog_that_is_a_folder(nvidia, brief, tmp_path, out, capsys, monkeypatch):
    monkeypatch.setenv("IMAGEGEN_CATALOG_URL", f"sqlite:///{tmp_path}")
    line = refusal(*run(capsys, brief, "--out", str(out)))
    assert line == (f"error: IMAGEGEN_CATALOG_URL: the catalog cannot be used: sqlite catalog {tmp_path} is a "
                    "folder, not a database file")
    # the default catalog inside --out is named by --out
    monkeypatch.delenv("IMAGEGEN_CATALOG_URL")
    (out / "catalog.db").mkdir(parents=True)
    line = refusal(*run(capsys, brief, "--out", str(out)))
    assert line.startswith("error: --out: the catalog cannot be used: sqlite catalog ")
    assert [p.name for p in out.iterdir()] == ["catalog.db"] and list((out / "catalog.db").iterdir()) == []
    assert_untouched(nvidia)


@pytest.mark.parametrize("content, reason", [
    ("table", "table media_assets lacks the column(s) campaign, asset_id, variant"),
    ("garbage", "file is not a database"),
])
def test_sqlite_catalog_of_the_wrong_shape_is_left_as_it_was(nvidia, brief, tmp_path, out, capsys, monkeypatch,
                                                             content, reason):
    catalog = tmp_path / "theirs.db"
    if content == "table":
        with sqlite3.connect(catalog) as conn:
            conn.execute("CREATE TABLE media_assets (id INTEGER PRIMARY KEY, name TEXT)")
            conn.execute("INSERT INTO media_assets VALUES (1, 'theirs')")
        conn.close()
    else:
        catalog.write_bytes(b"this is not a database" * 100)
    before = hashlib.sha256(catalog.read_bytes()).hexdigest()
    monkeypatch.setenv("IMAGEGEN_CATALOG_URL", f"sqlite:///{catalog}")
    line = refusal(*run(capsys, brief, "--out", str(out)))
    assert line.startswith("error: IMAGEGEN_CATALOG_URL: the catalog cannot be used: sqlite catalog ")
    assert reason in line
    assert hashlib.sha256(catalog.read_bytes()).hexdigest() == before
    assert_untouched(nvidia, out)


def test_a_usable_sqlite_catalog_passes_and_keeps_no_probe_row(nvidia, brief, tmp_path, out, monkeypatch):
    catalog = tmp_path / "catalog.db"
    with sqlite3.connect(catalog) as conn:
        conn.executescript(schema_sql("sqlite"))
    conn.close()
    monkeypatch.setenv("IMAGEGEN_CATALOG_URL", f"sqlite:///{catalog}")
    validate(str(brief), None, out)
    with sqlite3.connect(catalog) as conn:
        assert conn.execute("SELECT count(*) FROM media_assets").fetchone() == (0,)
    conn.close()
    assert_untouched(nvidia, out)


# --------------------------------------------------------------------------- PostgreSQL catalog

def test_postgres_down_is_found_in_seconds_naming_the_masked_url(nvidia, brief, out, capsys, monkeypatch):
    url = f"postgresql://imagegen:{PG_PASSWORD}@127.0.0.1:{_free_port()}/assets"
    monkeypatch.setenv("IMAGEGEN_CATALOG_URL", url)
    started = time.monotonic()
    line = refusal(*run(capsys, brief, "--out", str(out)))
    assert time.monotonic() - started < CATALOG_SECONDS
    assert line.startswith("error: IMAGEGEN_CATALOG_URL: the catalog cannot be used: checking media_assets on "
                           "postgresql://imagegen:***@127.0.0.1:")
    assert "Connection refused" in line and PG_PASSWORD not in line
    assert_untouched(nvidia, out)


def test_postgres_with_a_media_assets_table_of_the_wrong_shape(nvidia, brief, out, capsys, monkeypatch,
                                                              postgres_dsn):
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE media_assets (id integer PRIMARY KEY, name text)")
        conn.execute("INSERT INTO media_assets VALUES (1, 'theirs')")
    monkeypatch.setenv("IMAGEGEN_CATALOG_URL", postgres_dsn)
    line = refusal(*run(capsys, brief, "--out", str(out)))
    assert line.startswith("error: IMAGEGEN_CATALOG_URL: the catalog cannot be used: checking media_assets on ")
    assert "the table lacks the column(s) campaign, asset_id, variant" in line
    with psycopg.connect(postgres_dsn) as conn:
        assert conn.execute("SELECT * FROM media_assets").fetchall() == [(1, "theirs")]
        indexes = conn.execute("SELECT count(*) FROM pg_indexes WHERE tablename = 'media_assets' "
                               "AND schemaname = current_schema()").fetchone()
        assert indexes == (1,), "the check created an index"  # the primary key's only
    assert_untouched(nvidia, out)


@pytest.fixture
def read_only_role_dsn(postgres_dsn):
    """postgres_dsn for a role that may read media_assets and nothing more (with a password to mask)."""
    role = f"ro_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        schema = conn.execute("SELECT current_schema()").fetchone()[0]
        conn.execute(schema_sql("postgres"))
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{PG_PASSWORD}'")
        conn.execute(f"GRANT USAGE ON SCHEMA {schema} TO {role}")
        conn.execute(f"GRANT SELECT ON {schema}.media_assets TO {role}")
    parts = urlsplit(postgres_dsn)
    yield urlunsplit(parts._replace(netloc=f"{role}:{PG_PASSWORD}@{parts.hostname}:{parts.port}"))
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


def test_postgres_without_write_permission(nvidia, brief, out, capsys, monkeypatch, read_only_role_dsn):
    monkeypatch.setenv("IMAGEGEN_CATALOG_URL", read_only_role_dsn)
    line = refusal(*run(capsys, brief, "--out", str(out)))
    assert line.startswith("error: IMAGEGEN_CATALOG_URL: the catalog cannot be used: checking media_assets on ")
    assert "permission denied" in line and PG_PASSWORD not in line
    assert_untouched(nvidia, out)


def test_a_usable_postgres_catalog_passes_and_creates_nothing(nvidia, brief, out, monkeypatch, postgres_dsn):
    monkeypatch.setenv("IMAGEGEN_CATALOG_URL", postgres_dsn)
    validate(str(brief), None, out)
    with psycopg.connect(postgres_dsn) as conn:
        assert conn.execute("SELECT to_regclass('media_assets')").fetchone() == (None,), "the check kept a table"
    assert_untouched(nvidia, out)


# --------------------------------------------------------------------------- Supabase REST catalog

@pytest.fixture
def supabase_env(supabase_emu, monkeypatch):
    emulator, base_url = supabase_emu
    monkeypatch.setenv("SUPABASE_URL", base_url)
    monkeypatch.setenv("SUPABASE_KEY", SUPABASE_KEY)
    monkeypatch.setenv("IMAGEGEN_CATALOG_URL", "supabase")
    return emulator


def test_supabase_catalog_with_a_rejected_key(nvidia, supabase_env, brief, out, capsys, monkeypatch):
    monkeypatch.setenv("SUPABASE_KEY", "sb-SENTINEL-wrong-key")
    line = refusal(*run(capsys, brief, "--out", str(out)))
    assert line.startswith("error: IMAGEGEN_CATALOG_URL: the catalog cannot be used: checking Supabase table "
                           "'media_assets': ")
    assert "Invalid API key" in line and "sb-SENTINEL" not in line
    assert len(supabase_env.calls) == 1, "a refused key is not asked again"
    assert_untouched(nvidia, out)


@pytest.mark.parametrize("fault", ["outage", "unreachable", "hanging"])
def test_supabase_catalog_down_is_found_in_seconds(nvidia, supabase_env, brief, out, capsys, monkeypatch, fault):
    if fault == "outage":
        supabase_env.faults.outage = True
    elif fault == "unreachable":
        monkeypatch.setenv("SUPABASE_URL", f"http://127.0.0.1:{_free_port()}")
    else:
        supabase_env.faults.delay_seconds = 12.0
    started = time.monotonic()
    line = refusal(*run(capsys, brief, "--out", str(out)))
    assert time.monotonic() - started < CATALOG_SECONDS - 5  # the 5 s timeout, not the 30 s of the write path
    assert line.startswith("error: IMAGEGEN_CATALOG_URL: the catalog cannot be used: checking Supabase table ")
    assert len(supabase_env.calls) <= 1, "the pre-flight check does not retry"
    assert_untouched(nvidia, out)


def test_a_usable_supabase_catalog_passes_and_keeps_no_probe_row(nvidia, supabase_env, brief, out):
    validate(str(brief), None, out)
    assert supabase_env.table_rows() == []
    methods = [call.method for call in supabase_env.calls]
    assert methods == ["GET", "POST", "DELETE"], methods  # read every column, write a probe, delete it
    assert PREFLIGHT_CAMPAIGN in supabase_env.calls[2].query
    assert_untouched(nvidia, out)


def test_a_run_past_the_daily_image_budget_exits_1_saying_what_is_left_and_when_it_resets(nvidia, tmp_path, out,
                                                                                         capsys, monkeypatch):
    """IMAGEGEN_NVIDIA_IMAGES_PER_DAY over the SQLite catalog in the output folder: 3 of 5 images were
    sent today by earlier runs, this brief needs 3 more: refused before Prefect starts, nothing sent."""
    from imagegen.daily_images import DailyImages, SqliteCounts

    earlier = DailyImages(SqliteCounts(out / "catalog.db"), {"nvidia": 5}, holder="an earlier run")
    for _ in range(3):
        earlier.count("nvidia")
    monkeypatch.setenv("IMAGEGEN_NVIDIA_IMAGES_PER_DAY", "5")
    brief = write_brief(tmp_path, "daily-budget", provider=SMALL_NVIDIA, targets=SMALL_TARGET,
                        subjects=[{"subject": "a ceramic mug", "seed": 9191, "variations": 3}])
    line = refusal(*run(capsys, brief, "--out", str(out)))
    assert line.startswith("error: IMAGEGEN_NVIDIA_IMAGES_PER_DAY: this run needs 3 new nvidia image(s) but 2 of "
                           "5 are left today; the day resets at "), line
    assert " 00:00 UTC (in " in line and line.endswith("; nothing was sent")
    assert_untouched(nvidia)
    assert earlier.sent_today("nvidia") == 3
