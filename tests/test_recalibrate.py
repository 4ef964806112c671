"""Batch-norm re-estimation: exact running statistics, and `deeprecipe recalibrate` on a really trained run."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from deeprecipe.api import evaluate, train
from deeprecipe.cli import main
from deeprecipe.config import build_config
from deeprecipe.session import build_model
from deeprecipe.train.bn_stats import reestimate_bn
from deeprecipe.train.checkpoint import load_checkpoint, save_checkpoint

SMALL = ["model.widths=[8,16]", "model.convs=1", "train.epochs=3", "train.batch_size=16", "data.augment=[]",
         "train.threads=1"]


def test_reestimate_gives_the_data_statistics_and_leaves_dropout_and_weights_alone():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.Dropout(0.5), nn.Linear(4, 2), nn.BatchNorm1d(2))
    net.train()
    x = torch.randn(300, 5) * 3 + 1
    weights = {k: v.clone() for k, v in net.state_dict().items() if "running" not in k and "num_batches" not in k}
    seen = reestimate_bn(net, x.split(100))
    assert seen == 300 and net.training and net[2].training  # modes restored
    h = net[0](x)
    assert torch.allclose(net[1].running_mean, h.mean(0), atol=1e-5)
    # equal-weight mean of the per-batch unbiased variances
    var = torch.stack([b.var(0, unbiased=True) for b in h.split(100)]).mean(0)
    assert torch.allclose(net[1].running_var, var, atol=1e-4)
    assert net[1].momentum == 0.1
    # the second norm saw dropout-free inputs, normalised by the first one's batch statistics
    with torch.no_grad():
        inputs = [net[3](nn.functional.batch_norm(b, None, None, net[1].weight, net[1].bias, training=True))
                  for b in h.split(100)]
    assert torch.allclose(net[4].running_mean, torch.cat(inputs).mean(0), atol=1e-5)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in weights.items())


@pytest.fixture(scope="module")
def trained_run(mnist_small_npz, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "bn"
    summary = train(None, out=out, overrides=[f"data.spec={mnist_small_npz}", *SMALL], show_progress=False)
    return out, summary


def test_recalibrate_repairs_spoiled_statistics_and_keeps_the_original(trained_run, capsys):
    run, summary = trained_run
    best = run / "checkpoints" / "best.pt"
    ckpt = load_checkpoint(best)
    for k, v in ckpt["model"].items():  # running statistics far from the data's: the eval-mode net breaks
        if k.endswith("running_mean"):
            v.add_(3.0)
        elif k.endswith("running_var"):
            v.mul_(50.0)
    save_checkpoint(best, {k: v for k, v in ckpt.items() if k not in ("format", "sha256")})
    assert main(["recalibrate", str(run)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["test_acc_before"] < summary["test_acc"] - 0.2
    assert result["test_acc_after"] >= summary["test_acc"] - 0.05
    assert result["val_acc_after"] > result["val_acc_before"]
    assert result["train_images"] == 700
    fixed = run / "checkpoints" / "best_recalibrated.pt"
    assert load_checkpoint(fixed)["bn_recalibrated"]["from"] == "best.pt"
    assert json.loads((run / "recalibration.json").read_text()) == result
    assert evaluate(fixed)["acc"] == pytest.approx(result["test_acc_after"])
    assert evaluate(run)["acc"] == pytest.approx(result["test_acc_before"])  # best.pt itself is untouched


def test_recalibrate_refuses_a_model_without_batch_norm(trained_run, tmp_path, capsys):
    run, _ = trained_run
    ckpt = load_checkpoint(run / "checkpoints" / "best.pt")
    ckpt["config"]["model"]["norm"] = "none"
    cfg = build_config(ckpt["config"])
    ckpt["model"] = build_model(cfg, 10, tuple(ckpt["input_shape"])).state_dict()
    save_checkpoint(tmp_path / "plain.pt", {k: v for k, v in ckpt.items() if k not in ("format", "sha256")})
    assert main(["recalibrate", str(tmp_path / "plain.pt")]) == 2
    assert "no batch-norm layers" in capsys.readouterr().err
