"""How many torch threads a serving process takes (editing.loading.serving_threads)."""

from __future__ import annotations

import pytest

from contract.config import Settings
from editing.loading import serving_threads


@pytest.fixture(autouse=True)
def _no_omp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)


def test_cpu_leaves_one_core_for_http_and_clients() -> None:
    settings = Settings(device="cpu")
    assert serving_threads(settings, cores=2) == 1
    assert serving_threads(settings, cores=16) == 15
    assert serving_threads(settings, cores=1) == 1


def test_explicit_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert serving_threads(Settings(device="cpu", threads=2), cores=8) == 2


def test_omp_num_threads_is_left_to_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert serving_threads(Settings(device="cpu"), cores=8) is None


def test_cuda_keeps_torch_default() -> None:
    assert serving_threads(Settings(device="cuda"), cores=8) is None


def test_threads_must_be_positive() -> None:
    with pytest.raises(ValueError, match="threads"):
        Settings(threads=0)
