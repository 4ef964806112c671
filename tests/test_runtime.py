"""Runtime choices: threads follow how busy the machine is; precision and device picks."""
import os

import torch

from deeprecipe import runtime


def _threads_at_load(monkeypatch, load: float) -> int:
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    runtime.auto_threads.cache_clear()
    try:
        return runtime.auto_threads()
    finally:
        runtime.auto_threads.cache_clear()


def test_threads_shrink_when_other_programs_use_the_cores(monkeypatch):
    cores = len(os.sched_getaffinity(0))
    assert _threads_at_load(monkeypatch, 0.0) == cores
    assert _threads_at_load(monkeypatch, float(cores)) == 1
    assert _threads_at_load(monkeypatch, 100.0) == 1


def test_configured_threads_win(monkeypatch):
    before = torch.get_num_threads()
    try:
        assert runtime.set_threads(1) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_precision_auto_is_fp32_or_bf16_on_cpu():
    assert runtime.pick_precision("auto", torch.device("cpu")) in ("fp32", "bf16")
    assert runtime.pick_precision("fp32", torch.device("cpu")) == "fp32"
