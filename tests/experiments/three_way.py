"""Shared check of the point-cloud and image studies' end-to-end runs."""

from __future__ import annotations


def assert_exact_relaxed_baseline(records: dict[str, dict]) -> None:
    """The three arms ran; the exact and the hardened relaxed model are invariant (float64
    round-off), the unconstrained baseline is not; hardening leaves exactly the exact model's
    parameters, while training had more."""
    assert set(records) == {"exact", "relaxed", "baseline"}
    assert records["exact"]["equivariance_error"] < 1e-12
    assert records["relaxed"]["equivariance_error"] < 1e-12
    assert records["baseline"]["equivariance_error"] > 1e-4
    assert records["relaxed"]["parameters"] == records["exact"]["parameters"]
    assert records["relaxed"]["trained_parameters"] > records["relaxed"]["parameters"]
