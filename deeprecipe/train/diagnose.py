"""Read train/val curves the way a practitioner does, knowing how many images stand behind each number.

`diagnose(history, num_classes, val_images, schedule)` takes metrics.jsonl rows (epoch, train_loss, train_acc,
val_loss, val_acc, lr) and returns {"verdict", "evidence", "advice", "context"}: a verdict, the numbers from
the curves that support it (with the interval they were judged by), and config changes to try.

What makes a change in a curve mean something:
- validation accuracy is a proportion of `val_images` images, so it is judged by its Wilson 95 % interval:
  3 images of 20 moving is noise, 150 of 1,000 is not;
- a loss change must pass a relative and an absolute floor (0.067 → 0.094 is +40 % and means nothing);
- a setback the run recovered from is not instability, above all in the high-rate phase of a schedule
  (one-cycle's peak, a warm restart) where some turbulence is the point;
- with too few validation images to tell a good model from a bad one, the verdict says so instead of
  guessing, and what to do about it.

The checks run in order of urgency: a run that blows up is unstable before it is anything else; a run that
cannot fit its training data is underfitting before its train/val gap matters. The thresholds were chosen
on the tuning part of a corpus of runs with known causes and checked on a held-back part
(tests/data/diagnosis_corpus, benchmarks/diagnosis_corpus.py, docs/recipe.md).
"""
from __future__ import annotations

import math

from .losses import smoothed_loss_floor

Z = 1.96                  # 95 % intervals
WIDE_INTERVAL = 0.20      # a val-accuracy interval wider than this cannot tell 80 % from 100 %
JUMP_REL = 0.30           # a train-loss rise of 30 % between epochs ...
JUMP_ABS = 0.05           # ... and of 5 % of ln(C) (an untrained model's loss) is a spike
SEVERE = 0.25            # a spike of a quarter of ln(C) is instability even when the run recovers
HIGH_PHASE = 0.5          # epochs whose lr is at least half the run's peak are its high-rate phase
UNDERFIT_SKILL = 0.60     # best accuracy, as a fraction of the way from chance to 100 %, below this underfits
UNDERFIT_LOSS = 0.40      # a final train loss above this fraction of ln(C) is a model far from fitting
NOISY_SKILL = 0.80        # overfitting that began while train accuracy was below this skill may be wrong labels
GAP_MIN = 0.02            # train accuracy this far above the val interval's upper end is a generalisation gap
VAL_RISE = 0.10           # val_loss this far above its minimum (relative, and JUMP_ABS absolute) has turned
LOSS_RATIO = 1.8          # val_loss / train_loss beyond this, with a gap, is overfitting ...
GAP_MATERIAL = 0.08       # ... and train_acc - val_acc is this large: without a val-loss turn, a few points is ordinary
MEMORISED = 0.995         # train accuracy at which the model fits (nearly) every training image
STILL_FALLING = 0.03      # relative val/train loss fall in the last epoch that means "train longer"
BLOWUP_LOSS = 7.0         # 1.5 × ln(100): above what an untrained model of up to 100 classes scores
RISE_REL, RISE_ABS = 0.10, 0.05  # an epoch-mean train-loss rise of 10 % and 5 % of ln(C): the steps threw it back
RISES = 2                 # ... in this many epochs of one run is a rate too high, even when each one recovered
AT_LN_C = 0.98            # a final train loss at this fraction of ln(C) or above predicts no better than uniform
ABOVE_LN_C = 1.02         # a train loss above this multiple of ln(C) is worse than an untrained model's
THROWN = 1.10             # epoch 1's mean this far above ln(C): the first steps threw the model off, not its init
SETTLED = 2 / 3           # epoch 2's mean train loss under this fraction of epoch 1's: a loss that came down from a high
FITTED_SKILL = 0.90       # train accuracy this far from chance to 100 % fits the training data
EVAL_BLOWUP = 5.0         # a val loss this many times ln(C) while the training loss is under ln(C): eval mode went astray

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
    "not converged": ["raise train.epochs (the loss was still falling)",
                      "set optim.lr higher if each epoch gains little (run `deeprecipe lr-find`)"],
    "too little validation data": ["raise data.val_fraction (e.g. to 0.2) so the validation set can tell models apart",
                                   "or use k-fold cross-validation: data.folds=5 (every image is validated once)"],
    "healthy": ["keep this config; for a last gain try a longer run (train.epochs) with schedule.name=cosine"],
}
ANNEAL = "let the rate anneal by the end: schedule.name=cosine or onecycle (a constant rate never settles)"
AUDIT = "if some labels may be wrong, rank the suspects with `deeprecipe audit` and fix or drop the worst"
PROBLEMS = ("unstable", "overfitting", "underfitting", "not converged")  # verdicts that ask for a change


