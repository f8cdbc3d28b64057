"""The MLP head that the template and predictor families put on their encoder's pooled vector."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def mlp_head(width: int, hidden_sizes: Sequence[int], outputs: int, dropout: float, activation: type[nn.Module],
             normalise_input: bool = False) -> nn.Sequential:
    """``[LayerNorm] -> (Linear, activation, Dropout) per hidden size -> Linear(outputs)``."""
    layers: list[nn.Module] = [nn.LayerNorm(width)] if normalise_input else []
    for hidden in hidden_sizes:
        layers += [nn.Linear(width, hidden), activation(), nn.Dropout(dropout)]
        width = hidden
    layers.append(nn.Linear(width, outputs))
    return nn.Sequential(*layers)
