"""The `imagegen` command.

    imagegen run BRIEF [--out DIR] [--provider NAME] [--max-provider-calls N] [--json]
    imagegen setup       register block types, save blocks from the environment, rate limits, work pool
    imagegen serve       serve prefect.yaml's deployments from this process (no worker needed)
    imagegen emit BRIEF  send imagegen.brief.submitted, which starts the on-brief-submitted deployment

Exit codes: 0 success, 1 the run failed, 2 the brief (or a flag) is invalid; nothing is written then.
The environment is checked before any spend too, and its problems are run failures, not an invalid
brief: exit 1, one line naming the variable (or the `--out` folder) and the reason. That covers a
setting out of range, missing credentials, an output folder that cannot be written or is too full for
the plan, a catalog that cannot be reached, lacks its table or refuses a write, and a provider that
refuses its credentials (or cannot be reached), naming the environment variables or saved block.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imagegen", description="Campaign brief in, published image sets out.")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the six-stage campaign flow on a brief")
    run.add_argument("brief", help="path to a brief (.yaml, .yml or .json)")
    run.add_argument("--out", default=None, help="output folder (default: $IMAGEGEN_OUTPUT_DIR or ./imagegen-output)")
    run.add_argument("--provider", default=None,
                     help="override the brief's provider: local, nvidia, nim, neuroflash or <block-slug>/<name>")
    run.add_argument("--max-provider-calls", type=int, default=None,
                     help="stop spending after this many provider calls (default: $IMAGEGEN_MAX_PROVIDER_CALLS)")
    run.add_argument("--json", action="store_true", help="print the summary as one JSON object on stdout")

    commands.add_parser("setup", help="register block types, save blocks from the environment, create the "
                                      "providers' rate limits and the imagegen-process work pool (idempotent)")
    commands.add_parser("serve", help="serve prefect.yaml's deployments (schedules, event trigger) from this process")

    emit = commands.add_parser("emit", help="send imagegen.brief.submitted for a brief (path, URL or text)")
    emit.add_argument("brief", help="where the worker finds the brief: a path, an http(s) URL, or YAML/JSON text")
    emit.add_argument("--out", default="imagegen-output", help="output folder the triggered run writes to")
    emit.add_argument("--campaign", default="adhoc", help="names the event's resource (imagegen.brief.<campaign>)")
    return parser


def _print_problems(err) -> None:
    print(f"error: {err}", file=sys.stderr)


class PreflightProviderFailure(Exception):
    """The primary provider failed the pre-flight check for a reason that is not in the brief
    (credentials rejected, endpoint unreachable, quota): the run fails (exit 1), the brief is fine."""


# Where each provider name configured from the environment takes its credentials and endpoints from
# (imagegen.settings): named in the pre-flight message, never their values.
_CREDENTIAL_VARIABLES = {
    "nvidia": ("NVIDIA_API_KEY",),
    "nim": ("NVIDIA_API_KEY",),
    "neuroflash": ("NEUROFLASH_CLIENT_ID", "NEUROFLASH_CLIENT_SECRET"),
}
_ENDPOINT_VARIABLES = {
    "nvidia": ("IMAGEGEN_NVIDIA_BASE_URL", "IMAGEGEN_NVCF_STATUS_URL"),
    "nim": ("IMAGEGEN_NIM_URL",),
    "neuroflash": ("IMAGEGEN_NEUROFLASH_TOKEN_URL", "IMAGEGEN_NEUROFLASH_API_URL"),
}


def _preflight_failure(name: str, err) -> PreflightProviderFailure:
    """The pre-flight message: what the provider said (already redacted by the client), and what to check."""
    from imagegen.errors import ProviderAuthError

    if "/" in name:
        where = f"the credentials and URLs saved in block {name!r} (`imagegen setup` saves them from the environment)"
    else:
        variables = _CREDENTIAL_VARIABLES.get(name, ()) if isinstance(err, ProviderAuthError) else ()
        variables += _ENDPOINT_VARIABLES.get(name, ())
        where = "the environment variables " + ", ".join(variables) if variables else "the provider's configuration"
    cause = "rejected the credentials" if isinstance(err, ProviderAuthError) else "failed"
    said = " ".join(str(err).split())  # one line, like every other environment problem
    return PreflightProviderFailure(
        f"provider {name!r} {cause} during the pre-flight check, before anything was generated or written; "
        f"the brief itself is valid: {said}; check {where}")


def validate(brief_path: str, provider: str | None, out: Path, out_source: str = "--out") -> list:
    """Everything that can refuse a run, before Prefect starts, before any spend and before anything
    is written; `out_source` names where `out` came from (`--out` or IMAGEGEN_OUTPUT_DIR).

    Raises BriefError for the brief's own problems and UsageError for a bad flag (exit 2);
    SettingsError when the environment is wrong (a variable, the output folder, the catalog, missing
    credentials) and PreflightProviderFailure when no provider of the chain can be used (exit 1).
    Configuration is checked first, then the output folder and the catalog (before any provider is
    asked anything), then the providers' capabilities, the free space the plan needs, and last (for a
    one-provider chain) the images left in its daily budget (DailyImagesExhausted, exit 1).
    A provider of the brief's fallback chain whose credentials are missing or refused is skipped when
    another one works (the flow says so in its summary); the message when none works is the first one's.
    """
    from imagegen.brief_source import load_brief
    from imagegen.errors import ProviderError
    from imagegen.fallbacks import check_chain
    from imagegen.settings import load_settings
    from imagegen.subject_edits import plan_subject_edits
    from imagegen_flows.blocks.preflight import check_catalog, check_output_folder, check_stores
    from imagegen_flows.blocks.resolve import catalog_block, provider_chain_members, publish_stores
    from imagegen_flows.flows.campaign import vlm_reviewer
    from imagegen_flows.flows.generate_stage import plan_member

    settings = load_settings(provider=provider)
    brief = load_brief(brief_path)
    members = provider_chain_members(brief.provider, settings, override=settings.provider,
                                     override_source="--provider" if provider else "IMAGEGEN_PROVIDER")
    vlm_reviewer(brief, settings)
    publish_stores(brief.publish, settings, out)
    catalog = catalog_block(settings, out)
    check_output_folder(out, out_source)
    check_catalog(catalog, settings.catalog_url, out_source)
    check_stores(*publish_stores(brief.publish, settings, out), brief.publish.small_store, brief.publish.large_store)
    try:  # the plan asks a provider for its capabilities (neuroflash: its model list, with the credentials);
        # the first that answers plans the run; the flow checks the fallbacks after it (quota) and skips failures
        chain = check_chain(members, lambda position, member: plan_member(
            brief, member, settings.local_master_size, primary=position == 0, source=brief_path), first_only=True)
    except ProviderError as err:  # every provider failed: the first one's reason (missing ones raise SettingsError)
        raise _preflight_failure(members[0][0], err) from None
    specs, targets_by_asset = chain.usable[0][1]
    # masks fitted to the planned masters' sizes, and the provider able to edit, before any spend
    plan_subject_edits(brief, specs, chain.usable[0][0].get_generator().capabilities(brief.provider.model))
    _check_free_space(out, out_source, specs, targets_by_asset)
    if len(members) == 1:  # with a fallback the flow moves the masters on instead (its pre-flight reserves)
        from imagegen_flows.flows.run_budget import check_daily_images

        check_daily_images(catalog, settings, chain.members()[0], specs, out / "masters")
    return specs


def _check_free_space(out: Path, out_source: str, specs: list, targets_by_asset: dict) -> None:
    from imagegen.errors import SettingsError
    from imagegen.preflight import estimate_space, space_problem

    if problem := space_problem(out, estimate_space(specs, targets_by_asset)):
        raise SettingsError([(out_source, problem)])


def _print_lines(err: Exception) -> None:
    """One `error:` line per problem (a SettingsError has one line per problem)."""
    for line in str(err).splitlines() or [type(err).__name__]:
        print(f"error: {line}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from imagegen.daily_images import DailyImagesExhausted
    from imagegen.errors import BriefError, ImagegenError, SettingsError, UsageError

    if not Path(args.brief).is_file():
        print(f"error: brief file not found: {args.brief}", file=sys.stderr)
        return EXIT_INVALID
    if args.max_provider_calls is not None and args.max_provider_calls < 0:
        print("error: --max-provider-calls: must be 0 or more", file=sys.stderr)
        return EXIT_INVALID
    out = args.out or os.environ.get("IMAGEGEN_OUTPUT_DIR") or "imagegen-output"
    out_source = "--out" if args.out or not os.environ.get("IMAGEGEN_OUTPUT_DIR") else "IMAGEGEN_OUTPUT_DIR"
    from imagegen_flows.deployments.temporary_api import await_temporary_api, launch_temporary_api

    launch_temporary_api()  # first: it starts while we import the flow and check the brief
    from imagegen_flows.blocks.resolve import wait_for_api_with

    wait_for_api_with(await_temporary_api)  # a saved block named by the run is read once it answers
    try:
        specs = validate(args.brief, args.provider, Path(out).resolve(), out_source)
    except BriefError as err:
        _print_problems(err)
        return EXIT_INVALID
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_INVALID
    except SettingsError as err:  # the environment is wrong, the brief is fine
        _print_lines(err)
        return EXIT_FAILED
    except (PreflightProviderFailure, DailyImagesExhausted) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_FAILED
    except ImagegenError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_INVALID

    from imagegen_flows.flows.campaign import campaign_flow
    from imagegen_flows.flows.interrupts import pending_interrupt

    _INTERRUPTED_RUN.update(specs=specs, masters_dir=Path(out).resolve() / "masters")
    try:
        await_temporary_api()
        summary = campaign_flow(brief=str(Path(args.brief).resolve()), out_dir=out, provider=args.provider,
                                max_provider_calls=args.max_provider_calls)
    except ImagegenError as err:
        if pending_interrupt() is not None:
            raise  # what the interrupt broke is not the run's failure: main() reports the interrupt
        print(f"error: {err}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps(summary.model_dump(mode="json"), sort_keys=True))
    else:
        print("\n".join(summary.lines()))
        print(f"\nopen {summary.gallery} in a browser to see every variant and its gate results")
    return EXIT_OK if not summary.failed else EXIT_FAILED


def setup(args: argparse.Namespace) -> int:
    from imagegen.errors import ImagegenError, SettingsError
    from imagegen.settings import load_settings
    from imagegen_flows.deployments.setup import run_setup

    try:
        report = run_setup(load_settings())
    except SettingsError as err:  # the environment, not a flag
        _print_lines(err)
        return EXIT_FAILED
    except ImagegenError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_INVALID
    print("\n".join(report.lines()))
    return EXIT_OK


def serve(args: argparse.Namespace) -> int:
    from imagegen.errors import ImagegenError
    from imagegen_flows.deployments.serve import api_is_ephemeral, serve_all

    if api_is_ephemeral():
        print("note: PREFECT_API_URL is not set, so this serves against a temporary API that lives only as long "
              "as this process; schedules and the UI need `prefect server start` and PREFECT_API_URL "
              "(see README, Operators)", file=sys.stderr)
    try:
        serve_all()
    except ImagegenError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def emit(args: argparse.Namespace) -> int:
    from imagegen_flows.deployments.emit import emit_brief_submitted
    from imagegen_flows.deployments.serve import api_is_ephemeral

    if api_is_ephemeral():
        print("error: PREFECT_API_URL is not set: an event sent to a temporary API reaches no deployment",
              file=sys.stderr)
        return EXIT_INVALID
    event = emit_brief_submitted(args.brief, args.out, args.campaign)
    print(f"sent imagegen.brief.submitted ({event.id if event else 'not sent'})")
    return EXIT_OK if event else EXIT_FAILED


COMMANDS = {"run": run, "setup": setup, "serve": serve, "emit": emit}


# The run the interrupted line speaks of: its planned masters and where their ledger is.
_INTERRUPTED_RUN: dict = {"specs": [], "masters_dir": None}


def _masters_finished(specs: list, masters_dir: Path | None) -> int:
    """How many planned masters are in the generation ledger: paid for, kept, and free for a rerun."""
    from imagegen.ledger import ledger_for_folder
    from imagegen.models import GeneratedImage
    from imagegen_flows.tasks.generate import outpaint_slot_key

    if masters_dir is None:
        return 0
    ledger = ledger_for_folder(masters_dir)  # the run's: with a PostgreSQL catalog, the shared one

    def recorded(key: str) -> GeneratedImage | None:  # read without the claim: a running task may hold it
        return ledger.recorded(key, GeneratedImage)

    made = {s.asset_id: recorded(s.cache_key()) for s in specs if not s.outpaint_from}
    for spec in specs:
        if spec.outpaint_from and (base := made.get(spec.outpaint_from)) is not None:
            made[spec.asset_id] = recorded(outpaint_slot_key(base, spec))
    return sum(1 for master in made.values() if master is not None)


def _finish_interrupted(code: int) -> None:
    """Ctrl-C or SIGTERM: one line, the temporary API stopped, the process ended with 130 or 143."""
    from imagegen_flows.deployments.temporary_api import stop_temporary_api
    from imagegen_flows.flows.interrupts import end_process, set_finisher

    set_finisher(None)  # once: a second interrupt or the watchdog must not print and stop again
    finished = _masters_finished(**_INTERRUPTED_RUN)
    print(f"interrupted: {finished} masters finished, rerun the same command to continue", file=sys.stderr,
          flush=True)
    stop_temporary_api()
    end_process(code)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command != "run":
        return COMMANDS[args.command](args)
    from imagegen_flows.deployments.temporary_api import prepare_temporary_api

    prepare_temporary_api()  # before anything slow: Prefect's server imports while we do (the run may need it)
    from imagegen_flows.flows.interrupts import (
        exit_code_for,
        pending_interrupt,
        quiet_tracebacks_once_interrupted,
        raise_interrupt,
        set_finisher,
    )

    set_finisher(_finish_interrupted)  # the watchdog ends an interrupted run through it
    quiet_tracebacks_once_interrupted()
    previous = {sig: signal.signal(sig, raise_interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = run(args)
    except BaseException as exc:  # Ctrl-C, SIGTERM (ours outside the flow, Prefect's inside it), or else
        interrupted = exit_code_for(exc)
        if interrupted is None:
            raise
        _finish_interrupted(interrupted)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if (interrupted := pending_interrupt()) is not None:  # the run ended anyway: the interrupt still wins
        _finish_interrupted(interrupted)
    return code


if __name__ == "__main__":
    sys.exit(main())
