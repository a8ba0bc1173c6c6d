"""Test helpers for provider authors: the conformance suite lives in :mod:`runctl_core.testing.conformance`."""
