"""The optimizer and learning-rate schedule: AdamW with per-prefix learning rates and optional layer-wise decay
over each encoder's depth, warmup then cosine decay."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from zoo.training.config import TrainingConfig, TrainingError


def build_optimizer(model: nn.Module, config: TrainingConfig) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters, grouped by learning rate (``lr_groups``: the longest matching
    name prefix wins, then times the parameter's ``layer_decay`` scale) and by weight decay (matrices only, not
    biases, norms or ``logit_scale``)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]

    def under(name: str, prefix: str) -> bool:
        return name == prefix or name.startswith(prefix + ".")

    unused = [k for k in config.lr_groups if not any(under(n, k) for n, _ in named)]
    if unused:
        heads = sorted({".".join(n.split(".")[:2]) for n, _ in named})
        raise TrainingError(f"lr_groups key(s) {', '.join(unused)} match no trainable parameter; trainable: {', '.join(heads)}")
    scales = layer_scales(model, config.layer_decay) if config.layer_decay is not None else {}
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, param in named:
        matches = [k for k in config.lr_groups if under(name, k)]
        lr = (config.lr_groups[max(matches, key=len)] if matches else config.lr) * scales.get(name, 1.0)
        groups.setdefault((lr, config.weight_decay if param.ndim >= 2 else 0.0), []).append(param)
    return torch.optim.AdamW([{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()], lr=config.lr)


def layer_scales(model: nn.Module, decay: float) -> dict[str, float]:
    """``{parameter name: decay ** (L + 1 - depth)}`` for every encoder parameter of ``model``.

    An encoder's blocks are found by :func:`~zoo.training.stages.encoder_blocks` (``L`` of them); a parameter in
    block ``i``, or at index ``i`` of another stack of ``L`` modules beside it (a GNN's per-layer batch norms),
    has depth ``i + 1``. Parameters registered before the first block (embeddings) have depth 0, those after the
    blocks (final norms, pooling) depth ``L + 1`` and keep the full rate, like the model's heads."""
    from zoo.training.stages import encoder_blocks, encoders_of

    module_names = {id(m): n for n, m in model.named_modules()}
    scales: dict[str, float] = {}
    for encoder in encoders_of(model).values():
        prefix = module_names[id(encoder)]
        blocks_name, blocks = encoder_blocks(encoder)
        depth_count = len(blocks)
        stacks = [blocks_name] + [
            n for n, m in encoder.named_modules()
            if isinstance(m, (nn.ModuleList, nn.Sequential)) and len(m) == depth_count and n != blocks_name
            and not n.startswith(blocks_name + ".")
        ]
        after_blocks = False
        for name, _ in encoder.named_parameters():
            stack = next((s for s in stacks if name.startswith(s + ".")), None)
            if stack is not None:
                depth = int(name[len(stack) + 1 :].split(".")[0]) + 1
                after_blocks = True
            else:
                depth = depth_count + 1 if after_blocks else 0
            scales[f"{prefix}.{name}"] = decay ** (depth_count + 1 - depth)
    return scales


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainingConfig, total_steps: int) -> Any:
    """Linear warmup over ``warmup_ratio`` of the steps, then ``config.lr_schedule`` (transformers' schedules)."""
    from transformers import get_scheduler

    name = {"constant": "constant_with_warmup"}.get(config.lr_schedule, config.lr_schedule)  # "constant" skips warmup
    return get_scheduler(name, optimizer, num_warmup_steps=math.ceil(config.warmup_ratio * total_steps),
                         num_training_steps=total_steps)
