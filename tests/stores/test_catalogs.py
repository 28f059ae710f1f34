"""One contract suite for every catalog backend: SQLite, PostgreSQL (a real server) and Supabase REST
(the real supabase-py client against the emulator), plus how IMAGEGEN_CATALOG_URL picks one."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from imagegen.catalog.base import Catalog, CatalogRow
from imagegen.catalog.postgres import PostgresCatalog
from imagegen.catalog.sqlite import SqliteCatalog
from imagegen.catalog.supabase_rest import SupabaseRestCatalog
from imagegen.errors import CatalogError, SettingsError, is_transient
from imagegen.settings import ImagegenSettings
from imagegen_flows.blocks.resolve import catalog_block
from tests.stores.conftest import SECRETS, SUPABASE_KEY, make_supabase_client

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def no_secrets_in_logs(caplog):
    caplog.set_level(logging.DEBUG)
    yield
    for secret in SECRETS:
        assert secret not in caplog.text


def make_row(asset_id: str = "hero", variant: str = "square", campaign: str = "spring-2026", **changes) -> CatalogRow:
    data = dict(campaign=campaign, asset_id=asset_id, variant=variant,
                url=f"https://cdn.example/{campaign}/{asset_id}/{variant}.png", store="supabase",
                store_key=f"{campaign}/{asset_id}/{variant}.png", width=1080, height=1080, format="PNG",
                bytes=123_456, sha256="ab" * 32, phash="f0f0f0f0f0f0f0f0", prompt="a red bicycle",
                negative_prompt="blurry", provider="local", model="stand-in", seed=42, generation_ms=1500,
                gates={"resolution": {"passed": True, "score": 0.97}, "brand": {"passed": True}},
                status="published", alt_text="A red bicycle", created_at=T0, updated_at=T0,
                metadata={"platform": "instagram", "tags": ["spring", "bike"]})
    data.update(changes)
    return CatalogRow(**data)


def batch() -> list[CatalogRow]:
    return [make_row("hero", "square"), make_row("hero", "story", width=1080, height=1920),
            make_row("banner", "wide", width=1920, height=600)]


@pytest.fixture(params=["sqlite", "postgres", "supabase"])
def catalog(request, tmp_path) -> Catalog:
    if request.param == "sqlite":
        backend: Catalog = SqliteCatalog(tmp_path / "catalog.db")
    elif request.param == "postgres":
        backend = PostgresCatalog(request.getfixturevalue("postgres_dsn"))
    else:
        _, base_url = request.getfixturevalue("supabase_emu")
        backend = SupabaseRestCatalog(make_supabase_client(base_url))
    yield backend
    backend.close()


def by_key(rows: list[CatalogRow]) -> dict[tuple[str, str, str], CatalogRow]:
    return {row.key: row for row in rows}


# -- the contract ----------------------------------------------------------------------------------

def test_insert_then_read_back_everything(catalog):
    result = catalog.upsert(batch())
    assert (result.inserted, result.updated, result.unchanged) == (3, 0, 0)
    stored = by_key(catalog.rows())
    assert stored == by_key(batch())  # JSON columns as objects, timestamps to the microsecond
    assert [r.key for r in catalog.rows("spring-2026")] == sorted(stored)
    assert catalog.rows("no-such-campaign") == []


def test_rerun_with_unchanged_rows_changes_nothing(catalog):
    catalog.upsert(batch())
    later = T0 + timedelta(hours=1)
    rerun = [row.model_copy(update={"created_at": later, "updated_at": later}) for row in batch()]
    result = catalog.upsert(rerun)
    assert (result.inserted, result.updated, result.unchanged) == (0, 0, 3)
    assert all(row.updated_at == T0 and row.created_at == T0 for row in catalog.rows())


def test_changed_content_updates_and_keeps_created_at(catalog):
    catalog.upsert(batch())
    later = T0 + timedelta(days=2)
    changed = make_row("hero", "square", url="https://cdn.example/v2.png", gates={"resolution": {"passed": False}},
                       created_at=later, updated_at=later)
    result = catalog.upsert([changed, *batch()[1:]])
    assert (result.inserted, result.updated, result.unchanged) == (0, 1, 2)
    row = by_key(catalog.rows())[changed.key]
    assert row.url == "https://cdn.example/v2.png" and row.gates == {"resolution": {"passed": False}}
    assert row.created_at == T0 and row.updated_at == later


def test_a_key_named_twice_in_one_batch_counts_like_two_upserts(catalog):
    second = make_row("hero", "square", alt_text="A red bicycle, leaning")
    result = catalog.upsert([make_row("hero", "square"), second])
    assert (result.inserted, result.updated, result.unchanged) == (1, 1, 0)
    assert [row.alt_text for row in catalog.rows()] == ["A red bicycle, leaning"]


@pytest.mark.parametrize("invalid", ["width_zero", "bogus_status"])
def test_one_invalid_row_leaves_no_row_written(catalog, invalid):
    catalog.upsert([make_row("banner", "wide")])
    if invalid == "width_zero":
        bad = make_row("hero", "story", width=0)
    else:  # bypasses pydantic on purpose: the database's CHECK must still refuse it
        bad = CatalogRow.model_construct(**{**make_row("hero", "story").__dict__, "status": "bogus"})
    changed = make_row("banner", "wide", url="https://cdn.example/changed.png")
    expected = CatalogError
    with pytest.raises(expected):
        catalog.upsert([make_row("hero", "square"), changed, bad])
    assert [(r.key, r.url) for r in catalog.rows()] == [(make_row("banner", "wide").key, make_row("banner", "wide").url)]


def test_delete_is_idempotent(catalog):
    catalog.upsert(batch())
    keys = [("spring-2026", "hero", "square"), ("spring-2026", "banner", "wide")]
    assert catalog.delete(keys) == 2
    assert catalog.delete(keys) == 0
    assert catalog.delete([("other", "x", "y")]) == 0
    assert [r.key for r in catalog.rows()] == [("spring-2026", "hero", "story")]


def test_upsert_deletes_the_rows_it_is_told_to_remove(catalog):
    """An asset whose master was quarantined: its master row changes, its variant rows go, in one call."""
    catalog.upsert(batch())
    quarantined = make_row("hero", "square", status="quarantined", store="quarantine")
    result = catalog.upsert([quarantined], remove=[("spring-2026", "hero", "story"), ("spring-2026", "hero", "gone"),
                                                   quarantined.key])  # a key also upserted is never deleted
    assert (result.updated, result.deleted) == (1, 1)
    assert [(r.key, r.status) for r in catalog.rows()] == [
        (("spring-2026", "banner", "wide"), "published"), (quarantined.key, "quarantined")]
    assert catalog.upsert([], remove=[("spring-2026", "banner", "wide")]).deleted == 1


def test_a_refused_upsert_deletes_nothing(catalog):
    catalog.upsert(batch())
    with pytest.raises(CatalogError):
        catalog.upsert([make_row("hero", "square", width=0)], remove=[("spring-2026", "hero", "story")])
    assert sorted(r.key for r in catalog.rows()) == sorted(by_key(batch()))


def test_rows_of_some_assets_only(catalog):
    catalog.upsert([*batch(), make_row("hero", "square", campaign="autumn")])
    assert [r.key for r in catalog.rows("spring-2026", ["hero", "nobody"])] == [
        ("spring-2026", "hero", "square"), ("spring-2026", "hero", "story")]
    assert catalog.rows("spring-2026", []) == []
    assert [r.key for r in catalog.rows(None, ["hero"])] == [
        ("autumn", "hero", "square"), ("spring-2026", "hero", "square"), ("spring-2026", "hero", "story")]


# -- backend-specific failures ---------------------------------------------------------------------

def test_postgres_unreachable_is_transient_and_masks_the_password():
    catalog = PostgresCatalog("postgresql://imagegen:s3cret-pw@127.0.0.1:1/assets", connect_timeout=2)
    with pytest.raises(CatalogError) as caught:
        catalog.rows()
    assert is_transient(caught.value)
    assert "s3cret-pw" not in str(caught.value) and "imagegen:***@127.0.0.1:1" in str(caught.value)
    assert "s3cret-pw" not in repr(catalog)


def test_supabase_rest_rejected_key_is_clear_and_secret_free(supabase_emu):
    emulator, base_url = supabase_emu
    emulator.key = "sb-the-right-one"
    try:
        with pytest.raises(CatalogError, match="Invalid API key") as caught:
            SupabaseRestCatalog(make_supabase_client(base_url)).upsert(batch())
    finally:
        emulator.key = SUPABASE_KEY
    assert not is_transient(caught.value)
    assert SUPABASE_KEY not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_supabase_rest_outage_is_transient(supabase_emu, monkeypatch):
    emulator, base_url = supabase_emu
    # postgrest-py retries reads on 503 three times, sleeping 1, 2 and 4 s: keep the retries, skip the wait
    monkeypatch.setattr("postgrest._sync.request_builder.get_retry_delay", lambda attempt: 0)
    emulator.faults.outage = True
    with pytest.raises(CatalogError) as caught:
        SupabaseRestCatalog(make_supabase_client(base_url)).upsert(batch())
    assert is_transient(caught.value)


def test_supabase_rest_sends_one_upsert_with_merge_duplicates(supabase_emu):
    emulator, base_url = supabase_emu
    catalog = SupabaseRestCatalog(make_supabase_client(base_url))
    catalog.upsert(batch())
    catalog.upsert(batch())  # unchanged: nothing to send
    (post,) = emulator.calls_to("POST", "/rest/v1/media_assets")
    assert "resolution=merge-duplicates" in post.headers["prefer"]
    assert "on_conflict=campaign%2Casset_id%2Cvariant" in post.query or "on_conflict=campaign,asset_id,variant" in post.query


def test_supabase_rest_pages_through_the_row_cap(supabase_emu):
    _, base_url = supabase_emu
    catalog = SupabaseRestCatalog(make_supabase_client(base_url), page_size=2)
    rows = [make_row(f"asset-{i}", "square") for i in range(5)]
    catalog.upsert(rows)
    assert [r.key for r in catalog.rows()] == sorted(r.key for r in rows)


# -- IMAGEGEN_CATALOG_URL -> catalog (blocks.resolve.catalog_block) -------------------------------

def catalog_for(url: str | None, out: Path, **env) -> Catalog:
    return catalog_block(ImagegenSettings(catalog_url=url, **env), out).get_catalog()


def test_catalog_url_forms(tmp_path, postgres_dsn, supabase_emu):
    _, base_url = supabase_emu
    default = catalog_for(None, tmp_path)
    assert isinstance(default, SqliteCatalog) and default.path == tmp_path / "catalog.db"
    explicit = catalog_for(f"sqlite:///{tmp_path}/explicit.db", tmp_path)
    assert isinstance(explicit, SqliteCatalog) and explicit.path == Path(f"{tmp_path}/explicit.db")

    postgres = catalog_for(postgres_dsn, tmp_path)
    assert isinstance(postgres, PostgresCatalog)
    assert postgres.upsert(batch()).inserted == 3
    assert isinstance(catalog_for("postgres://u@h/db", tmp_path), PostgresCatalog)

    supabase = catalog_for("supabase", tmp_path, supabase_url=base_url, supabase_key=SUPABASE_KEY)
    assert isinstance(supabase, SupabaseRestCatalog)
    assert supabase.upsert(batch()).inserted == 3


def test_catalog_url_refuses_other_forms_without_echoing_the_password(tmp_path):
    with pytest.raises(SettingsError) as caught:
        catalog_for("mysql://root:hunter2@db.internal/assets", tmp_path)
    message = str(caught.value)
    assert "IMAGEGEN_CATALOG_URL" in message and "hunter2" not in message and "root:***@" in message
    for form in ("sqlite:///", "postgresql://", "supabase"):
        assert form in message


def test_catalog_url_supabase_needs_the_env(tmp_path, monkeypatch):
    monkeypatch.delenv("SUPABASE_URL", raising=False)
    monkeypatch.delenv("SUPABASE_KEY", raising=False)
    with pytest.raises(SettingsError, match="IMAGEGEN_CATALOG_URL: catalog 'supabase' needs SUPABASE_URL"):
        catalog_for("supabase", tmp_path)


def test_postgres_block_builds_a_catalog_and_hides_the_dsn(postgres_dsn):
    from imagegen_flows.blocks.postgres import PostgresCatalogBlock

    block = PostgresCatalogBlock(dsn="postgresql://u:block-secret@127.0.0.1/db")
    assert "block-secret" not in repr(block)
    assert isinstance(PostgresCatalogBlock(dsn=postgres_dsn).get_catalog().rows(), list)
