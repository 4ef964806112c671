"""Per-channel statistics against numpy on small images: chunking, the empty set, constant channels."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from deeprecipe.data.stats import channel_stats


def _images(n=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, 4, 5), generator=g, dtype=torch.uint8)
    x[:, 2] = x[:, 2] // 4  # channels on different scales
    return x


def test_mean_and_population_std_per_channel_on_the_unit_scale():
    x = _images()
    mean, std = channel_stats(x)
    ref = x.numpy().astype(np.float64) / 255.0
    assert mean == pytest.approx(ref.mean(axis=(0, 2, 3)).tolist(), abs=1e-12)
    assert std == pytest.approx(ref.std(axis=(0, 2, 3)).tolist(), abs=1e-12)  # ddof=0
    assert isinstance(mean, list) and isinstance(std[0], float)


@pytest.mark.parametrize("chunk", [1, 3, 7, 100])
def test_chunks_do_not_change_the_result(chunk):
    x = _images()
    whole = channel_stats(x)
    mean, std = channel_stats(x, chunk=chunk)
    assert mean == pytest.approx(whole[0], abs=1e-12) and std == pytest.approx(whole[1], abs=1e-12)


def test_the_default_chunk_covers_large_sets():
    x = torch.zeros(4100, 1, 1, 1, dtype=torch.uint8)
    x[4096:] = 255  # past the first chunk of 4096
    mean, _ = channel_stats(x)
    assert mean[0] == pytest.approx(4 / 4100)


def test_empty_set_and_constant_channel():
    assert channel_stats(torch.zeros(0, 2, 3, 3, dtype=torch.uint8)) == ([0.5, 0.5], [0.25, 0.25])
    mean, std = channel_stats(torch.full((3, 1, 2, 2), 51, dtype=torch.uint8))
    assert mean == pytest.approx([0.2]) and std == [pytest.approx(1e-3)]  # never 0: no division by zero later
    mean, std = channel_stats(torch.tensor([[[[0, 1]]]], dtype=torch.uint8))  # tiny but non-zero spread
    assert std[0] == pytest.approx(0.5 / 255)


def test_a_streamed_set_gives_its_subsample():
    x = _images()

    class Streamed:
        shape = (10_000, 3, 4, 5)

        def stats_sample(self):
            return x

    assert channel_stats(Streamed()) == channel_stats(x)
