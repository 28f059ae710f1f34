"""`imagegen serve`: the deployments of prefect.yaml, served from this one process (no worker needed).

prefect.yaml stays the single source: this reads its deployments (entrypoint, parameters, schedules,
event triggers) and hands them to `prefect.serve`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

PREFECT_YAML = Path(__file__).resolve().parents[1] / "prefect.yaml"


def load_deployment_specs(path: Path = PREFECT_YAML) -> list[dict[str, Any]]:
    return yaml.safe_load(path.read_text())["deployments"]


def _load_flow(entrypoint: str):
    from prefect.flows import load_flow_from_entrypoint

    return load_flow_from_entrypoint(str(PREFECT_YAML.parent / entrypoint))


def _schedules(spec: dict[str, Any]) -> list:
    from prefect.schedules import Cron

    return [Cron(s["cron"], timezone=s.get("timezone", "UTC")) for s in spec.get("schedules") or []]


def _triggers(spec: dict[str, Any]) -> list:
    from prefect.events import DeploymentEventTrigger

    triggers = []
    for trigger in spec.get("triggers") or []:
        options = {k: v for k, v in trigger.items() if k != "type"}
        triggers.append(DeploymentEventTrigger(**options))
    return triggers


def runner_deployments(path: Path = PREFECT_YAML) -> list:
    """One RunnerDeployment per prefect.yaml deployment."""
    deployments = []
    for spec in load_deployment_specs(path):
        flow = _load_flow(spec["entrypoint"])
        deployments.append(flow.to_deployment(
            name=spec["name"], description=spec.get("description"), tags=spec.get("tags"),
            parameters=spec.get("parameters") or {}, schedules=_schedules(spec) or None,
            triggers=_triggers(spec) or None))
    return deployments


def api_is_ephemeral() -> bool:
    from prefect.settings import PREFECT_API_URL

    return not PREFECT_API_URL.value()


def deployments_held_by_workers(deployments: list) -> list[str]:
    """Those of `deployments` that `prefect deploy` registered for a work pool: serving them from here
    would strip their code location (pull steps), and every run of theirs would then crash."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    held = []
    with get_client(sync_client=True) as client:
        for deployment in deployments:
            name = f"{deployment.flow_name}/{deployment.name}"
            try:
                registered = client.read_deployment_by_name(name)
            except ObjectNotFound:
                continue
            if registered.work_pool_name:
                held.append(name)
    return held


def serve_all() -> None:
    """Serve every prefect.yaml deployment from this process, or refuse (ImagegenError, nothing changed)
    when `prefect deploy` registered them for a worker: one owner per deployment name."""
    from prefect import serve

    from imagegen.errors import ImagegenError

    deployments = runner_deployments()
    held = deployments_held_by_workers(deployments)
    if held:
        raise ImagegenError(
            f"{', '.join(held)} {'is' if len(held) == 1 else 'are'} registered by `prefect deploy` for a work pool; "
            "serving them from here would take them from the worker and crash their runs. Keep the worker "
            "(prefect worker start --pool imagegen-process), or remove them first: "
            + "; ".join(f"prefect deployment delete {name}" for name in held))
    serve(*deployments)
