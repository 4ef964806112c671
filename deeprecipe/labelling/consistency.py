"""Online pseudo-labels with consistency (FixMatch, Sohn et al. 2020): the model is its own teacher, every step.

Each training step also draws `pseudo.ratio` × batch unlabelled images. The model, without gradient, labels
a weakly augmented view of each; where it is at least `pseudo.threshold` sure, the same image under strong
augmentation must get that label too (cross-entropy, weight `pseudo.weight`). A strong view the model cannot
yet get right is what it learns from, which is where offline rounds give up: their students only repeat
what the teacher was already sure of.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..augment import build_pipeline
from ..data.loader import Normalizer
from ..train.trainer import Trainer, autocast_context


class TwoViews:
    """Random batches of uint8 unlabelled images as (weak, strong) normalised views of the same images."""

    def __init__(self, images: torch.Tensor, batch_size: int, mean, std, weak, strong, device: torch.device,
                 seed: int, channels_last: bool = False, rank: int = 0):
        self.images = images.to(device)
        self.batch_size = batch_size
        self.weak, self.strong = weak, strong
        self.normalize = Normalizer(mean, std, images.shape[1], device, channels_last)
        self.g = torch.Generator(device=device)
        # Its own stream (the labelled loader's order is unchanged); under torchrun each rank draws other images.
        self.g.manual_seed(seed * 1_000_003 + 104_729 + 7_919 * rank)

    def _view(self, x: torch.Tensor, pipeline) -> torch.Tensor:
        if pipeline is not None:
            x, _ = pipeline(x.clone(), torch.zeros(x.shape[0], dtype=torch.long, device=x.device), self.g)
        return self.normalize(x)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(0, self.images.shape[0], (self.batch_size,), generator=self.g, device=self.images.device)
        x = self.images[idx].float().div_(255.0)
        return self._view(x, self.weak), self._view(x, self.strong)


class ConsistencyTrainer(Trainer):
    """A Trainer whose loss adds the confident-pseudo-label consistency term on unlabelled images."""

    def __init__(self, model, cfg, *args, unlabeled: torch.Tensor, **kw):
        super().__init__(model, cfg, *args, **kw)
        p = cfg.pseudo
        classes = len(self.meta["classes"])
        self.views = TwoViews(unlabeled, max(1, round(p.ratio * self.train_loader.batch_size)), self.meta["mean"],
                              self.meta["std"], build_pipeline(cfg.data.augment, classes),
                              build_pipeline(p.strong_augment, classes), self.device, cfg.train.seed,
                              self.train_loader.channels_last, rank=self.dist.rank)
        self._taken = torch.zeros((), device=self.device)  # views that passed the threshold, kept on the device
        self.drawn = 0                                      # unlabelled views drawn, over the whole run

    def compute_loss(self, x: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        supervised = super().compute_loss(x, logits, y)
        weak, strong = self.views.next()
        with torch.no_grad(), autocast_context(self.device, self.precision):
            probs = torch.softmax(self.forward_model(weak).float(), 1)
        confidence, pseudo = probs.max(1)
        mask = (confidence >= self.cfg.pseudo.threshold).float()
        with autocast_context(self.device, self.precision):
            strong_logits = self.forward_model(strong).float()
        unsupervised = (F.cross_entropy(strong_logits, pseudo, reduction="none") * mask).mean()
        self._taken = self._taken + mask.sum()
        self.drawn += mask.numel()
        return supervised + self.cfg.pseudo.weight * unsupervised

    @property
    def taken(self) -> int:
        """Unlabelled views that passed the threshold, over the whole run (read from the device on demand)."""
        return int(self._taken)
