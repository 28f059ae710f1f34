"""Where the size-set flow renders: this worker's thread pool, or a Dask cluster through prefect-dask.

The flow's own task runner stays the thread pool; only `render_master` goes to the cluster, through a
`DaskTaskRunner` the run opens for itself. A flow's task runner is fixed when it is decorated, and a
deployment parameter has to be able to choose the cluster per run; swapping the whole flow's runner
(`with_options` in a wrapper flow) would also send fetching, storing and the catalog writes to the
workers, with the store credentials. Here they stay in the flow's process, the run stays one flow run,
and what crosses to a worker is render_master's arguments: file paths and small models, never pixels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from prefect.futures import PrefectFuture
from prefect.utilities.callables import get_call_parameters

from imagegen.errors import SettingsError
from imagegen.redaction import mask_url
from imagegen.settings import ImagegenSettings
from imagegen_flows.tasks.publish import render_master

# How long the run waits for the scheduler to answer before it ends, having done nothing.
DASK_CONNECT_SECONDS = 10.0

RenderSubmitter = Callable[..., PrefectFuture]


def dask_address_of(parameter: str | None, settings: ImagegenSettings) -> tuple[str | None, str]:
    """The scheduler to render on and where it was named: the flow's `dask_address` parameter first,
    else IMAGEGEN_DASK_ADDRESS; (None, ...) renders on this worker's threads."""
    if parameter and parameter.strip():
        return parameter.strip(), "dask_address"
    if settings.dask_address and settings.dask_address.strip():
        return settings.dask_address.strip(), "IMAGEGEN_DASK_ADDRESS"
    return None, "IMAGEGEN_DASK_ADDRESS"


@contextmanager
def render_submitter(address: str | None, source: str) -> Iterator[RenderSubmitter]:
    """A function that submits `render_master(**arguments)` and returns its future: to the flow's own
    task runner without `address`, else to the Dask scheduler there, connected before this yields.

    An address that does not answer within DASK_CONNECT_SECONDS raises SettingsError naming `source`.
    """
    if not address:
        yield render_master.submit
        return
    from prefect_dask import DaskTaskRunner  # distributed takes ~1 s to import: only runs that use it pay

    with DaskTaskRunner(address=address, client_kwargs={"timeout": DASK_CONNECT_SECONDS}) as runner:
        try:
            _ = runner.client  # the property connects: an unreachable scheduler fails here, before any work
        except (OSError, TimeoutError, ValueError) as exc:
            raise SettingsError([(source, f"no Dask scheduler answered at {mask_url(address)} within "
                                          f"{DASK_CONNECT_SECONDS:g} s ({type(exc).__name__}); check the "
                                          "address and that the scheduler is running")]) from None

        def submit(**arguments: Any) -> PrefectFuture:
            # what render_master.submit does, with this runner in place of the flow's own
            return runner.submit(render_master, get_call_parameters(render_master.fn, (), arguments))

        yield submit
