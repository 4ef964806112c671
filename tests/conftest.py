"""Shared fixtures: small real data (the built-in MNIST subset) and a fast training config."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from skip_guard import register

# Tests share two cores; at most two threads per process keeps runs predictable. OMP_NUM_THREADS, when set, wins:
# the mutation runs set it to 1, since a process forked after torch started a thread pool can hang in its children.
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or max(1, min(2, os.cpu_count() or 1))))


def pytest_configure(config):
    register(config)  # on CI (env CI set) any skip but a GPU one fails the session


FAST = ["model.name=lenet5", "train.epochs=3", "train.batch_size=32"]

# Where a run without --out lands: runs/ under the working directory (and the checkout's, if pytest runs elsewhere).
_DEFAULT_RUNS = {Path.cwd() / "runs", Path(__file__).resolve().parents[1] / "runs"}


def _run_folders() -> set[Path]:
    return {p for d in _DEFAULT_RUNS if d.is_dir() for p in d.iterdir()}


@pytest.fixture(autouse=True)
def _writes_only_under_tmp(request):
    """Tests write only under pytest's temporary folders: a test that leaves a new folder in ./runs fails
    (give its train()/CLI call an out= under tmp_path)."""
    before = _run_folders()
    yield
    new = sorted(str(p) for p in _run_folders() - before)
    if new:
        pytest.fail(f"{request.node.nodeid} wrote into the checkout's runs/: {', '.join(new)}", pytrace=False)


@pytest.fixture(scope="session")
def mnist_arrays():
    """The built-in 5,000 MNIST digits as numpy arrays (x uint8 (N,28,28), y int64)."""
    from deeprecipe.data.sources import load_source
    ds = load_source("builtin:mnist5k")
    return ds.images[:, 0].numpy(), ds.labels.numpy()


@pytest.fixture(scope="session")
def mnist_npz(tmp_path_factory, mnist_arrays):
    """A factory: mnist_npz(per_class) → npz:PATH holding the first `per_class` digits of each class (cached)."""
    x, y = mnist_arrays
    made: dict[int, str] = {}

    def make(per_class: int) -> str:
        if per_class not in made:
            idx = np.concatenate([np.flatnonzero(y == c)[:per_class] for c in range(10)])
            path = tmp_path_factory.mktemp("data") / f"mnist{per_class}x10.npz"
            np.savez(path, x=x[idx], y=y[idx])
            made[per_class] = f"npz:{path}"
        return made[per_class]

    return make


@pytest.fixture(scope="session")
def mnist_small_npz(mnist_npz):
    """A stratified 1,000-image slice of the built-in set as npz:PATH (100 per class)."""
    return mnist_npz(100)


@pytest.fixture
def fast_overrides():
    """--set overrides for a seconds-long training run."""
    return list(FAST)


@pytest.fixture(autouse=True, scope="session")
def _private_decode_cache(tmp_path_factory):
    """Photo folders decode into a per-session cache, never the user's ~/.cache/deeprecipe."""
    old = os.environ.get("DEEPRECIPE_CACHE")
    os.environ["DEEPRECIPE_CACHE"] = str(tmp_path_factory.mktemp("decode-cache"))
    yield
    if old is None:
        os.environ.pop("DEEPRECIPE_CACHE", None)
    else:
        os.environ["DEEPRECIPE_CACHE"] = old


def randomise_bn_stats(model: torch.nn.Module) -> None:
    """Random BatchNorm running statistics and affine weights, so a weights-loading test cannot pass on defaults."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            torch.nn.init.normal_(m.weight, 1, 0.1)
            torch.nn.init.normal_(m.bias, 0, 0.1)
