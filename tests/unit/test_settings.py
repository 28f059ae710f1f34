"""Settings from the environment: every number has its range, and a bad value is one SettingsError line
naming the variable as the user set it and what it must be; only numbers are echoed back."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from imagegen.errors import ImagegenError, SettingsError
from imagegen.settings import ImagegenSettings, load_settings, settings_error


@pytest.mark.parametrize("variable, value, message", [
    ("IMAGEGEN_LOCAL_MASTER_SIZE", "-5", "IMAGEGEN_LOCAL_MASTER_SIZE: must be a whole number from 64 to 8192, got '-5'"),
    ("IMAGEGEN_LOCAL_MASTER_SIZE", "abc", "IMAGEGEN_LOCAL_MASTER_SIZE: must be a whole number from 64 to 8192, "
                                          "got 'abc'"),
    ("IMAGEGEN_LOCAL_MASTER_SIZE", "63", "IMAGEGEN_LOCAL_MASTER_SIZE: must be a whole number from 64 to 8192, got '63'"),
    ("IMAGEGEN_LOCAL_MASTER_SIZE", "8193", "IMAGEGEN_LOCAL_MASTER_SIZE: must be a whole number from 64 to 8192, "
                                           "got '8193'"),
    ("IMAGEGEN_LOCAL_MASTER_SIZE", "", "IMAGEGEN_LOCAL_MASTER_SIZE: must be a whole number from 64 to 8192, got ''"),
    ("IMAGEGEN_MAX_PROVIDER_CALLS", "abc", "IMAGEGEN_MAX_PROVIDER_CALLS: must be a whole number, 0 or more, got 'abc'"),
    ("IMAGEGEN_MAX_PROVIDER_CALLS", "-1", "IMAGEGEN_MAX_PROVIDER_CALLS: must be a whole number, 0 or more, got '-1'"),
    ("IMAGEGEN_MAX_PROVIDER_CALLS", "2.5", "IMAGEGEN_MAX_PROVIDER_CALLS: must be a whole number, 0 or more, "
                                           "got '2.5'"),
    ("IMAGEGEN_NVIDIA_RATE_PER_MINUTE", "0", "IMAGEGEN_NVIDIA_RATE_PER_MINUTE: must be a finite number greater "
                                             "than 0, got '0'"),
    ("IMAGEGEN_NVIDIA_RATE_PER_MINUTE", "-3", "IMAGEGEN_NVIDIA_RATE_PER_MINUTE: must be a finite number greater "
                                              "than 0, got '-3'"),
    ("IMAGEGEN_NVIDIA_RATE_PER_MINUTE", "nan", "IMAGEGEN_NVIDIA_RATE_PER_MINUTE: must be a finite number greater "
                                               "than 0, got 'nan'"),
    ("IMAGEGEN_NEUROFLASH_RATE_PER_MINUTE", "inf", "IMAGEGEN_NEUROFLASH_RATE_PER_MINUTE: must be a finite number "
                                                   "greater than 0, got 'inf'"),
    ("IMAGEGEN_NEUROFLASH_RATE_PER_MINUTE", "fast", "IMAGEGEN_NEUROFLASH_RATE_PER_MINUTE: must be a finite number "
                                                    "greater than 0, got 'fast'"),
    ("IMAGEGEN_NVCF_POLL_DEADLINE_SECONDS", "0", "IMAGEGEN_NVCF_POLL_DEADLINE_SECONDS: must be a finite number "
                                                 "greater than 0, got '0'"),
    ("IMAGEGEN_LEDGER_LEASE_SECONDS", "0.5", "IMAGEGEN_LEDGER_LEASE_SECONDS: must be a finite number from 1 to "
                                             "3600, got '0.5'"),
    ("IMAGEGEN_LEDGER_LEASE_SECONDS", "nan", "IMAGEGEN_LEDGER_LEASE_SECONDS: must be a finite number from 1 to "
                                             "3600, got 'nan'"),
])
def test_a_bad_number_is_one_line_naming_the_variable(monkeypatch, variable, value, message):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert str(caught.value) == message
    assert caught.value.problems == [tuple(message.split(": ", 1))]
    assert isinstance(caught.value, ImagegenError)


@pytest.mark.parametrize("variable, value, field, expected", [
    ("IMAGEGEN_LOCAL_MASTER_SIZE", "64", "local_master_size", 64),
    ("IMAGEGEN_LOCAL_MASTER_SIZE", "8192", "local_master_size", 8192),
    ("IMAGEGEN_MAX_PROVIDER_CALLS", "0", "max_provider_calls", 0),
    ("IMAGEGEN_NVIDIA_RATE_PER_MINUTE", "0.5", "nvidia_rate_per_minute", 0.5),
    ("IMAGEGEN_NEUROFLASH_RATE_PER_MINUTE", "60000", "neuroflash_rate_per_minute", 60000),
    ("IMAGEGEN_NVCF_POLL_DEADLINE_SECONDS", "0.5", "nvcf_poll_deadline_seconds", 0.5),
    ("IMAGEGEN_LEDGER_LEASE_SECONDS", "1", "ledger_lease_seconds", 1.0),
    ("IMAGEGEN_LEDGER_LEASE_SECONDS", "3600", "ledger_lease_seconds", 3600.0),
])
def test_the_edges_of_each_range_are_accepted(monkeypatch, variable, value, field, expected):
    monkeypatch.setenv(variable, value)
    assert getattr(load_settings(), field) == expected


def test_the_defaults_load_without_any_variable():
    settings = load_settings()
    assert (settings.local_master_size, settings.max_provider_calls) == (2048, None)
    assert (settings.nvidia_rate_per_minute, settings.neuroflash_rate_per_minute) == (40.0, 30.0)
    assert settings.ledger_lease_seconds == 120.0


def test_every_bad_variable_gets_its_own_line(monkeypatch):
    monkeypatch.setenv("IMAGEGEN_LOCAL_MASTER_SIZE", "100000")
    monkeypatch.setenv("IMAGEGEN_NVIDIA_RATE_PER_MINUTE", "0")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    lines = str(caught.value).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("IMAGEGEN_LOCAL_MASTER_SIZE: ") and lines[1].startswith("IMAGEGEN_NVIDIA_RATE_")


def test_an_override_is_named_by_its_parameter_not_the_variable(monkeypatch):
    monkeypatch.setenv("IMAGEGEN_MAX_PROVIDER_CALLS", "3")
    with pytest.raises(SettingsError, match=r"^max_provider_calls: must be a whole number, 0 or more, got '-1'$"):
        load_settings(max_provider_calls=-1)
    assert load_settings(max_provider_calls=None).max_provider_calls == 3  # None means "not given"


def test_a_secret_is_never_echoed_and_is_named_by_its_variable(monkeypatch):
    secret = 987654321012345
    with pytest.raises(ValidationError) as caught:
        ImagegenSettings(nvidia_api_key=secret)
    error = settings_error(caught.value)
    assert str(secret) not in str(error)
    assert str(error) == "NVIDIA_API_KEY: is not a valid value (a secret: not shown)"
    monkeypatch.setenv("IMAGEGEN_NVIDIA_API_KEY", "nvapi-SENTINEL-set-by-prefix")
    with pytest.raises(ValidationError) as caught:
        ImagegenSettings(nvidia_api_key=secret)
    assert str(settings_error(caught.value)).startswith("IMAGEGEN_NVIDIA_API_KEY: ")  # the one the user set


def test_a_value_that_is_not_a_number_is_not_echoed():
    with pytest.raises(ValidationError) as caught:
        ImagegenSettings(nvidia_base_url=["https://user:hunter2@example.com"])
    message = str(settings_error(caught.value))
    assert message.startswith("IMAGEGEN_NVIDIA_BASE_URL: is not valid (") and "hunter2" not in message


def test_settings_error_folds_a_reason_onto_one_line():
    error = SettingsError([("IMAGEGEN_CATALOG_URL", "connection failed:\n\tIs the server running?")])
    assert str(error) == "IMAGEGEN_CATALOG_URL: connection failed: Is the server running?"
