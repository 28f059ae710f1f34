"""Daily image budgets counted in the SQLite catalog (imagegen.daily_images), the run budget that counts
image calls against them (imagegen.budget), their settings, and the faster settings of thumbnail-only plans."""

from __future__ import annotations

import sqlite3
import threading
from datetime import datetime, timezone

import pytest

from imagegen.budget import CallBudget, paid_call
from imagegen.daily_images import DailyImages, DailyImagesExhausted, SqliteCounts, day_resets_at, utc_day
from imagegen.errors import BudgetExhausted, SettingsError, StillRunning, fallback_worthy
from imagegen.settings import images_per_day, load_settings


def daily(tmp_path, holder: str, limit: int | None = 5, **options) -> DailyImages:
    """A run's view of the budgets, on its own connection to the catalog file (as another process has)."""
    return DailyImages(SqliteCounts(tmp_path / "catalog.db"), {"nvidia": limit}, holder=holder, **options)


def sent(tmp_path, provider: str = "nvidia") -> int:
    with sqlite3.connect(tmp_path / "catalog.db") as conn:
        row = conn.execute("SELECT sum(images) FROM imagegen_daily_images WHERE provider = ?", (provider,)).fetchone()
    return row[0] or 0


def test_a_run_that_would_pass_the_limit_stops_before_spending_saying_what_is_left_and_when(tmp_path):
    first, second = daily(tmp_path, "run-1"), daily(tmp_path, "run-2")
    first.reserve("nvidia", 3)
    with pytest.raises(DailyImagesExhausted) as refused:
        second.reserve("nvidia", 3)  # 3 of 5 are held by the first run
    message = str(refused.value)
    assert "IMAGEGEN_NVIDIA_IMAGES_PER_DAY" in message and "needs 3 new nvidia image(s) but 2 of 5 are left today" \
        in message
    assert "00:00 UTC" in message and "\n" not in message
    assert fallback_worthy(refused.value)  # the chain's next provider may take the masters
    assert sent(tmp_path) == 0, "a refused reservation counts nothing"
    second.reserve("nvidia", 2)  # what is left can be had


def test_images_are_counted_when_sent_from_the_reservation_first_and_past_it_only_within_the_limit(tmp_path):
    run, other = daily(tmp_path, "run-1"), daily(tmp_path, "run-2")
    run.reserve("nvidia", 2)
    counted = [run.count("nvidia") for _ in range(2)]
    assert [c.reserved for c in counted if c] == [True, True] and sent(tmp_path) == 2
    other.reserve("nvidia", 2)
    assert run.count("nvidia").reserved is False  # a regeneration past the plan: the last free image
    with pytest.raises(DailyImagesExhausted) as refused:
        run.count("nvidia")  # the other run's reservation is not this run's to take
    assert "0 of 5 nvidia images are left today" in str(refused.value)
    assert sent(tmp_path) == 3
    other.release()
    run.count("nvidia")  # released: free again
    assert sent(tmp_path) == 4


def test_a_call_that_paid_nothing_gives_its_image_and_its_reservation_back(tmp_path):
    run = daily(tmp_path, "run-1", limit=1)
    run.reserve("nvidia", 1)
    counted = run.count("nvidia")
    run.give_back(counted)
    assert sent(tmp_path) == 0
    assert run.count("nvidia").reserved, "the reservation was given back with the image"


def test_a_dead_runs_reservation_stops_counting_once_it_expires(tmp_path):
    dead = daily(tmp_path, "dead-run", reservation_seconds=0.0)  # expired as soon as it is made
    dead.reserve("nvidia", 5)
    daily(tmp_path, "next-run").reserve("nvidia", 5)
    dead.purge()
    with sqlite3.connect(tmp_path / "catalog.db") as conn:
        holders = [r[0] for r in conn.execute("SELECT holder FROM imagegen_image_reservations")]
    assert holders == ["next-run"]


