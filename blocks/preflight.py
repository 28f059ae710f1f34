"""Pre-flight checks of where a run writes: the output folder and the catalog, before any spend.

The CLI runs them before Prefect starts; the flows run them again first thing, so a run started by a
deployment, a schedule or an event (which never passes through the CLI) finds a bad folder or catalog
before it pays for anything, with the same one-line message.
"""

from __future__ import annotations

from pathlib import Path

from imagegen.errors import CatalogError, SettingsError
from imagegen.preflight import folder_problem
from imagegen_flows.blocks.catalog import CatalogBlock
from imagegen_flows.blocks.resolve import CATALOG_VARIABLE


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
