"""The trainer: every optimizer and schedule learns, and each regulariser/guard does what it says."""
from __future__ import annotations

import math
import shutil
import signal

import numpy as np
import pytest
import torch
from torch import nn

from deeprecipe.api import evaluate_ensemble, train
from deeprecipe.session import Session
from deeprecipe.config import ScheduleConfig, resolve_config
from deeprecipe.errors import DeepRecipeError
from deeprecipe.train.checkpoint import load_checkpoint
from deeprecipe.train.optim import build_optimizer, list_optimizers
from deeprecipe.train.schedule import Plateau, lr_factor, plot_schedule, schedule_curve
from deeprecipe.train.trainer import Trainer, TrainingInterrupted
from deeprecipe.utils import read_jsonl

TINY = ["data.val_fraction=0.2", "data.test_fraction=0.1", "data.augment=[]", "train.batch_size=32",
        "model.widths=[8,16]", "model.convs=1", "train.precision=fp32", "train.deterministic=true",
        "train.channels_last=false", "schedule.name=constant", "optim.weight_decay=0",
        "train.threads=1"]  # two threads on two shared cores spin-wait badly


@pytest.fixture(scope="module")
def tiny_npz(mnist_npz):
    """400 digits (40 per class): 280 train / 80 val / 40 test, 9 steps an epoch at batch 32."""
    return mnist_npz(40)


def make_trainer(npz, overrides=(), run_dir=None, cls=Trainer) -> Trainer:
    cfg = resolve_config(None, [f"data.spec={npz}", *TINY, *overrides])
    return Session.create(cfg).make_trainer(run_dir, show_progress=False, trainer_cls=cls)


def step_losses(run_dir) -> list[float]:
    return [r["loss"] for r in read_jsonl(run_dir / "steps.jsonl")]


# ------------------------------------------------------------------------------------ every optimizer / schedule
LEARNS = ["train.batch_size=16", "model.widths=[16,32]", "train.epochs=3", "log.steps_every=1"]  # 54 steps
OPTIMIZER_LR = {"sgd": 0.1, "nesterov": 0.1, "rmsprop": 3e-3, "adam": 1e-2, "adamw": 1e-2, "nadam": 1e-2, "adamax": 3e-2}


@pytest.mark.parametrize("name", sorted(OPTIMIZER_LR))
def test_each_optimizer_lowers_the_loss(tiny_npz, tmp_path, name):
    assert set(OPTIMIZER_LR) == set(list_optimizers())
    t = make_trainer(tiny_npz, [f"optim.name={name}", f"optim.lr={OPTIMIZER_LR[name]}", *LEARNS], tmp_path)
    t.fit()
    losses = step_losses(tmp_path)
    assert len(losses) == 54
    # The untrained loss starts at chance (ln 10 = 2.30); 0.15 below it is learning, not noise.
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.15, losses


@pytest.mark.parametrize("name", ["constant", "step", "multistep", "exponential", "cosine", "onecycle", "plateau"])
def test_each_schedule_lowers_the_loss(tiny_npz, tmp_path, name):
    t = make_trainer(tiny_npz, ["optim.name=adam", "optim.lr=1e-2", *LEARNS, f"schedule.name={name}", "schedule.step_size=1", "schedule.gamma=0.5",
                                "schedule.warmup_epochs=0.5", "schedule.patience=0"], tmp_path)
    t.fit()
    losses = step_losses(tmp_path)
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.15, losses


# ------------------------------------------------------------------------------------ schedule formulas
def sched(**kw) -> ScheduleConfig:
    return ScheduleConfig(**kw)


