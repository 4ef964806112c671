"""Read train/val curves the way a practitioner does: overfitting, underfitting, instability, or fine.

`diagnose(history)` takes metrics.jsonl rows (epoch, train_loss, train_acc, val_loss, val_acc, lr) and
returns {"verdict", "evidence", "advice"}: a verdict, the numbers from the curves that support it, and
concrete config changes to try. The checks run in order of urgency: a run that blows up is unstable
before it is anything else; a run that cannot fit its training data is underfitting before its
train/val gap matters.
"""
from __future__ import annotations

import math

# Thresholds, named so the rules below read as sentences.
GAP_ACC = 0.04            # train_acc - val_acc beyond this is a generalisation gap
VAL_RISE = 0.15           # val_loss this far (relative) above its minimum, late in the run, is overfitting
LOSS_RATIO = 1.8          # val_loss / train_loss beyond this with a gap is overfitting
UNDERFIT_ACC = 0.90       # train accuracy below this means the model does not fit its own data
JUMP = 0.30               # a rise of 30 % in train loss between epochs is a spike
ACC_DROP = 0.10           # a drop of 10 points of val accuracy between epochs is a spike
STILL_FALLING = 0.03      # relative val_loss fall in the last epoch that means "train longer"
BLOWUP_LOSS = 7.0         # 1.5 × ln(100): above what an untrained model of up to 100 classes scores

ADVICE = {
    "unstable": ["set optim.lr lower (try 3–10× lower, or run `deeprecipe lr-find`)",
                 "set regularize.clip_norm=1 to cap gradient spikes",
                 "add schedule.warmup_epochs=1 (or keep schedule.name=onecycle)",
                 "check the data with `deeprecipe doctor`"],
    "overfitting": ["raise regularize.label_smoothing (e.g. 0.1)",
                    "raise optim.weight_decay (e.g. ×5)",
                    "add model.dropout (e.g. 0.3)",
                    "add data.augment entries (e.g. translate:4, hflip where mirror images are valid)",
                    "set regularize.early_stopping=true", "use more training data or a smaller model"],
    "underfitting": ["use a bigger model (model.widths wider, model.depth deeper, or another model.name)",
                     "set optim.lr higher if the loss falls slowly (run `deeprecipe lr-find`)",
                     "raise train.epochs",
                     "lower regularisation: optim.weight_decay, model.dropout, regularize.label_smoothing"],
    "not converged": ["raise train.epochs (the validation loss was still falling)",
                      "set optim.lr higher if each epoch gains little"],
    "healthy": ["keep this config; for a last gain try a longer run (train.epochs) with schedule.name=cosine"],
}


def _finite(values: list[float | None]) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def _column(history: list[dict], key: str) -> list[float | None]:
    return [row.get(key) for row in history]


def _result(verdict: str, evidence: list[str], extra: list[str] | None = None) -> dict:
    return {"verdict": verdict, "evidence": evidence, "advice": (extra or []) + ADVICE[verdict]}


def _instability(history: list[dict], num_classes: int | None) -> list[str]:
    """Evidence of instability: non-finite values, train-loss spikes, val-accuracy crashes, no progress."""
    evidence = []
    train = _column(history, "train_loss")
    if any(v is None or not math.isfinite(v) for v in train):
        evidence.append("train_loss became NaN/inf")
        return evidence
    for a, b, row in zip(train, train[1:], history[1:]):
        if b > a * (1 + JUMP):
            evidence.append(f"train_loss jumped {a:.3f} → {b:.3f} at epoch {row['epoch']}")
            break
    accs = _column(history, "val_acc")
    if all(a is not None for a in accs):
        for a, b, row in zip(accs, accs[1:], history[1:]):
            if b < a - ACC_DROP:
                evidence.append(f"val_acc fell {a:.3f} → {b:.3f} at epoch {row['epoch']}")
                break
    vals = _column(history, "val_loss")
    if any(v is not None and not math.isfinite(v) for v in vals):
        evidence.append("val_loss became NaN/inf")
    # An untrained model scores about ln(C); an epoch far above that means the weights were thrown
    # off by steps too large (a too-low lr never does this).
    limit = 1.5 * math.log(num_classes) if num_classes else BLOWUP_LOSS
    worst = max(_finite(train) + _finite(vals), default=0.0)
    if worst > limit:
        evidence.append(f"loss reached {worst:.2f}, above {limit:.2f} (1.5 × the ln(C) of an untrained model)")
    return evidence


def diagnose(history: list[dict], num_classes: int | None = None) -> dict:
    """Verdict, evidence and advice from per-epoch metrics rows (`num_classes` sharpens the blow-up check)."""
    if not history:
        return {"verdict": "not converged", "evidence": ["no finished epochs"], "advice": ["raise train.epochs"]}
    unstable = _instability(history, num_classes)
    if unstable:
        return _result("unstable", unstable)

    last = history[-1]
    train_acc, train_loss = last["train_acc"], last["train_loss"]
    vals = _finite(_column(history, "val_loss"))
    has_val = last.get("val_acc") is not None and len(vals) == len(history)
    evidence = [f"final train_loss {train_loss:.4f}, train_acc {train_acc:.4f}"]
    if has_val:
        evidence.append(f"final val_loss {last['val_loss']:.4f}, val_acc {last['val_acc']:.4f}")

    if train_acc < UNDERFIT_ACC:
        falling = len(history) >= 2 and history[-2]["train_loss"] - train_loss > STILL_FALLING * history[-2]["train_loss"]
        extra = ["raise train.epochs: the training loss was still falling"] if falling else []
        evidence.append(f"train_acc {train_acc:.3f} < {UNDERFIT_ACC}: the model does not fit its training data")
        if has_val:
            evidence.append(f"train/val accuracy gap only {train_acc - last['val_acc']:+.3f}")
        return _result("underfitting", evidence, extra)

    if has_val:
        gap = train_acc - last["val_acc"]
        best_epoch = min(range(len(vals)), key=vals.__getitem__)
        rise = vals[-1] / max(vals[best_epoch], 1e-12) - 1.0
        ratio = vals[-1] / max(train_loss, 1e-12)
        late_rise = best_epoch < len(vals) - 1 and rise > VAL_RISE
        if gap > GAP_ACC and (late_rise or ratio > LOSS_RATIO):
            evidence.append(f"train/val accuracy gap {gap:.3f} (> {GAP_ACC})")
            if late_rise:
                evidence.append(f"val_loss rose {rise:.0%} from its minimum {vals[best_epoch]:.4f} at epoch "
                                f"{history[best_epoch]['epoch']}")
            evidence.append(f"val_loss / train_loss = {ratio:.1f}")
            return _result("overfitting", evidence)
        if len(vals) >= 2 and vals[-2] - vals[-1] > STILL_FALLING * vals[-2] and train_acc < 0.995:
            evidence.append(f"val_loss still falling {vals[-2]:.4f} → {vals[-1]:.4f} in the last epoch")
            return _result("not converged", evidence)
        evidence.append(f"train/val accuracy gap {gap:+.3f}; val_loss within {max(rise, 0):.0%} of its minimum")
    return _result("healthy", evidence)