def wilson(p: float, n: int, z: float = Z) -> tuple[float, float]:
    """Wilson score interval of a proportion p observed on n trials (sound at p = 0 or 1 and small n)."""
    if n <= 0:
        return 0.0, 1.0
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def _two_proportion_z(before: float, after: float, n: int) -> float:
    """How many standard errors `after` lies above `before`, two accuracies on the same n images."""
    return (after - before) / math.sqrt(max(before * (1 - before) + after * (1 - after), 1e-12) / n)


def _fmt_interval(p: float, n: int) -> str:
    lo, hi = wilson(p, n)
    return f"{p:.3f} on {n} images (95% interval {lo:.3f}–{hi:.3f})"


def _finite(values) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def _column(history: list[dict], key: str) -> list:
    return [row.get(key) for row in history]


def _skill(acc: float, num_classes: int | None) -> float:
    """Accuracy as the fraction of the way from chance (1/C) to 100 %."""
    chance = 1.0 / num_classes if num_classes and num_classes > 1 else 0.0
    return (acc - chance) / (1.0 - chance)


class _Run:
    """The history plus what the curves alone do not say: class count, val-set size, schedule, label smoothing."""

    def __init__(self, history: list[dict], num_classes: int | None, val_images: int | None, schedule: str | None,
                 label_smoothing: float = 0.0, kept_best: bool = False):
        self.history, self.num_classes, self.n_val, self.schedule = history, num_classes, val_images, schedule
        self.label_smoothing = label_smoothing
        self.kept_best = kept_best  # early stopping ended the run and restored its best epoch's weights
        self.ln_c = math.log(num_classes) if num_classes and num_classes > 1 else math.log(10)
        # The rules read the training loss above what the targets allow (val_loss is plain cross-entropy).
        self.floor = smoothed_loss_floor(label_smoothing, num_classes)
        self.raw_train_loss = _column(history, "train_loss")  # an untrained model scores ln(C) whatever the smoothing
        self.train_loss = [v - self.floor if isinstance(v, (int, float)) else v for v in self.raw_train_loss]
        self.train_acc = _column(history, "train_acc")
        self.val_loss = _column(history, "val_loss")
        self.val_acc = _column(history, "val_acc")
        self.has_val = all(v is not None for v in self.val_acc) and len(_finite(self.val_loss)) == len(history)
        lrs = [r.get("lr") or 0.0 for r in history]
        peak = max(lrs, default=0.0)
        self.high_phase = [peak > 0 and lr >= HIGH_PHASE * peak for lr in lrs]
        self.constant_lr = peak > 0 and min(lrs) >= HIGH_PHASE * peak

    def epoch(self, i: int) -> int:
        return self.history[i].get("epoch", i + 1)

    def interval(self, i: int) -> tuple[float, float]:
        return wilson(self.val_acc[i], self.n_val) if self.n_val else (self.val_acc[i], self.val_acc[i])

    def phase(self, i: int) -> str:
        if self.constant_lr:
            return "at a constant lr"
        return "in the schedule's high-rate phase" if self.high_phase[i] else "in the schedule's low-rate phase"

    def significant_loss_rise(self, a: float, b: float, rel: float = JUMP_REL, floor: float = JUMP_ABS) -> bool:
        return b > a * (1 + rel) and b - a > floor * self.ln_c

    def at_chance(self, i: int) -> bool:
        """Epoch i's val accuracy cannot be told from guessing (1/C lies inside its interval)."""
        lo, hi = self.interval(i)
        return bool(self.num_classes) and lo <= 1.0 / self.num_classes <= hi