def test_schedules_match_torch_schedulers_and_formulas():
    total, spe = 100, 10
    sampled = [0, 1, 9, 10, 25, 49, 50, 74, 75, 99]
    p = nn.Parameter(torch.zeros(1))

    def torch_curve(make):
        opt = torch.optim.SGD([p], lr=1.0)
        s, out = make(opt), []
        for _ in range(total):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            s.step()
        return out

    cos = torch_curve(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=total, eta_min=0.1))
    step = torch_curve(lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=3 * spe, gamma=0.5))
    multi = torch_curve(lambda o: torch.optim.lr_scheduler.MultiStepLR(o, milestones=[50, 75], gamma=0.1))
    for s in sampled:
        assert lr_factor(s, total, spe, sched(name="constant")) == 1.0
        assert lr_factor(s, total, spe, sched(name="cosine", min_lr_ratio=0.1)) == pytest.approx(cos[s])
        assert lr_factor(s, total, spe, sched(name="step", step_size=3, gamma=0.5)) == pytest.approx(step[s])
        assert lr_factor(s, total, spe, sched(name="multistep", milestones=[0.5, 0.75], gamma=0.1)) == pytest.approx(multi[s])
        assert lr_factor(s, total, spe, sched(name="multistep", milestones=[5, 7.5], gamma=0.1)) == pytest.approx(multi[s])
        assert lr_factor(s, total, spe, sched(name="exponential", gamma=0.8)) == pytest.approx(0.8 ** (s / spe))
        # linear warmup over 2 epochs multiplies any schedule
        w = min(1.0, (s + 1) / 20)
        after = max(0, s - 20) / 80
        expect = w * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * after)))
        assert lr_factor(s, total, spe, sched(name="cosine", min_lr_ratio=0.1, warmup_epochs=2)) == pytest.approx(expect)
    # one-cycle: from 1/25 up to 1 at pct_start, then down to 1/(25·1e4)
    oc = sched(name="onecycle", pct_start=0.3)
    curve = schedule_curve(oc, total, spe)
    assert curve[0] == pytest.approx(1 / 25)
    assert max(curve) == pytest.approx(1.0) and int(np.argmax(curve)) == 30
    assert curve[65] == pytest.approx(1 / 25e4 + (1 - 1 / 25e4) * 0.5 * (1 + math.cos(math.pi * 35 / 70)))
    assert curve[-1] < 1e-3


def test_plateau_reduces_after_patience_and_roundtrips():
    pl = Plateau(gamma=0.5, patience=1)
    for v in [1.0, 0.9, 0.95, 0.95]:
        pl.step(v)
    assert pl.factor == 0.5
    other = Plateau(0.5, 1)
    other.load_state_dict(pl.state_dict())
    assert other.state_dict() == pl.state_dict()


def test_plateau_min_delta_max_mode_and_counter_reset():
    pl = Plateau(gamma=0.5, patience=2, mode="min", min_delta=0.1)
    seen = []
    for v in [1.0, 0.95, 0.85, 0.9, 0.9, 0.9, 0.9]:
        pl.step(v)
        seen.append((pl.best, pl.bad_epochs, pl.factor))
    # 0.95 is not better by more than min_delta; 0.85 is; the third epoch without gain cuts and resets the count
    assert seen == [(1.0, 0, 1.0), (1.0, 1, 1.0), (0.85, 0, 1.0), (0.85, 1, 1.0), (0.85, 2, 1.0), (0.85, 0, 0.5),
                    (0.85, 1, 0.5)]
    acc = Plateau(gamma=0.1, patience=0, mode="max", min_delta=0.05)
    for v in [0.5, 0.54, 0.56, 0.4]:
        acc.step(v)
    assert acc.best == 0.56 and acc.factor == pytest.approx(0.01)  # 0.54 and 0.4 are no gain in accuracy


@pytest.mark.parametrize("monitor, pick", [("val_acc", max), ("train_loss", min)])
def test_plateau_watches_the_configured_metric(tiny_npz, monitor, pick):
    t = make_trainer(tiny_npz, ["schedule.name=plateau", "schedule.patience=0", f"schedule.monitor={monitor}",
                                "train.epochs=3", "optim.lr=1e-2"])
    history = t.fit().history
    assert t.plateau.mode == ("max" if monitor.endswith("acc") else "min")
    assert t.plateau.best == pick(r[monitor] for r in history)


def test_rmsprop_rho_and_plateau_monitor_are_validated_config_keys(tiny_npz):
    t = make_trainer(tiny_npz, ["optim.name=rmsprop", "optim.alpha=0.9"])
    assert all(g["alpha"] == 0.9 for g in t.optimizer.param_groups)
    for bad in ("optim.alpha=1", "optim.alpha=0", "schedule.monitor=val_f1"):
        with pytest.raises(DeepRecipeError, match=bad.partition("=")[0].split(".")[1]):
            resolve_config(None, [bad])


