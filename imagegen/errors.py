"""Exceptions with a contract: which ones are worth retrying, and messages that never carry secrets."""

from __future__ import annotations


class ImagegenError(Exception):
    """Base class for every error this project raises on purpose."""


class BriefError(ImagegenError):
    """A brief failed validation. `problems` is a list of (field path, reason)."""

    def __init__(self, problems: list[tuple[str, str]], source: str | None = None):
        self.problems = problems
        self.source = source
        where = f" in {source}" if source else ""
        lines = [f"  {loc}: {reason}" for loc, reason in problems]
        super().__init__(f"invalid brief{where}:\n" + "\n".join(lines))


class SettingsError(ImagegenError):
    """The environment cannot run anything, whatever the brief: a variable out of range, missing
    credentials, an output folder or a catalog that cannot be used. The brief is fine: the CLI exits 1.

    `problems` is a list of (where, reason); `where` names what to change: an environment variable, a
    flag's folder (`--out`), or the brief field that needs it. The message is one line per problem
    (whitespace in a reason is folded, so a driver's multi-line text stays on its line) and never holds
    a secret's value.
    """

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = [(where, " ".join(reason.split())) for where, reason in problems]
        super().__init__("\n".join(f"{where}: {reason}" for where, reason in self.problems))


class ProviderNotConfigured(SettingsError):
    """A provider's credentials (or its endpoint) are missing from the environment: that provider cannot
    be used, but another member of the brief's fallback chain may be."""


class RenderInputUnreadable(ImagegenError):
    """A file a render reads (the master, the logo, the signing identity) is not readable on the machine
    that renders: on a Dask cluster, a worker that does not share the flow's paths."""


class CutoutFailed(ImagegenError):
    """Background removal (publish.background) found no plausible subject in a master; the reason says why."""


class UsageError(ImagegenError):
    """A command-line flag is invalid (the CLI exits 2, as for an invalid brief). `flag` names it."""

    def __init__(self, flag: str, reason: str):
        self.flag = flag
        self.reason = reason
        super().__init__(f"{flag}: {reason}")


class ProviderError(ImagegenError):
    """A provider refused or failed. Subclasses say whether waiting can help.

    `answer_lost` is set by the HTTP layer when the request went out whole and no complete answer came
    back (a read timeout, a connection dropped mid-answer, a cut-off body): the provider may have run it.
    """

    transient = False
    answer_lost = False

    def __init__(self, message: str, *, provider: str = "", status: int | None = None,
                 retry_after: float | None = None):
        self.provider = provider
        self.status = status
        self.retry_after = retry_after
        super().__init__(message)


class TransientProviderError(ProviderError):
    """Timeouts, transport errors, 408/425/429/5xx: the same call may succeed later."""

    transient = True


class OutcomeUnknown(TransientProviderError):
    """A paid request went out and its answer was lost (read timeout, connection dropped after the body
    was sent, 5xx after submission): the provider may have charged for it.

    The run counts it as spent and sends the same request again at most once (imagegen.budget.paid_call);
    `request_key` names the request (imagegen.pending.request_key), so a second loss of the same request
    in one run is not retried again (`transient` then turns False on the instance).
    """

    def __init__(self, message: str, *, provider: str = "", status: int | None = None, request_key: str = ""):
        super().__init__(message, provider=provider, status=status)
        self.request_key = request_key
        self.answer_lost = True

    def not_sent_again(self, losses: int) -> OutcomeUnknown:
        """The same error, final: this run lost `losses` answers to this request and sends it no more."""
        final = OutcomeUnknown(f"{self} (answers to this request lost {losses} times in this run; not sent again)",
                               provider=self.provider, status=self.status, request_key=self.request_key)
        final.transient = False
        return final


class StillRunning(TransientProviderError):
    """A request paid earlier (its NVCF request id kept) has not answered yet: this call polled it and
    paid nothing; a retry or a rerun polls it again."""


# What a paid POST can get after the provider took it: the work may have run (and been billed).
# 503 and 429 say the request was refused before any work, so they are safe to send again.
STATUSES_AFTER_SUBMISSION = frozenset({500, 502, 504})


def outcome_unknown(exc: BaseException) -> bool:
    """True when `exc`, raised by a paid POST, leaves open whether the provider ran (and billed) it."""
    return (isinstance(exc, ProviderError) and bool(getattr(exc, "transient", False))
            and (exc.answer_lost or exc.status in STATUSES_AFTER_SUBMISSION))


class ContentFiltered(ProviderError):
    """The provider's safety filter withheld the image (NVIDIA: finishReason CONTENT_FILTERED)."""


class QuotaExhausted(ProviderError):
    """No quota left (daily or total). Retrying only burns time; fall back or stop."""


class ProviderAuthError(ProviderError):
    """Credentials were rejected (401/403 that is not a quota answer)."""


class ProviderRequestInvalid(ProviderError):
    """The request broke the provider's rules (422, bad size, model not enabled, ...)."""


class BudgetExhausted(ProviderError):
    """The run's own budget of provider calls is spent; nothing more is requested."""


class MasterChanged(ImagegenError):
    """A master's file no longer holds the bytes the ledger recorded for it (truncated, tampered): it is
    reported, never trusted and never silently paid for again."""

    transient = False


class StoreError(ImagegenError):
    """An asset store failed."""

    transient = False


class TransientStoreError(StoreError):
    transient = True


class CatalogError(ImagegenError):
    """The catalog could not be written."""

    transient = False


class TransientCatalogError(CatalogError):
    """The catalog was unreachable or busy; the same write may succeed later."""

    transient = True


class LedgerError(ImagegenError):
    """The shared paid-call ledger (or its masters) could not be read or written."""

    transient = False


class TransientLedgerError(LedgerError):
    """The ledger's database was unreachable or busy; the same claim may succeed later."""

    transient = True


# HTTP statuses that may succeed when asked again later.
TRANSIENT_HTTP_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


def is_transient_status(status: int) -> bool:
    return status in TRANSIENT_HTTP_STATUSES or 500 <= status <= 599


def is_transient(exc: BaseException) -> bool:
    """True when retrying `exc` can succeed: our transient errors, httpx timeouts and transport errors."""
    if getattr(exc, "transient", False):
        return True
    try:
        import httpx
    except ImportError:  # pragma: no cover - httpx is a hard dependency
        return False
    if isinstance(exc, (httpx.TimeoutException, httpx.TransportError)):
        return True
    if isinstance(exc, httpx.HTTPStatusError):
        return is_transient_status(exc.response.status_code)
    return False


def safe_reason(exc: BaseException | None) -> str:
    """Our own exceptions carry no secrets by construction; anything else is reduced to its type."""
    if exc is None:
        return "unknown failure"
    if isinstance(exc, ProviderError) or type(exc).__module__.startswith("imagegen"):
        return f"{type(exc).__name__}: {exc}"
    return type(exc).__name__


def fallback_worthy(exc: BaseException | None) -> bool:
    """Outages and exhausted quota move a master to the next provider; bad requests do not."""
    return isinstance(exc, QuotaExhausted) or (exc is not None and is_transient(exc))