def _instability(run: _Run) -> tuple[list[str], list[str], list[str]]:
    """(evidence of instability, notes on setbacks the run recovered from, severe setbacks it recovered from)."""
    evidence, notes, severe = [], [], []
    train = run.train_loss
    if any(v is None or not math.isfinite(v) for v in train) or any(
            v is not None and not math.isfinite(v) for v in run.val_loss):
        return ["the loss became NaN/inf"], notes, severe
    # An untrained model scores about ln(C); an epoch far above that means the weights were thrown off by
    # steps too large (a too-low lr never does this).
    limit = 1.5 * math.log(run.num_classes) if run.num_classes and run.num_classes > 1 else BLOWUP_LOSS
    # The val loss of a tiny or overconfident model may legitimately exceed it; so may the first epoch's mean,
    # which starts from the initialisation's loss (far above ln(C) for a wide net on raw pixels): it counts only
    # when the run never went on to fit its training data.
    fitted = train[-1] < UNDERFIT_LOSS * run.ln_c
    worst = max(_finite(train[1:] if fitted else train), default=0.0)
    if worst > limit:
        evidence.append(f"train_loss reached {worst:.2f}, above {limit:.2f} (1.5 × the ln(C) of an untrained model)")
    elif train[0] > limit:
        notes.append(f"train_loss averaged {train[0]:.2f} in epoch 1, above {limit:.2f}, from the initialisation's "
                     f"start; the run then fitted its training data (final {train[-1]:.3f})")
    # Steps that push the loss above an untrained model's, in a run that never gets well below it, are too large
    # (a too-small model or a too-low rate leaves the loss near ln(C) too, but never above it).
    above = [i for i in range(1, len(train)) if train[i] > ABOVE_LN_C * run.ln_c and train[i] > train[0]]
    if above and train[-1] > 0.95 * run.ln_c:
        i = above[0]
        evidence.append(f"train_loss {train[i]:.3f} at epoch {run.epoch(i)} {run.phase(i)} is above ln(C) = "
                        f"{run.ln_c:.3f}, what an untrained model scores: the steps make the model worse")
    evidence += _back_at_chance(run)
    for i in range(1, len(train)):
        a, b = train[i - 1], train[i]
        if run.significant_loss_rise(a, b):
            recovered = min(train[i + 1:], default=math.inf) <= a
            what = f"train_loss jumped {a:.3f} → {b:.3f} at epoch {run.epoch(i)} {run.phase(i)}"
            if recovered and b - a > SEVERE * run.ln_c:  # came back, but the peak rate threw the model far off
                severe.append(what + f", a rise of {(b - a) / run.ln_c:.0%} of ln(C) (> {SEVERE:.0%}), then "
                              "recovered: the peak rate is too high")
                continue
            if recovered:
                notes.append(what + ", then fell below its earlier level (recovered)")
            else:
                evidence.append(what + " and never came back below its earlier level")
                break
    if run.has_val and run.n_val:
        for i in range(1, len(run.val_acc)):
            best = max(range(i), key=lambda j: run.val_acc[j])
            lo_before, hi_before = run.interval(best)
            _, hi_now = run.interval(i)
            # Intervals that do not overlap: a real fall, not a few images. A fall while the model fits its
            # training images better than it ever generalised, its train loss not thrown up, is memorising
            # (overfitting, judged below), not its steps going astray.
            memorising = (run.train_acc[i] > hi_before
                          and not run.significant_loss_rise(train[i - 1], train[i], RISE_REL, RISE_ABS))
            if hi_now < lo_before and not memorising:
                final_hi = run.interval(len(run.val_acc) - 1)[1]
                what = (f"val_acc fell from {run.val_acc[best]:.3f} (epoch {run.epoch(best)}) to "
                        f"{_fmt_interval(run.val_acc[i], run.n_val)} at epoch {run.epoch(i)} {run.phase(i)}")
                if final_hi >= lo_before:
                    notes.append(what + ", and recovered")
                else:
                    evidence.append(what + f"; it ended at {run.val_acc[-1]:.3f}, still below")
                    break
    return evidence, notes, severe