def test_unknown_schedule_is_a_clear_error():
    from types import SimpleNamespace
    with pytest.raises(DeepRecipeError, match="unknown schedule 'nope'") as err:
        lr_factor(0, 10, 5, SimpleNamespace(name="nope", warmup_epochs=0))
    assert "onecycle" in err.value.fix


def test_warmup_rises_linearly_to_the_schedule():
    cfg = sched(name="constant", warmup_epochs=1)
    assert schedule_curve(cfg, 30, 10) == pytest.approx([min(1.0, (s + 1) / 10) for s in range(30)])
    assert schedule_curve(sched(name="constant", warmup_epochs=0), 5, 10) == [1.0] * 5


def test_cosine_holds_its_floor_past_the_last_step():
    # a step beyond the planned total (a run extended on resume) stays at the floor instead of rising again
    cfg = sched(name="cosine", min_lr_ratio=0.1)
    assert [lr_factor(s, 100, 10, cfg) for s in (100, 150, 200)] == pytest.approx([0.1] * 3)


def test_plot_schedule_writes_png(tmp_path):
    out = tmp_path / "lr.png"
    plot_schedule(sched(name="cosine", warmup_epochs=1), 50, 10, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------------ regularisation
def test_no_weight_decay_for_biases_and_norms():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 26 * 26, 3))
    cfg = resolve_config(None, ["optim.name=sgd", "optim.weight_decay=0.1"]).optim
    opt = build_optimizer(model, cfg)
    decay = {id(p) for g in opt.param_groups if g["weight_decay"] == 0.1 for p in g["params"]}
    no_decay = {id(p) for g in opt.param_groups if g["weight_decay"] == 0.0 for p in g["params"]}
    assert decay == {id(model[0].weight), id(model[3].weight)}
    assert no_decay == {id(model[0].bias), id(model[1].weight), id(model[1].bias), id(model[3].bias)}
    cfg.no_decay_bias_norm = False
    assert all(g["weight_decay"] == 0.1 for g in build_optimizer(model, cfg).param_groups)


def _l1(model):
    return sum(float(p.detach().abs().sum()) for p in model.parameters() if p.ndim > 1)


def test_l1_and_l2_penalties_are_in_the_loss_and_l1_shrinks_weights(tiny_npz):
    t = make_trainer(tiny_npz, ["regularize.l1=1e-3", "regularize.l2=1e-2"])
    w = [p for p in t.model.parameters() if p.ndim > 1]
    expect = 1e-3 * sum(float(p.detach().abs().sum()) for p in w) + 0.5 * 1e-2 * sum(float(p.detach().pow(2).sum()) for p in w)
    assert float(t.penalties().detach()) == pytest.approx(expect, rel=1e-5)
    norms = {}
    for l1 in (0.0, 0.05):
        t = make_trainer(tiny_npz, ["optim.name=sgd", "optim.lr=0.1", "train.epochs=2", f"regularize.l1={l1}"])
        t.fit()
        norms[l1] = _l1(t.model)
    assert norms[0.05] < 0.8 * norms[0.0]


def test_max_norm_holds_after_every_step(tiny_npz):
    t = make_trainer(tiny_npz, ["optim.lr=0.05", "train.epochs=1", "regularize.max_norm=0.5"])
    seen = []
    base = t.train_step

    def checked_step(x, y):
        out = base(x, y)
        for m in t.model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                seen.append(float(m.weight.reshape(m.weight.shape[0], -1).norm(dim=1).max()))
        return out

    t.train_step = checked_step
    t.fit()
    assert seen and max(seen) <= 0.5 + 1e-5
    assert max(seen) > 0.45  # the constraint was active, not vacuous