def test_concurrent_runs_never_together_pass_the_limit(tmp_path):
    runs = [daily(tmp_path, f"run-{i}", limit=10) for i in range(4)]
    granted: list[int] = []
    lock = threading.Lock()

    def spend(run: DailyImages) -> None:
        for _ in range(6):
            try:
                run.count("nvidia")
            except DailyImagesExhausted:
                continue
            with lock:
                granted.append(1)

    threads = [threading.Thread(target=spend, args=(run,)) for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(granted) == 10 and sent(tmp_path) == 10


def test_a_provider_without_a_limit_is_counted_and_the_free_local_one_touches_nothing(tmp_path):
    run = DailyImages(SqliteCounts(tmp_path / "catalog.db"), {"nvidia": None}, holder="run-1")
    run.reserve("nvidia", 50)  # nothing to reserve without a limit
    run.count("nvidia")
    assert sent(tmp_path) == 1 and run.sent_today("nvidia") == 1
    local = DailyImages(SqliteCounts(tmp_path / "other" / "catalog.db"), {"nvidia": 3}, holder="run-2")
    assert local.count("local") is None
    local.reserve("local", 10)
    local.release()
    assert not (tmp_path / "other" / "catalog.db").exists(), "the embedded default's catalog is left as it was"


def test_the_run_budget_counts_image_calls_against_the_day_and_gives_them_back(tmp_path):
    budget = CallBudget(None, daily=daily(tmp_path, "run-1", limit=2))

    def still_running():
        raise StillRunning("nvidia: request r1 still running", provider="nvidia")

    paid_call(budget, "nvidia", lambda: "image")
    with pytest.raises(StillRunning):
        paid_call(budget, "nvidia", still_running)
    paid_call(budget, "vlm", lambda: "review", image=False)  # a review makes no image
    assert budget.spent == 2 and sent(tmp_path) == 1
    paid_call(budget, "nvidia", lambda: "image")
    with pytest.raises(DailyImagesExhausted):
        paid_call(budget, "nvidia", lambda: pytest.fail("sent past the daily budget"))
    assert budget.spent == 3, "a call the day refused is not counted against the run either"


def test_the_runs_own_call_budget_still_stops_first(tmp_path):
    budget = CallBudget(1, daily=daily(tmp_path, "run-1", limit=5))
    paid_call(budget, "nvidia", lambda: "image")
    with pytest.raises(BudgetExhausted):
        paid_call(budget, "nvidia", lambda: pytest.fail("sent past the run's budget"))
    assert sent(tmp_path) == 1


def test_the_day_resets_at_utc_midnight_shown_as_a_time():
    evening = datetime(2026, 12, 7, 21, 48, 30, tzinfo=timezone.utc).timestamp()
    assert utc_day(evening) == "2026-12-07"
    assert day_resets_at(evening) == "2026-12-08 00:00 UTC (in 2 h 11 min)"


def test_daily_budget_settings_are_read_per_provider_and_checked(monkeypatch):
    monkeypatch.setenv("IMAGEGEN_NVIDIA_IMAGES_PER_DAY", "100")
    monkeypatch.setenv("IMAGEGEN_NEUROFLASH_IMAGES_PER_DAY", "40")
    assert images_per_day(load_settings()) == {"nvidia": 100, "neuroflash": 40}
    monkeypatch.setenv("IMAGEGEN_NVIDIA_IMAGES_PER_DAY", "-1")
    with pytest.raises(SettingsError) as bad:
        load_settings()
    assert str(bad.value) == "IMAGEGEN_NVIDIA_IMAGES_PER_DAY: must be a whole number, 0 or more, got '-1'"


def test_a_catalog_file_that_cannot_be_opened_is_one_catalog_error(tmp_path):
    from imagegen.errors import CatalogError

    folder = tmp_path / "catalog.db"
    folder.mkdir()  # a folder where the file should be
    run = DailyImages(SqliteCounts(folder), {"nvidia": 5}, holder="run-1")
    with pytest.raises(CatalogError) as failed:
        run.count("nvidia")
    assert str(failed.value).startswith(f"daily image counts in {folder}: ") and "\n" not in str(failed.value)
