"""The fallback chain's pre-flight (imagegen.fallbacks): a member that fails it is skipped with its reason,
whatever its place in the chain; the run stops only when none is left, with the first member's error."""

from __future__ import annotations

import pytest

from imagegen.errors import (
    BriefError,
    ProviderAuthError,
    ProviderNotConfigured,
    QuotaExhausted,
    TransientProviderError,
)
from imagegen.fallbacks import check_chain


def checker(failures: dict[str, Exception]):
    def check(position: int, member: str) -> str:
        if member in failures:
            raise failures[member]
        return f"plan of {member} at {position}"
    return check


def test_a_failing_primary_is_skipped_for_the_working_fallback():
    skipped = []
    chain = check_chain([("neuroflash", "neuroflash"), ("local", "local")],
                        checker({"neuroflash": ProviderAuthError("neuroflash: the token request answered 401")}),
                        on_skip=lambda name, reason: skipped.append((name, reason)))
    assert chain.members() == ["local"] and chain.usable[0][1] == "plan of local at 1"
    assert chain.skipped == {"neuroflash": "ProviderAuthError: neuroflash: the token request answered 401"}
    assert skipped == list(chain.skipped.items())


def test_a_failing_fallback_no_longer_aborts_a_run_whose_primary_works():
    chain = check_chain([("local", "local"), ("neuroflash", "neuroflash")],
                        checker({"neuroflash": QuotaExhausted("neuroflash: need 2 images,\n 0 left")}))
    assert chain.members() == ["local"]
    assert chain.skipped == {"neuroflash": "QuotaExhausted: neuroflash: need 2 images, 0 left"}  # one line


def test_a_member_without_credentials_is_skipped_like_one_that_fails_its_check():
    missing = ProviderNotConfigured([("NVIDIA_API_KEY", "provider 'nvidia' needs it in the environment")])
    chain = check_chain([("nvidia", missing), ("local", "local")], checker({}))
    assert chain.members() == ["local"]
    assert chain.skipped["nvidia"].startswith("ProviderNotConfigured: NVIDIA_API_KEY: provider 'nvidia' needs it")


def test_when_every_member_fails_the_first_ones_error_is_raised_and_nobody_is_told_of_skips():
    first = ProviderAuthError("neuroflash: rejected")
    told = []
    with pytest.raises(ProviderAuthError) as caught:
        check_chain([("neuroflash", "neuroflash"), ("nvidia", "nvidia")],
                    checker({"neuroflash": first, "nvidia": TransientProviderError("nvidia: 503")}),
                    on_skip=lambda *args: told.append(args))
    assert caught.value is first and told == []


def test_a_brief_error_stops_the_chain_at_once():
    with pytest.raises(BriefError):
        check_chain([("neuroflash", "neuroflash"), ("local", "local")],
                    checker({"neuroflash": BriefError([("provider.model", "unknown model")])}))


def test_first_only_stops_at_the_first_member_that_passes():
    asked = []

    def check(position: int, member: str) -> str:
        asked.append(member)
        if member == "neuroflash":
            raise ProviderAuthError("neuroflash: rejected")
        return member

    chain = check_chain([("neuroflash", "neuroflash"), ("local", "local"), ("nvidia", "nvidia")], check,
                        first_only=True)
    assert asked == ["neuroflash", "local"] and chain.members() == ["local"] and list(chain.skipped) == ["neuroflash"]