@pytest.mark.parametrize("kind", ["clip_norm", "clip_value"])
def test_gradient_clipping(tiny_npz, kind):
    limit = 1e-3
    t = make_trainer(tiny_npz, [f"regularize.{kind}={limit}"])
    x, y = next(iter(t.train_loader))
    t.train_step(x, y)
    grads = [p.grad for p in t.model.parameters() if p.grad is not None]
    total_norm = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))
    biggest = max(float(g.abs().max()) for g in grads)
    if kind == "clip_norm":
        assert total_norm <= limit * (1 + 1e-4)
    else:
        assert biggest <= limit + 1e-9
    free = make_trainer(tiny_npz)
    free.train_step(x, y)
    free_grads = [p.grad for p in free.model.parameters() if p.grad is not None]
    assert max(float(g.abs().max()) for g in free_grads) > 10 * limit  # clipping had work to do


def test_label_smoothing_changes_the_loss(tiny_npz):
    t = make_trainer(tiny_npz, ["regularize.label_smoothing=0.2"])
    logits, y = torch.tensor([[10.0, 0.0, 0.0]]), torch.tensor([0])
    assert float(t.compute_loss(None, logits, y)) > 0.1 > float(torch.nn.functional.cross_entropy(logits, y))


def test_early_stopping_restores_best_weights(tiny_npz, tmp_path):
    snapshots = {}
    t = make_trainer(tiny_npz, ["train.epochs=6", "regularize.early_stopping=true", "regularize.patience=2",
                                "regularize.min_delta=5.0"], tmp_path)  # nothing beats epoch 1 by 5 nats
    t.hooks["on_epoch_end"].append(lambda tr, row: snapshots.__setitem__(row["epoch"], {
        k: v.clone() for k, v in tr.model.state_dict().items()}))
    state = t.fit()
    assert state.stopped_early and state.epoch == 3 and state.best_epoch == 1
    for k, v in t.model.state_dict().items():
        assert torch.equal(v, snapshots[1][k]), k
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")["model"]
    assert all(torch.equal(best[k], v) for k, v in snapshots[1].items())


# ------------------------------------------------------------------------------------ NaN guard, Ctrl-C
class NaNOnce(Trainer):
    """Returns a NaN loss at one step (the first time it is reached): a divergence on demand."""
    nan_at_step = 12
    fired = 0

    def compute_loss(self, x, logits, y):
        loss = super().compute_loss(x, logits, y)
        if self.state.step == self.nan_at_step and (self.fired == 0 or self.cfg.train.nan_policy == "stop"):
            self.fired += 1
            return loss * float("nan")
        return loss


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_npz, tmp_path):
    t = make_trainer(tiny_npz, ["train.epochs=3"], tmp_path, cls=NaNOnce)
    with pytest.raises(DeepRecipeError, match="diverged.*loss is nan.*epoch 2") as err:
        t.fit()
    assert "nan_policy=rollback" in err.value.fix
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert ckpt["state"]["epoch"] == 1 and ckpt["state"]["step"] == 9
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


def test_nan_rollback_halves_lr_and_continues(tiny_npz, tmp_path):
    t = make_trainer(tiny_npz, ["train.epochs=3", "train.nan_policy=rollback", "log.steps_every=1"], tmp_path,
                     cls=NaNOnce)
    state = t.fit()
    assert t.fired == 1 and state.epoch == 3 and state.rollbacks == 1 and state.lr_scale == 0.5
    assert [r["epoch"] for r in state.history] == [1, 2, 3]
    assert state.history[-1]["lr"] == pytest.approx(0.5 * t.cfg.optim.lr)
    steps = [r["step"] for r in read_jsonl(tmp_path / "steps.jsonl")]
    assert steps == list(range(1, 28))  # the replayed stretch is logged once


def test_ctrl_c_saves_the_epoch_start_and_stops(tiny_npz, tmp_path):
    class CtrlC(Trainer):
        def compute_loss(self, x, logits, y):
            if self.state.step == 13:
                signal.raise_signal(signal.SIGINT)
            return super().compute_loss(x, logits, y)

    t = make_trainer(tiny_npz, ["train.epochs=3"], tmp_path, cls=CtrlC)
    with pytest.raises(TrainingInterrupted):
        t.fit()
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert ckpt["state"]["epoch"] == 1 and ckpt["state"]["step"] == 9


