"""The optimizer and learning-rate schedule: AdamW with per-prefix learning rates, warmup then cosine decay."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from zoo.training.config import TrainingConfig, TrainingError


def build_optimizer(model: nn.Module, config: TrainingConfig) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters, grouped by learning rate (``lr_groups``: the longest matching
    name prefix wins) and by weight decay (matrices only, not biases, norms or ``logit_scale``)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]

    def under(name: str, prefix: str) -> bool:
        return name == prefix or name.startswith(prefix + ".")

    unused = [k for k in config.lr_groups if not any(under(n, k) for n, _ in named)]
    if unused:
        heads = sorted({".".join(n.split(".")[:2]) for n, _ in named})
        raise TrainingError(f"lr_groups key(s) {', '.join(unused)} match no trainable parameter; trainable: {', '.join(heads)}")
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, param in named:
        matches = [k for k in config.lr_groups if under(name, k)]
        lr = config.lr_groups[max(matches, key=len)] if matches else config.lr
        groups.setdefault((lr, config.weight_decay if param.ndim >= 2 else 0.0), []).append(param)
    return torch.optim.AdamW([{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()], lr=config.lr)


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainingConfig, total_steps: int) -> Any:
    """Linear warmup over ``warmup_ratio`` of the steps, then cosine decay to zero (transformers' schedule)."""
    from transformers import get_cosine_schedule_with_warmup

    return get_cosine_schedule_with_warmup(optimizer, math.ceil(config.warmup_ratio * total_steps), total_steps)
