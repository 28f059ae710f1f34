"""Test-wide settings: an isolated PREFECT_HOME, no analytics, and one Prefect harness per session.

Unit tests never touch Prefect. Flow tests use the `prefect_harness` fixture, which starts one
temporary Prefect server for the whole session (15-25 s here) instead of one per test. When the
session ends, that server's records and the persisted results are searched for the marker every
sentinel credential carries: a leak from any test fails the session.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_PREFECT_HOME = Path(tempfile.mkdtemp(prefix="imagegen-test-prefect-"))
os.environ["PREFECT_HOME"] = str(_PREFECT_HOME)
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ["PREFECT_LOCAL_STORAGE_PATH"] = str(_PREFECT_HOME / "storage")
# Never read a developer's real credentials in tests; tests that need secrets set sentinels.
for _name in ("NVIDIA_API_KEY", "NEUROFLASH_CLIENT_ID", "NEUROFLASH_CLIENT_SECRET", "SUPABASE_URL",
              "SUPABASE_KEY", "GITLAB_URL", "GITLAB_TOKEN", "PREFECT_API_URL", "PREFECT_API_KEY"):
    os.environ.pop(_name, None)
for _name in [n for n in os.environ if n.startswith("IMAGEGEN_") and not n.startswith("IMAGEGEN_TEST_")]:
    os.environ.pop(_name)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        # each flow run would otherwise wait ~1 s for its heartbeat thread at exit
        with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            yield
            assert_no_sentinel_left()


# Every credential a test hands the code contains this marker (nvapi-SENTINEL-..., sb-SENTINEL, ...).
SENTINEL_MARK = "SENTINEL"


def assert_no_sentinel_left() -> None:
    """After every test that used the session's Prefect API: no sentinel credential reached its logs,
    artifacts, flow or task runs, or the results persisted under PREFECT_HOME."""
    from tests.prefect_records import api_records, around, files_text

    where = {"the Prefect API (logs, artifacts, flow and task runs)": api_records(),
             "persisted results": files_text(_PREFECT_HOME / "storage").decode("latin-1")}
    leaks = [f"{name}: ...{around(text, SENTINEL_MARK)}..." for name, text in where.items() if SENTINEL_MARK in text]
    assert not leaks, "a sentinel secret left its block during the session:\n" + "\n".join(leaks)


@pytest.fixture(autouse=True)
def fresh_neuroflash_accounts():
    """No neuroflash token, workspace, model list or quota figure carried from one test to the next: tests
    swap emulators behind one URL, which a real account never does (a process shares them per account)."""
    from imagegen.providers.neuroflash_account import forget_accounts

    forget_accounts()


@pytest.fixture
def examples_dir() -> Path:
    return REPO / "examples"


@pytest.fixture
def decoded(monkeypatch) -> list[tuple[int, int]]:
    """Sizes whose pixels Pillow decoded, in any thread, while the test ran (a load() with tiles to decode)."""
    from PIL import ImageFile

    sizes: list[tuple[int, int]] = []
    real_load = ImageFile.ImageFile.load

    def recording_load(self):
        if self.tile:
            sizes.append(self.size)
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", recording_load)
    return sizes
