"""recctl.kernels: the one loader of the compiled kernels and the switch to their fallbacks."""

from __future__ import annotations

import types

import pytest

from recctl import kernels


def test_a_kernel_missing_from_an_older_build_gives_its_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    # an extension built before a kernel was added (a checkout updated without reinstalling)
    monkeypatch.setattr(kernels, "_MODULE", types.SimpleNamespace(select_f32=len))
    assert kernels.compiled("select_f32") is len
    assert kernels.compiled("aggregate_runs") is None
    monkeypatch.setattr(kernels, "_MODULE", None)  # not built at all
    assert kernels.compiled("select_f32") is None


@pytest.mark.parametrize(("value", "wanted"), [("", True), ("compiled", True), ("numpy", False), (" NumPy ", False)])
def test_the_switch_is_read_per_call(monkeypatch: pytest.MonkeyPatch, value: str, wanted: bool) -> None:
    monkeypatch.setenv(kernels.KERNELS_ENV, value)
    assert kernels.wanted() is wanted
