"""A run's budgets, set up before any spend: its provider calls (counted in this process, or in the
catalog's PostgreSQL for every process of the run), the providers' daily images (counted in the
catalog's database across runs), and the reservation of the images its plan must pay for."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from imagegen.budget import CallBudget, use_budget_for_run
from imagegen.daily_images import DailyImages, limit_variable
from imagegen.errors import SettingsError
from imagegen.ledger import Ledger
from imagegen.models import GeneratedImage
from imagegen.pending import FolderJournal
from imagegen.prompts import PromptSpec
from imagegen.settings import ImagegenSettings, images_per_day
from imagegen_flows.blocks.catalog import CatalogBlock
from imagegen_flows.tasks.generate import outpaint_slot_key


def open_run_budget(catalog: CatalogBlock, settings: ImagegenSettings, run_id: str) -> CallBudget:
    """The budget every task of run `run_id` spends from (imagegen.budget.budget_for_run finds it).
    A daily limit set with a catalog that has no SQL database to count in is a SettingsError."""
    limits = images_per_day(settings)
    database = catalog.daily_image_counts()
    daily = None
    if database is not None:
        daily = DailyImages(database, limits, holder=f"{run_id}/{socket.gethostname()}/{os.getpid()}")
    elif limited := [limit_variable(provider) for provider, limit in limits.items() if limit is not None]:
        raise SettingsError([(limited[0], "needs a SQLite or PostgreSQL catalog to count images in "
                                          "(IMAGEGEN_CATALOG_URL); the Supabase REST catalog has none")])
    count = catalog.run_call_count(run_id, settings.max_provider_calls)
    return use_budget_for_run(run_id, CallBudget(settings.max_provider_calls, count=count, daily=daily))


def masters_to_pay(specs: list[PromptSpec], ledger: Ledger) -> int:
    """How many of `specs` (in plan order: a base before its outpaints) the ledger holds no usable master
    for: what the run will pay for. A master recorded by an earlier run, or by another worker, is free."""
    bases: dict[str, GeneratedImage | None] = {}
    unpaid = 0
    for spec in specs:
        if spec.outpaint_from:
            base = bases.get(spec.outpaint_from)
            made = ledger.recorded(outpaint_slot_key(base, spec), GeneratedImage) if base is not None else None
        else:
            made = bases[spec.asset_id] = ledger.recorded(spec.cache_key(), GeneratedImage)
        unpaid += made is None
    return unpaid


def check_daily_images(catalog: CatalogBlock, settings: ImagegenSettings, provider: Any, specs: list[PromptSpec],
                       masters_dir: Path) -> None:
    """The CLI's pre-flight, before Prefect starts: DailyImagesExhausted when `provider`'s daily budget has
    fewer images left than `specs` must pay for (nothing is reserved: the flow does that, atomically)."""
    limit = images_per_day(settings).get(provider.provider_name)
    database = catalog.daily_image_counts() if limit is not None else None
    if database is None:
        return  # no limit, or no database to count in (the flow says so)
    daily = DailyImages(database, {provider.provider_name: limit}, holder="preflight")
    try:
        daily.reserve(provider.provider_name, _images_to_pay_in(catalog, settings, provider, specs, masters_dir),
                      hold=False)
    finally:
        daily.release()


def _images_to_pay_in(catalog: CatalogBlock, settings: ImagegenSettings, provider: Any, specs: list[PromptSpec],
                      masters_dir: Path) -> int:
    """The masters to pay for, less the requests of `provider` kept in the pending journal that a free poll
    or history lookup may still answer (a spent daily budget must not stop those; a new send is still
    counted against the day's limit when it goes out)."""
    ledger = catalog.paid_call_ledger(masters_dir, settings.ledger_lease_seconds)
    try:
        unpaid = masters_to_pay(specs, ledger)
    finally:
        if (close := getattr(ledger, "close", None)) is not None:
            close()
    return max(0, unpaid - FolderJournal.under(masters_dir).resumable(provider.provider_name))


def daily_reservation(budget: CallBudget, catalog: CatalogBlock, settings: ImagegenSettings, masters_dir: Path
                      ) -> Callable[[Any, list[PromptSpec]], None]:
    """`reserve(provider, specs)` for the generate stage's pre-flight: the images of `provider`'s daily
    budget that `specs` must pay for are set aside, or DailyImagesExhausted says how many are left."""
    def reserve(provider: Any, specs: list[PromptSpec]) -> None:
        daily = budget.daily
        if daily is not None and daily.limits.get(provider.provider_name) is not None:
            daily.reserve(provider.provider_name, _images_to_pay_in(catalog, settings, provider, specs, masters_dir))
    return reserve