# ------------------------------------------------------------------------------------ EMA, ensembles
def test_ema_weights_are_evaluated_and_saved(tiny_npz, tmp_path):
    t = make_trainer(tiny_npz, ["train.epochs=2", "regularize.ema=0.9", "regularize.restore_best=false"], tmp_path)
    t.fit()
    raw, avg = t.model.state_dict(), t.ema.module.state_dict()
    assert any(not torch.equal(raw[k], avg[k]) for k in raw)
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")["model"]
    assert all(torch.equal(best[k], avg[k]) for k in avg)
    last = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert last["ema"] is not None and int(last["ema"]["n_averaged"]) == 18


def test_ensemble_evaluation_averages_probabilities(tiny_npz, tmp_path, monkeypatch):
    from deeprecipe import api
    from deeprecipe.api import load_run, prepare_data
    monkeypatch.setattr(api, "write_report_safely", lambda run_dir, data=None: None)  # not needed here
    runs = []
    for seed in (0, 1):
        out = tmp_path / f"run{seed}"
        # Members confident enough that averaging probabilities and averaging logits give different losses.
        train(overrides=[f"data.spec={tiny_npz}", *TINY, "model.widths=[16,32]", "optim.lr=0.02", "train.epochs=3",
                         f"train.seed={seed}"], out=out,
              show_progress=False)
        runs.append(out)
    result = evaluate_ensemble(runs)
    assert [m["run"] for m in result["members"]] == [str(r) for r in runs]
    assert result["ensemble"]["n"] == result["members"][0]["n"] == 40
    # The members' test logits, computed here independently of evaluate_ensemble.
    loaded = [load_run(r) for r in runs]
    images, labels = prepare_data(loaded[0].cfg).part("test")[:2]
    logits = torch.stack([m.logits(images) for m in loaded])
    mean_probs = logits.softmax(-1).mean(0)
    nll_probs = float(nn.functional.nll_loss(mean_probs.log(), labels))
    nll_logits = float(nn.functional.cross_entropy(logits.mean(0), labels))
    assert abs(nll_probs - nll_logits) > 1e-3  # the two rules differ on these runs, so the check below can tell
    assert result["ensemble"]["loss"] == pytest.approx(nll_probs, abs=1e-5)
    assert result["ensemble"]["acc"] == pytest.approx(float((mean_probs.argmax(1) == labels).float().mean()))
    for member, member_logits in zip(result["members"], logits):
        assert member["loss"] == pytest.approx(float(nn.functional.cross_entropy(member_logits, labels)), abs=1e-5)


@pytest.mark.skipif(not any(shutil.which(c) for c in ("g++", "c++", "clang++")), reason="inductor needs a C++ compiler")
def test_compiled_training_matches_eager(tmp_path, mnist_small_npz, monkeypatch):
    """train.compile=true (torch.compile of the forward) trains to the same numbers as eager mode."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))  # a cold compile, as on a new machine
    common = [f"data.spec={mnist_small_npz}", "train.epochs=2", "model.widths=[16,32]", "optim.lr=0.02", "model.convs=1",
              "train.threads=1", "train.deterministic=true", "train.batch_size=64"]
    eager = train(None, out=tmp_path / "eager", overrides=common, show_progress=False)
    compiled = train(None, out=tmp_path / "compiled", overrides=[*common, "train.compile=true"], show_progress=False)
    assert compiled["test_loss"] == pytest.approx(eager["test_loss"], abs=1e-3)
    assert compiled["test_acc"] == pytest.approx(eager["test_acc"], abs=0.01)
    assert eager["test_loss"] < 2.2  # it learnt something, so the match is not two untrained nets


def test_compile_without_a_cpp_compiler_is_one_line_exit_2(tmp_path, mnist_small_npz, monkeypatch, capsys):
    from deeprecipe.cli import main
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    code = main(["train", "--data", mnist_small_npz, "--epochs", "1", "--out", str(tmp_path / "run"),
                 "--set", "train.compile=true", "--set", "train.device=cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "C++ compiler" in err[-1] and "train.compile=false" in err[-1]
