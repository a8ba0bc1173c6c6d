from __future__ import annotations

import pytest

from runctl_core.errors import ProviderError, TransientError
from runctl_core.redact import redact
from runctl_core.retry import RetryPolicy, call_with_retries


def test_retries_transient_then_succeeds() -> None:
    calls, sleeps = [], []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TransientError("throttled", retry_after=0.5 if len(calls) == 2 else None)
        return "ok"

    assert call_with_retries(flaky, RetryPolicy(attempts=5, base_delay=0.1), sleep=sleeps.append) == "ok"
    assert len(calls) == 3 and sleeps[1] == 0.5 and 0.05 <= sleeps[0] <= 0.1


def test_gives_up_with_count_and_does_not_retry_other_errors() -> None:
    def always() -> None:
        raise TransientError("service unavailable")

    with pytest.raises(TransientError, match=r"gave up after 3 tries"):
        call_with_retries(always, RetryPolicy(attempts=3, base_delay=0.01), sleep=lambda _s: None)
    count = []

    def fatal() -> None:
        count.append(1)
        raise ProviderError("quota")

    with pytest.raises(ProviderError):
        call_with_retries(fatal, RetryPolicy(), sleep=lambda _s: None)
    assert count == [1]


def test_redact(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LYCEUM_API_KEY", "lk_live_1234567890abcdef")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    text = (
        "key lk_live_1234567890abcdef secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY id AKIAIOSFODNN7EXAMPLE "
        "Authorization: Bearer abcdefghijklmnop"
    )
    out = redact(text)
    assert (
        "lk_live" not in out and "wJalr" not in out and "AKIAIOSFODNN7EXAMPLE" not in out and "abcdefghijkl" not in out
    )
    assert out.count("****") == 4
