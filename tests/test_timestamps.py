"""runctl_core.timestamps.parse_time: the one reading of providers' timestamps (AWS, RunPod, Lyceum, job records)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from runctl_core.timestamps import parse_time

UTC_NOON = datetime(2025, 5, 1, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "value",
    ["2025-05-01T12:00:00Z", "2025-05-01T12:00:00+00:00", "2025-05-01T14:00:00+02:00", "2025-05-01T12:00:00"],
)
def test_iso_strings_become_aware_times(value: str) -> None:
    parsed = parse_time(value)
    assert parsed == UTC_NOON and parsed is not None and parsed.tzinfo is not None


def test_datetimes_keep_their_zone_and_naive_ones_are_utc() -> None:
    plus_two = datetime(2025, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    assert parse_time(plus_two) is plus_two
    naive = parse_time(datetime(2025, 5, 1, 12, 0))
    assert naive == UTC_NOON and naive is not None and naive.tzinfo is timezone.utc


@pytest.mark.parametrize("value", [None, "", "yesterday", "2025-13-01T00:00:00Z", 1714564800, b"2025-05-01"])
def test_what_cannot_be_read_is_unknown(value: object) -> None:
    assert parse_time(value) is None


def test_the_providers_use_the_core_helper() -> None:
    import runctl_aws.common
    import runctl_lyceum.compute
    import runctl_runpod.compute

    for module in (runctl_aws.common, runctl_lyceum.compute, runctl_runpod.compute):
        assert module.parse_time is parse_time, module.__name__
