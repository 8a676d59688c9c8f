from __future__ import annotations

import httpx
import pytest

from gateway_common import errors


def test_detail_round_trip_keeps_status_code_and_param() -> None:
    err = errors.ModelNotFound("no such model", param="model")
    back = errors.from_detail(errors.to_detail(err))
    assert isinstance(back, errors.NotFound)
    assert (back.http_status, back.code, back.param, back.message) == (
        404,
        "model_not_found",
        "model",
        "no such model",
    )


def test_all_providers_failed_lists_attempts_and_is_retryable_if_any_child_is() -> None:
    failed = errors.AllProvidersFailed(
        {
            "fake/primary": errors.ProviderUnavailable("HTTP 500"),
            "fake/backup": errors.ProviderRejected("HTTP 400"),
        }
    )
    assert failed.retryable
    assert failed.http_status == 502
    detail = errors.to_detail(failed)
    assert [(a.provider, a.deployment, a.retryable) for a in detail.attempts] == [
        ("fake", "primary", True),
        ("fake", "backup", False),
    ]
    assert len(errors.from_detail(detail).attempts) == 2
    assert not errors.AllProvidersFailed({"a/b": errors.ProviderRejected("no")}).retryable


def test_map_exceptions_raises_our_type_from_the_original() -> None:
    with (
        pytest.raises(errors.ProviderTimeout) as info,
        errors.map_exceptions({httpx.ReadTimeout: errors.ProviderTimeout}),
    ):
        raise httpx.ReadTimeout("slow")
    assert isinstance(info.value.__cause__, httpx.ReadTimeout)
    assert info.value.retryable


def test_map_exceptions_leaves_unmapped_and_own_errors_alone() -> None:
    with (
        pytest.raises(KeyError),
        errors.map_exceptions({httpx.ReadTimeout: errors.ProviderTimeout}),
    ):
        raise KeyError("x")
    with (
        pytest.raises(errors.InvalidRequest),
        errors.map_exceptions({Exception: errors.ProviderTimeout}),
    ):
        raise errors.InvalidRequest("bad")


def test_every_attempt_shed_is_503_provider_overloaded_and_a_provider_error_at_the_edge() -> None:
    def shed() -> errors.ProviderUnavailable:
        return errors.ProviderUnavailable("529", http_status=503, code=errors.PROVIDER_OVERLOADED)

    failed = errors.AllProvidersFailed([("a/one", shed()), ("a/two", shed())])
    assert (failed.http_status, failed.code, failed.retryable) == (503, "provider_overloaded", True)
    back = errors.from_detail(errors.to_detail(failed))
    # A provider's overload, not our own dependency's (ServiceUnavailable): a budget
    # settles it as a call that cost nothing.
    assert type(back) is errors.ProviderUnavailable
    assert (back.http_status, back.code) == (503, "provider_overloaded")
    mixed = errors.AllProvidersFailed(
        [("a/one", shed()), ("b/two", errors.ProviderUnavailable("500"))]
    )
    assert (mixed.http_status, mixed.code) == (502, "all_providers_failed")
