"""What the classifier's and the detector's training share: the time budget and its progress
reports, the learning-rate schedule, frozen BatchNorm, and the averaged weights.

    budget = Budget(180, progress)        # budget.remaining(), budget.report("train", "epoch 3 ...")
    set_warmup_cosine_lr(optimizer, base_lrs, budget_progress, warmup_share=0.05)
    freeze_batchnorm(net)                 # after every net.train()
    average = WeightAverage(net)          # average.update_within(net, window); average.module is evaluated

Both trainers are *anytime*: they run against the clock rather than a number
of epochs, so the schedule is a function of the share of the training time
used, and it anneals exactly when the budget ends. (The stratified holdout
they also share is in ``splits``: it needs numpy only.)
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable

from timm.utils import ModelEmaV3
from torch import nn

Progress = Callable[[str, float, str], None]  # (stage, fraction of the budget used, message)


class Budget:
    """The time budget of one training run: seconds used and left, and progress reports in its terms.

    Not ``customlabels.clock`` (the wall clock of documents and events): this
    is a stopwatch on ``time.monotonic``, started when the budget is made.
    """

    def __init__(self, seconds: float, progress: Progress | None = None) -> None:
        self.start = time.monotonic()
        self.seconds = float(seconds)
        self.progress = progress

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def remaining(self) -> float:
        return self.seconds - self.elapsed()

    def fraction_used(self) -> float:
        """0..1: the share of the budget spent so far (1 once it is over)."""
        return min(1.0, self.elapsed() / self.seconds) if self.seconds > 0 else 1.0

    def report(self, stage: str, message: str) -> None:
        """Tell the caller's ``progress`` (if any) where the run stands; it may raise to stop the run."""
        if self.progress is not None:
            self.progress(stage, self.fraction_used(), message)


def set_warmup_cosine_lr(optimizer, base_lrs: list[float], progress: float, warmup_share: float,
                         start: float = 0.0) -> None:
    """Linear warm-up from ``start`` x the base rates, then cosine to zero, over ``progress`` 0..1 of the training *time*."""
    progress = min(max(progress, 0.0), 1.0)
    if progress < warmup_share:
        factor = start + (1 - start) * progress / warmup_share
    else:
        factor = 0.5 * (1 + math.cos(math.pi * (progress - warmup_share) / (1 - warmup_share)))
    for group, base in zip(optimizer.param_groups, base_lrs):
        group["lr"] = base * factor


def freeze_batchnorm(net: nn.Module) -> None:
    """BatchNorm layers keep their pretrained statistics (too few images here to re-estimate them)."""
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


class WeightAverage(ModelEmaV3):
    """An exponential moving average of a model's weights (timm's ``ModelEmaV3``); ``.module`` is the averaged copy.

    After ``n`` updates the decay is ``min(1 - 1 / window, (1 + n) / (10 + n))``:
    an average over about ``window`` steps, a window the caller may revise as
    it learns how many steps the budget affords, with TensorFlow's warm-up so
    the first updates are not outweighed by the random initial head.
    Parameters are averaged, buffers copied (BatchNorm statistics are frozen,
    the others are constants). The copy lives on the model's device in its
    dtype (float32 weights under autocast: no rounding issue) and is in eval
    mode; updates run without autograd.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model, exclude_buffers=True)
        self.updates = 0

    def update_within(self, model: nn.Module, window: float) -> None:
        """One more update, averaging over about ``window`` steps."""
        self.updates += 1
        self.decay = min(1 - 1 / window, (1 + self.updates) / (10 + self.updates))
        self.update(model)  # without a step, ModelEmaV3 applies ``self.decay`` as it is
