"""Runtime choices: threads follow how busy the machine is; precision and device picks."""
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from deeprecipe import runtime


def _threads_when_busy(monkeypatch, busy: float) -> int:
    monkeypatch.setattr(runtime, "busy_cores", lambda seconds=0.25: busy)
    runtime.auto_threads.cache_clear()
    try:
        return runtime.auto_threads()
    finally:
        runtime.auto_threads.cache_clear()


def test_threads_are_the_physical_cores_other_programs_leave_free(monkeypatch):
    cores = runtime.physical_cores()
    assert 1 <= cores <= len(os.sched_getaffinity(0))
    assert _threads_when_busy(monkeypatch, 0.0) == cores
    assert _threads_when_busy(monkeypatch, 0.3) == cores       # a little background noise takes no core away
    assert _threads_when_busy(monkeypatch, float(cores)) == 1
    assert _threads_when_busy(monkeypatch, 100.0) == 1


def test_threads_ignore_the_load_average(monkeypatch):
    # Right after a long job ends the 1-minute load average still reads high; the cores are free now.
    monkeypatch.setattr(os, "getloadavg", lambda: (5.0, 5.0, 5.0))
    assert _threads_when_busy(monkeypatch, 0.0) == runtime.physical_cores()


def test_busy_cores_sees_a_spinning_process_now():
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # let it start
        assert runtime.busy_cores(0.5) >= 0.6
    finally:
        spinner.kill()
        spinner.wait()


def test_busy_cores_leaves_out_this_process():
    # Our own spinning in the sample window is not "another program".
    import threading
    stop = threading.Event()
    spin = threading.Thread(target=lambda: [None for _ in iter(stop.is_set, True)])
    before = runtime.busy_cores(0.3)
    spin.start()
    try:
        during = runtime.busy_cores(0.5)
    finally:
        stop.set()
        spin.join()
    assert during < before + 0.5


def test_configured_threads_win(monkeypatch):
    before = torch.get_num_threads()
    try:
        assert runtime.set_threads(1) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def _cpuinfo_has_bf16() -> bool:
    flags = Path("/proc/cpuinfo").read_text().split()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def test_precision_auto_follows_the_cpus_bf16_support():
    # bf16 autocast is a win only where the CPU computes bf16 natively (AVX512-BF16 or AMX); read the
    # flags independently of torch's own check.
    expected = "bf16" if _cpuinfo_has_bf16() else "fp32"
    assert runtime.pick_precision("auto", torch.device("cpu")) == expected
    assert runtime.pick_precision("fp32", torch.device("cpu")) == "fp32"


def test_run_header_and_summary_state_threads_and_precision(mnist_npz, fast_overrides, tmp_path, capsys):
    from deeprecipe import api
    before = torch.get_num_threads()
    try:
        summary = api.train(None, overrides=[f"data.spec={mnist_npz(20)}", *fast_overrides, "train.epochs=1",
                                             "train.threads=1", "train.precision=fp32"], out=tmp_path / "run")
    finally:
        torch.set_num_threads(before)
    assert summary["threads"] == 1 and summary["precision"] == "fp32"
    header = next(line for line in capsys.readouterr().err.splitlines() if line.startswith("data "))
    assert header.endswith("fp32 channels_last, 1 thread")


def test_niced_programs_leave_the_cores_to_an_unniced_run():
    # A nice-19 background job gets ~1.5 % of a contended core: an un-niced run may take every core; a niced
    # run (say, tests started with `nice`) counts it, as a peer, and so does any run under autogroup scheduling.
    niced_ourselves = os.nice(0) > 0 or runtime._autogroup_enabled()
    before = runtime.busy_cores(0.3)  # whatever else the machine is doing
    spinner = subprocess.Popen([sys.executable, "-c", "import os; os.nice(19)\nwhile True: pass"])
    try:
        time.sleep(0.3)
        added = runtime.busy_cores(0.5) - before
        assert added >= 0.6 if niced_ourselves else added < 0.4
    finally:
        spinner.kill()
        spinner.wait()


_REFAULTS = """
import resource, sys, torch
from deeprecipe.runtime import keep_large_blocks_in_the_heap
applied = keep_large_blocks_in_the_heap() if sys.argv[1] == "kept" else None
torch.ones(16 << 20)  # 64 MB: above glibc's mmap threshold
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    torch.ones(16 << 20)  # freed and allocated again, as a training step's batch and activations are
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_large_tensors_freed_and_allocated_again_do_not_page_fault_anew():
    def refaults(mode: str) -> tuple[str, int]:
        out = subprocess.run([sys.executable, "-c", _REFAULTS, mode], capture_output=True, text=True, check=True)
        applied, faults = out.stdout.split()
        return applied, int(faults)
    applied, kept = refaults("kept")
    _, fresh = refaults("default")
    assert applied == "True"
    assert fresh >= 5 * (64 << 20) // 4096 * 0.9  # glibc maps each 64 MB block afresh: every page faults again
    assert kept < fresh / 3  # the heap keeps the pages between steps