def _back_at_chance(run: _Run) -> list[str]:
    """Evidence of a run that ends predicting no better than uniform after steps that made it worse than that.

    A model too small or a rate too low still gets above chance and below ln(C), or falls towards ln(C) from an
    initialisation above it; one whose loss rose to above an untrained model's after the first epoch and ends at
    ln(C) with chance accuracy had its units thrown off (dead ReLUs, saturated logits) by steps too large, whether
    or not it had learnt something first.
    """
    raw = run.raw_train_loss
    if not (run.has_val and run.n_val and run.num_classes and len(raw) >= 3) or not run.at_chance(len(raw) - 1):
        return []
    # Epoch 1's mean is the initialisation's (as above), and a loss falling towards ln(C) from above it is a model
    # learning slowly: what counts is an epoch whose loss rose, to above what an untrained model scores.
    rose = [i for i in range(1, len(raw)) if raw[i] > raw[i - 1] and raw[i] > ABOVE_LN_C * run.ln_c]
    # Epoch 1 counts when it is well above ln(C) and the model went straight to uniform guessing from there:
    # a model learning slowly from a high initial loss still gets below ln(C) by the end.
    if raw[0] > THROWN * run.ln_c:
        rose.append(0)
    if raw[-1] < AT_LN_C * run.ln_c or not rose:
        return []
    worst = max(rose, key=raw.__getitem__)
    best = max(range(len(raw)), key=lambda j: run.val_acc[j])
    learnt = "" if run.at_chance(best) else (
        f"; it had reached {_fmt_interval(run.val_acc[best], run.n_val)} at epoch {run.epoch(best)}, above chance")
    return [f"val_acc ended at {_fmt_interval(run.val_acc[-1], run.n_val)}, which holds chance (1/{run.num_classes}), "
            f"and train_loss at {raw[-1]:.3f} against ln(C) = {run.ln_c:.3f}: the model predicts no better than "
            f"uniform, after train_loss {'averaged' if worst == 0 else 'rose to'} {raw[worst]:.3f} "
            f"{'in' if worst == 0 else 'at'} epoch {run.epoch(worst)} {run.phase(worst)}, "
            f"above what an untrained model scores{learnt}: steps too large threw the model off"]


def _rises(run: _Run) -> list[str]:
    """Evidence of a train loss thrown back again and again (each rise may have recovered): a rate too high."""
    train = run.train_loss
    rises = [i for i in range(1, len(train)) if run.significant_loss_rise(train[i - 1], train[i], RISE_REL, RISE_ABS)]
    if len(rises) < RISES:
        return []
    where = ", ".join(f"{train[i - 1]:.3f} → {train[i]:.3f} at epoch {run.epoch(i)} {run.phase(i)}" for i in rises)
    return [f"train_loss rose in {len(rises)} epochs (by > {RISE_REL:.0%} and > {RISE_ABS:.0%} of ln(C) each): "
            f"{where}; the steps keep throwing the model back"]


def _early_blowup(run: _Run) -> list[str]:
    """Evidence of first steps too large in a run that then stalled far from fitting its training data.

    Epoch 1's mean training loss above ln(C) (worse than an untrained model), then epoch 2's under two thirds of
    it: the loss went up before it came down. A rate too low or a model too small starts near ln(C) and comes down
    slowly (epoch 2 close to epoch 1); a run that went on to fit its training data recovered from it.
    """
    raw = run.raw_train_loss
    if len(raw) < 3 or not run.train_acc[-1] or _skill(run.train_acc[-1], run.num_classes) >= FITTED_SKILL:
        return []
    if not (raw[0] > ABOVE_LN_C * run.ln_c and raw[1] < SETTLED * raw[0]):
        return []
    return [f"epoch 1's mean train_loss {raw[0]:.3f} is above ln(C) = {run.ln_c:.3f} (what an untrained model "
            f"scores) and epoch 2's is {raw[1]:.3f}: the loss was thrown up before it came down, and the run stalled "
            f"at train_acc {run.train_acc[-1]:.3f}, under {FITTED_SKILL:.0%} of the way from chance to 100 %: "
            "steps too large at the start, not a model too small"]


