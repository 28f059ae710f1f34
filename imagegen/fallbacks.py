"""The provider fallback chain's pre-flight: a member that fails it is skipped, with its reason, and the
run stops only when no member is left.

A member fails its pre-flight when its credentials are missing (ProviderNotConfigured), rejected or
unreachable, or its quota is too small (any ProviderError raised while checking it). Anything else, a
brief error above all, is not a reason to skip a member: it stops the run at once. When every member
fails, the error raised is the first member's own, so the message is what it always was for a
single-provider chain.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from imagegen.errors import ProviderError, ProviderNotConfigured, safe_reason

Member = TypeVar("Member")
Checked = TypeVar("Checked")

# What a member may fail its pre-flight with, and be skipped for.
PREFLIGHT_FAILURES: tuple[type[Exception], ...] = (ProviderError, ProviderNotConfigured)


@dataclass
class ChainCheck(Generic[Member, Checked]):
    """The members that passed, in chain order, each with what its check returned; those skipped."""

    usable: list[tuple[Member, Checked]] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # member name -> why, one line
    errors: list[Exception] = field(default_factory=list)  # the skipped members' errors, in chain order

    def members(self) -> list[Member]:
        return [member for member, _ in self.usable]


def skip_reason(error: Exception) -> str:
    """One line saying why a member was skipped (our errors carry no secrets; whitespace folded)."""
    return " ".join(safe_reason(error).split())


def check_chain(members: Sequence[tuple[str, Member | Exception]], check: Callable[[int, Member], Checked],
                on_skip: Callable[[str, str], None] | None = None, *,
                first_only: bool = False) -> ChainCheck[Member, Checked]:
    """Run `check(position, member)` for each member in order (with `first_only`, up to the first that
    passes; the rest are left unchecked and out of `usable`); a member given as an exception (it could
    not even be built) or whose check raises a pre-flight failure is skipped. Raises the first member's
    error when no member passes, any other exception at once; otherwise tells `on_skip(name, reason)`
    of each member skipped."""
    result: ChainCheck[Member, Checked] = ChainCheck()
    for position, (name, member) in enumerate(members):
        if first_only and result.usable:
            break
        try:
            if isinstance(member, Exception):
                raise member
            result.usable.append((member, check(position, member)))
        except PREFLIGHT_FAILURES as error:
            result.errors.append(error)
            result.skipped[name] = skip_reason(error)
    if not result.usable:
        raise result.errors[0]
    for name, reason in result.skipped.items():
        if on_skip is not None:
            on_skip(name, reason)
    return result
