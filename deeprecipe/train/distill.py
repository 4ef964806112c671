"""Knowledge distillation: a student trained against a teacher run's softened outputs (Hinton et al. 2015).

The teacher sees exactly the student's batch (same augmentation). Batches arrive normalised with the
student's mean/std; when the teacher was trained with other statistics the batch is re-normalised
to the teacher's, so both always look at the same pixels.
"""
from __future__ import annotations

import torch

from ..errors import DeepRecipeError
from .losses import distillation_loss
from .metrics import topk_correct
from .trainer import Trainer


class DistillTrainer(Trainer):
    """`teacher` is (trained model, its run's meta: classes, mean, std, input_shape), loaded by the session."""

    def __init__(self, model, cfg, *args, teacher: tuple[torch.nn.Module, dict], **kw):
        super().__init__(model, cfg, *args, **kw)
        teacher_model, t_meta = teacher
        classes = self.meta.get("classes")
        if classes is not None and list(t_meta["classes"]) != list(classes):
            raise DeepRecipeError(f"distill.teacher {cfg.distill.teacher} was trained on classes {t_meta['classes'][:6]}…, "
                                  f"the student on {list(classes)[:6]}…", "distil from a teacher trained on the same classes")
        shape = tuple(self.meta.get("input_shape", t_meta["input_shape"]))
        if tuple(t_meta["input_shape"]) != shape:
            raise DeepRecipeError(f"distill.teacher takes input {tuple(t_meta['input_shape'])}, the student's data is {shape}",
                                  "set data.image_size / data.channels to match the teacher's run")
        self.teacher = teacher_model.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self._renorm = self._renormaliser(t_meta["mean"], t_meta["std"])

    def _renormaliser(self, t_mean, t_std):
        """(scale, shift) mapping student-normalised x to teacher-normalised x; None when stats agree."""
        s_mean, s_std = self.meta.get("mean", t_mean), self.meta.get("std", t_std)
        if list(s_mean) == list(t_mean) and list(s_std) == list(t_std):
            return None
        view = (1, -1, 1, 1)
        s_mean, s_std, t_mean, t_std = (torch.tensor(v, device=self.device).view(view)
                                        for v in (s_mean, s_std, t_mean, t_std))
        return s_std / t_std, (s_mean - t_mean) / t_std

    @torch.no_grad()
    def teacher_logits(self, x: torch.Tensor) -> torch.Tensor:
        if self._renorm is not None:
            scale, shift = self._renorm
            x = x * scale + shift
        return self.teacher(x).float()

    def compute_loss(self, x: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        d = self.cfg.distill
        return distillation_loss(logits, self.teacher_logits(x), y, d.temperature, d.alpha,
                                 self.cfg.regularize.label_smoothing)

    def extra_summary(self, loader) -> dict:
        """The teacher evaluated once on the split the student is tested on."""
        outs, labels = [], []
        for x, y in loader:
            outs.append(self.teacher_logits(x).cpu())
            labels.append(y.cpu())
        if not outs:
            return {}
        logits, labels = torch.cat(outs), torch.cat(labels)
        return {"teacher": str(self.cfg.distill.teacher),
                "teacher_test_acc": topk_correct(logits, labels, 1) / max(1, labels.numel())}