def _eval_mode_astray(run: _Run) -> list[str]:
    """A note (never a verdict by itself) on epochs whose val loss is far above an untrained model's while the
    training loss is below it: the weights fit the training batches, so what went astray is the model in
    evaluation mode — batch-norm running statistics, thrown off by a peak rate too high or very few steps."""
    if not run.has_val:
        return []
    astray = [i for i, (v, t) in enumerate(zip(run.val_loss, run.raw_train_loss))
              if isinstance(t, (int, float)) and math.isfinite(v) and v > EVAL_BLOWUP * run.ln_c and t < run.ln_c]
    if not astray:
        return []
    i = max(astray, key=run.val_loss.__getitem__)
    worst = f"{run.val_loss[i]:,.0f}" if run.val_loss[i] >= 1000 else f"{run.val_loss[i]:.4g}"
    return [f"val_loss reached {worst} at epoch {run.epoch(i)} {run.phase(i)} while train_loss was "
            f"{run.raw_train_loss[i]:.3f}, under ln(C) = {run.ln_c:.3f} ({len(astray)} epoch(s) like it): the model in "
            "evaluation mode went astray, not its fit to the training batches — batch-norm running statistics "
            "thrown off by a high rate or by very few steps an epoch"]


def _result(verdict: str, evidence: list[str], run: _Run | None = None, extra: list[str] | None = None) -> dict:
    context = {} if run is None else {"num_classes": run.num_classes, "val_images": run.n_val, "schedule": run.schedule,
                                      "label_smoothing": run.label_smoothing}
    return {"verdict": verdict, "evidence": evidence, "advice": (extra or []) + ADVICE[verdict], "context": context}


def _still_falling(values: list[float], ln_c: float, fast: bool = False) -> bool:
    """The loss fell in the last epoch by more than 3 % (10 % when `fast`) and 1 % of ln(C)."""
    rel = 0.10 if fast else STILL_FALLING
    return len(values) >= 2 and values[-2] - values[-1] > max(rel * values[-2], 0.2 * JUMP_ABS * ln_c)


