"""Loopback emulators of the external services, built from ../shared/docs/provider-contracts.md."""
