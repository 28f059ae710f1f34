"""Pre-flight checks of where a run writes: the output folder, the catalog and the stores, before any spend.

The CLI runs them before Prefect starts; the flows run them again first thing, so a run started by a
deployment, a schedule or an event (which never passes through the CLI) finds a bad folder or catalog
before it pays for anything, with the same one-line message.
"""

from __future__ import annotations

from pathlib import Path

from imagegen.errors import CatalogError, SettingsError, StoreError
from imagegen.preflight import folder_problem
from imagegen_flows.blocks.catalog import CatalogBlock
from imagegen_flows.blocks.resolve import CATALOG_VARIABLE
from imagegen_flows.blocks.storage import AssetStoreBlock

# Where the stores configured from the environment take their settings from (named, never their values).
_STORE_VARIABLES = {
    "supabase": ("SUPABASE_URL", "SUPABASE_KEY", "IMAGEGEN_SUPABASE_BUCKET"),
    "gitlab": ("GITLAB_URL", "GITLAB_TOKEN", "IMAGEGEN_GITLAB_PROJECT"),
}


def check_output_folder(out: Path, out_source: str) -> None:
    """`out` is a folder we can write, or one we can create (it is not created here)."""
    if problem := folder_problem(out):
        raise SettingsError([(out_source, problem)])


def check_catalog(catalog: CatalogBlock, catalog_url: str | None, out_source: str) -> None:
    """The catalog answers, has (or can create) its table and takes a write; a failure names
    IMAGEGEN_CATALOG_URL or, for the default `<out>/catalog.db`, the output folder."""
    try:
        catalog.check_catalog()
    except CatalogError as err:  # its message names the (masked) database and the reason
        where = out_source if catalog_url is None else CATALOG_VARIABLE
        raise SettingsError([(where, f"the catalog cannot be used: {err}")]) from None


def check_stores(small: AssetStoreBlock, large: AssetStoreBlock, small_source: str, large_source: str) -> None:
    """Both stores answer and take a write (AssetStoreBlock.check_store); `small_source` and
    `large_source` are the names the brief gives them (publish.small_store / publish.large_store), and a
    store named in both is checked once. A failure names the brief field and what to check."""
    if small_source == large_source:
        _check_store(small, small_source, "publish.small_store and publish.large_store")
        return
    _check_store(small, small_source, "publish.small_store")
    _check_store(large, large_source, "publish.large_store")


def _check_store(store: AssetStoreBlock, source: str, field: str) -> None:
    try:
        store.check_store()
    except StoreError as err:  # its message names the store (masked) and the reason
        if "/" in source:
            where = f"the settings saved in block {source!r}"
        else:
            variables = _STORE_VARIABLES.get(source, ())
            where = "the environment variables " + ", ".join(variables) if variables else ""
        check = f"; check {where}" if where else ""
        raise SettingsError([(field, f"store {source!r} cannot be used: {err}{check}")]) from None