def _significant_gain(run: _Run) -> str:
    """Evidence that val accuracy rose beyond its noise over the last third of the run ('' when it did not)."""
    last = len(run.val_acc) - 1
    start = max(0, last - max(1, len(run.val_acc) // 3))
    if not run.n_val or start == last:
        return ""
    p1, p2, n = run.val_acc[start], run.val_acc[last], run.n_val
    z = _two_proportion_z(p1, p2, n)
    if z <= Z:
        return ""
    return (f"val_acc rose {p1:.3f} → {p2:.3f} from epoch {run.epoch(start)} on {n} images "
            f"(z = {z:.1f} > {Z}): more epochs still pay")


def diagnose(history: list[dict], num_classes: int | None = None, val_images: int | None = None,
             schedule: str | None = None, label_smoothing: float = 0.0, kept_best: bool = False) -> dict:
    """Verdict, evidence and advice from per-epoch metrics rows.

    `num_classes` sets the scale of losses (ln C) and of chance accuracy, `val_images` the width of the
    validation-accuracy intervals, `schedule` (its name) is quoted in the context, `label_smoothing` sets the
    training loss's floor (what the rules read is the loss above it); `kept_best` says early stopping ended the
    run and restored its best epoch, so a last epoch below the best is not what the run delivers. Without them
    the diagnosis falls back to 10 classes and treats validation numbers as exact.
    """
    if not history:
        return {"verdict": "not converged", "evidence": ["no finished epochs"], "advice": ["raise train.epochs"],
                "context": {"num_classes": num_classes, "val_images": val_images, "schedule": schedule,
                            "label_smoothing": label_smoothing}}
    run = _Run(history, num_classes, val_images, schedule, label_smoothing, kept_best)
    unstable, notes, severe = _instability(run)
    notes += _eval_mode_astray(run)
    if not unstable and not severe:
        severe = _rises(run) or _early_blowup(run)
    if unstable:
        return _result("unstable", unstable + severe + notes, run)
    result = _judge(run, notes)
    # A severe spike the run recovered from still says the peak rate is too high, unless the run's problem
    # is plainly elsewhere (memorising: that is what to fix first); then it is kept as evidence.
    if severe and result["verdict"] != "overfitting":
        return _result("unstable", severe + notes, run)
    result["evidence"] += severe
    return result


def _ended_below_best(run: _Run) -> str:
    """Evidence of a run whose last epoch, still at a high rate, is significantly below its best ('' if not).

    With the rate still high at the end (a constant rate, or a schedule that has not annealed), steps too large
    keep the weights from settling: the val accuracy ends below an earlier epoch's by more than its noise (two
    proportions, z > 1.96) while the model does not fit its training images better than that epoch generalised
    (that would be memorising). An annealed run's last epoch is its settled one, so this is not asked of it; nor
    of a validation set too small for a narrow interval.
    """
    last = len(run.val_acc) - 1
    if not run.n_val or last < 2 or run.kept_best or not (run.constant_lr or run.high_phase[last]):
        return ""  # (early stopping that restored the best epoch delivers that epoch, not the last)
    lo, hi = run.interval(last)
    if hi - lo > WIDE_INTERVAL:  # the best of a dozen noisy epochs on a few images is no yardstick
        return ""
    best = max(range(last), key=lambda j: run.val_acc[j])
    p1, p2, n = run.val_acc[best], run.val_acc[last], run.n_val
    z = _two_proportion_z(p2, p1, n)
    if z <= Z or run.train_acc[last] > run.interval(best)[1]:
        return ""
    return (f"val_acc ended at {_fmt_interval(p2, n)} {run.phase(last)}, below its best {p1:.3f} (epoch "
            f"{run.epoch(best)}; z = {z:.1f} > {Z}) while train_acc {run.train_acc[last]:.3f} is not "
            "above what that epoch generalised: the steps are too large for the weights to settle — a lower rate, "
            "or a schedule that anneals it, keeps the best")


def _memorising(run: _Run, best_epoch: int) -> str:
    """Evidence of a model that fits every training image while its val loss climbs for good ('' if not).

    Validation accuracy can hold while the model grows ever surer of its wrong answers: a val loss that bottomed
    in the first half of the run and stayed > 10 % above that minimum through the last quarter is a trend (no
    one-epoch blip), and with the training set memorised it is overfitting, whatever the accuracy gap.
    """
    vals, last = run.val_loss, len(run.val_loss) - 1
    tail = vals[last - max(2, len(vals) // 4) + 1:]
    if (len(vals) < 8 or run.train_acc[last] < MEMORISED or best_epoch > last // 2
            or min(tail) <= vals[best_epoch] * (1 + VAL_RISE)):
        return ""
    return (f"val_loss bottomed at {vals[best_epoch]:.4f} (epoch {run.epoch(best_epoch)}) and stayed "
            f"{min(tail) / vals[best_epoch] - 1:.0%}+ above it over the last {len(tail)} epochs (now {vals[-1]:.4f}) "
            f"while train_acc reached {run.train_acc[last]:.3f}: the model memorises its training images; "
            f"early stopping would keep epoch {run.epoch(best_epoch)}")


def _judge(run: _Run, notes: list[str]) -> dict:
    """The verdict of a run without hard instability: underfitting, overfitting, not converged, or fine."""
    history, num_classes = run.history, run.num_classes
    last = len(history) - 1
    train_acc, train_loss = run.train_acc[last], run.train_loss[last]
    evidence = [f"final train_loss {train_loss + run.floor:.4f}, train_acc {train_acc:.4f}"]
    if run.floor:
        evidence.append(f"label smoothing {run.label_smoothing:g} puts the training loss's floor at {run.floor:.3f}; "
                        f"the rules read the {train_loss:.4f} above it")
    if run.has_val:
        evidence.append(f"final val_loss {run.val_loss[last]:.4f}, val_acc "
                        + (_fmt_interval(run.val_acc[last], run.n_val) if run.n_val else f"{run.val_acc[last]:.4f}"))
    evidence += notes

    best_acc = max(train_acc, run.val_acc[last] if run.has_val else 0.0)
    skill = _skill(best_acc, num_classes)
    loose = train_loss > UNDERFIT_LOSS * run.ln_c and skill < 0.9
    if skill < UNDERFIT_SKILL or loose:
        if skill < UNDERFIT_SKILL:
            evidence.append(f"best final accuracy {best_acc:.3f} is {skill:.0%} of the way from chance to 100% "
                            f"(< {UNDERFIT_SKILL:.0%}): the model does not fit its training data")
        if loose:
            evidence.append(f"final train_loss {train_loss:.3f} is {train_loss / run.ln_c:.0%} of ln(C) "
                            f"(> {UNDERFIT_LOSS:.0%}): the model is far from fitting its training data")
        if len(history) < 3:
            evidence.append(f"only {len(history)} epoch(s): too short to tell a model too small from a run cut short")
            return _result("not converged", evidence, run)
        if _still_falling(run.train_loss, run.ln_c, fast=True):
            evidence.append(f"train_loss still falling fast: {run.train_loss[-2]:.4f} → {train_loss:.4f} "
                            "in the last epoch; this run stopped in the middle of learning")
            return _result("not converged", evidence, run)
        return _result("underfitting", evidence, run)

    if not run.has_val:
        if _still_falling(run.train_loss, run.ln_c):
            evidence.append(f"train_loss still falling {run.train_loss[-2]:.4f} → {train_loss:.4f} in the last epoch")
            return _result("not converged", evidence, run)
        return _result("healthy", evidence + ["no validation split: generalisation not checked"], run)

    vals = run.val_loss
    lo, hi = run.interval(last)
    best_epoch = min(range(len(vals)), key=vals.__getitem__)
    rise = vals[-1] / max(vals[best_epoch], 1e-12) - 1.0
    turned = best_epoch < last and rise > VAL_RISE and vals[-1] - vals[best_epoch] > JUMP_ABS * run.ln_c
    ratio = vals[-1] / max(train_loss, 1e-12)
    gap = train_acc - hi
    wide = bool(run.n_val) and hi - lo > WIDE_INTERVAL
    apart = ratio > LOSS_RATIO and train_acc - run.val_acc[last] >= GAP_MATERIAL
    memorising = _memorising(run, best_epoch)
    if memorising:
        evidence.append(memorising)
        return _result("overfitting", evidence, run)
    # On a wide interval a gap must also be large next to the interval itself before it means anything.
    if gap > GAP_MIN and (turned or apart) and not (wide and gap < (hi - lo) / 2):
        evidence.append(f"train/val accuracy gap: train_acc {train_acc:.3f} is {gap:.3f} above the upper end of "
                        "val_acc's interval")
        if turned:
            evidence.append(f"val_loss rose {rise:.0%} from its minimum {vals[best_epoch]:.4f} at epoch "
                            f"{run.epoch(best_epoch)}")
        evidence.append(f"val_loss / train_loss = {ratio:.1f}")
        fit_then = run.train_acc[best_epoch]
        if _skill(fit_then, num_classes) < NOISY_SKILL:
            evidence.append(f"when val_loss was lowest (epoch {run.epoch(best_epoch)}) train_acc was only "
                            f"{fit_then:.3f} (val_acc {run.val_acc[best_epoch]:.3f}): what was gained since was "
                            "memorised, not learnt — tiny data, or wrong labels")
            return _result("overfitting", evidence, run, [AUDIT])
        return _result("overfitting", evidence, run)
    settled_badly = _ended_below_best(run)
    if settled_badly:
        evidence.append(settled_badly)
        return _result("unstable", evidence, run, [ANNEAL])
    gaining = _significant_gain(run)
    # Still falling means a trend: the last epoch is the lowest so far (not a bounce back from a bad epoch).
    # The fall is measured from the lowest earlier epoch: a bounce back to an earlier low is no trend.
    trend = best_epoch == last and train_acc < 0.995
    below = [min(vals[:-1]), vals[-1]]
    if trend and (_still_falling(below, run.ln_c, fast=True) or (_still_falling(below, run.ln_c) and gaining)):
        evidence.append(f"val_loss still falling {below[0]:.4f} → {vals[-1]:.4f} in the last epoch"
                        + ("" if below[0] == vals[-2] else " (from its lowest before)"))
        if gaining:
            evidence.append(gaining)
        return _result("not converged", evidence, run)
    if wide:
        evidence.append(f"the val_acc interval is {hi - lo:.2f} wide: {run.n_val} images cannot tell "
                        f"{lo:.0%} from {hi:.0%}, so generalisation is not established")
        return _result("too little validation data", evidence, run)
    evidence.append(f"train_acc {train_acc:.3f} within the val interval's reach (gap to its upper end {gap:+.3f}); "
                    f"val_loss within {max(rise, 0):.0%} of its minimum")
    return _result("healthy", evidence, run)
