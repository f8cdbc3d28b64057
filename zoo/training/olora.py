"""O-LoRA (Wang et al. 2023, "Orthogonal Subspace Learning for Language Model Continual Learning"): learn each
new task in a LoRA subspace orthogonal to the earlier tasks' ones, so the new task disturbs them less.

Each chosen ``nn.Linear`` becomes an :class:`OLoRALinear`: the frozen layer plus one LoRA adapter per task,
``y = W x + b + sum_t scale_t B_t A_t x`` (``scale_t = alpha_t / r_t``). Fine-tuning task ``T`` with
:func:`apply_olora` freezes the adapters of tasks ``1..T-1`` and adds a new one (``A_T`` initialised like
``nn.Linear``, ``B_T`` at zero, so the model first computes what it did). The objective adds
(:class:`OrthogonalityPenalty`)

    lambda_1 * sum_layers sum_{t<T} sum_ij |A_t A_T^T|_ij   +   lambda_2 * sum_layers (||A_T|| + ||B_T||)

— the paper's orthogonality loss over the rows of the ``A`` matrices (the bases of the adapters' input
subspaces) and its L2 term (Frobenius norms, as in the authors' code); the paper uses ``lambda_1 = 0.5``.

A model trained this way keeps every task's adapter unmerged, so the next task can be added on top of it:
``save_pretrained`` records the layers and their tasks (:func:`olora_record`) in config.json and ``zoo.load``
re-creates them (:func:`apply_olora_record`) before loading the weights strictly. Folding the adapters into
plain weights is exact (their deltas add up): :func:`fold_olora`, which ``zoo merge`` applies.

In ``zoo finetune`` it is the ``instruct`` stage's ``adapter="olora"`` (``lora_r``, ``lora_alpha``,
``lora_target_modules``, ``olora_lambda1``, ``olora_lambda2``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class OLoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus one LoRA adapter per task; only the newest adapter may train."""

    def __init__(self, base_linear: nn.Linear, dropout: float = 0.0) -> None:
        super().__init__()
        if not isinstance(base_linear, nn.Linear):
            raise TypeError(f"OLoRALinear wraps an nn.Linear, got {type(base_linear).__name__}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.in_features, self.out_features = base_linear.in_features, base_linear.out_features
        self.weight = base_linear.weight
        self.bias = base_linear.bias
        self.weight.requires_grad_(False)
        if self.bias is not None:
            self.bias.requires_grad_(False)
        self.dropout_p = float(dropout)
        self.dropout = nn.Dropout(dropout)
        self.lora_A = nn.ParameterList()
        self.lora_B = nn.ParameterList()
        self.alphas: list[float] = []

    @property
    def num_tasks(self) -> int:
        return len(self.lora_A)

    def add_task(self, r: int, alpha: float, generator: torch.Generator | None = None) -> None:
        """Freeze the earlier tasks' adapters and add a trainable one of rank ``r`` (``B`` at zero; ``A`` drawn
        from ``generator``, default the global one)."""
        if r < 1:
            raise ValueError(f"r must be >= 1, got {r}")
        for param in (*self.lora_A, *self.lora_B):
            param.requires_grad_(False)
        factory = {"device": self.weight.device, "dtype": self.weight.dtype}
        a = torch.empty(r, self.in_features, dtype=torch.float32)
        nn.init.kaiming_uniform_(a, a=math.sqrt(5), generator=generator)  # nn.Linear's init
        self.lora_A.append(nn.Parameter(a.to(**factory)))
        self.lora_B.append(nn.Parameter(torch.zeros(self.out_features, r, **factory)))
        self.alphas.append(float(alpha))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight, self.bias)
        if not self.num_tasks:
            return out
        dropped = self.dropout(x)
        for a, b, alpha in zip(self.lora_A, self.lora_B, self.alphas, strict=True):
            out = out + F.linear(F.linear(dropped, a), b) * (alpha / a.shape[0])
        return out

    def delta_weight(self) -> torch.Tensor:
        """``sum_t scale_t B_t A_t`` in float32."""
        delta = torch.zeros(self.out_features, self.in_features, device=self.weight.device)
        for a, b, alpha in zip(self.lora_A, self.lora_B, self.alphas, strict=True):
            delta += (alpha / a.shape[0]) * (b.float() @ a.float())
        return delta

    def settings(self) -> dict[str, Any]:
        """What :func:`apply_olora_record` needs to rebuild this layer (JSON-ready)."""
        return {"ranks": [int(a.shape[0]) for a in self.lora_A], "alphas": list(self.alphas), "dropout": self.dropout_p}

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, ranks={self.settings()['ranks']}"


def olora_layers(model: nn.Module) -> dict[str, OLoRALinear]:
    """The model's O-LoRA layers by full name."""
    return {name: module for name, module in model.named_modules() if isinstance(module, OLoRALinear)}


def apply_olora(
    model: nn.Module,
    target_modules: Sequence[str] = ("q_proj", "v_proj"),
    *,
    r: int = 8,
    alpha: float = 16.0,
    dropout: float = 0.0,
    within: str | None = "language_model",
) -> list[str]:
    """Add a new task's adapter to every layer named ``target_modules`` (last name component) under
    ``model.<within>``: an existing :class:`OLoRALinear` gets one more (its earlier ones frozen), an
    ``nn.Linear`` is wrapped first. Other parameters keep their ``requires_grad``. Returns the layers' names.

    The new ``A`` matrices come from a generator seeded by one draw of the global random state plus the new
    task's index: reproducible under a seeded run, yet a second task trained with the same seed as the first
    does not start in the first task's subspace (its ``A`` may barely have moved, as ``B`` starts at zero).
    """
    root = model.get_submodule(within) if within else model
    targets = set(target_modules)
    candidates = {name: module for name, module in root.named_modules() if isinstance(module, (nn.Linear, OLoRALinear))}
    names = [name for name in candidates if name.rpartition(".")[2] in targets]
    if not names:
        available = sorted({name.rpartition(".")[2] for name in candidates})
        raise ValueError(f"no linear layer named {', '.join(sorted(targets))} under {within or 'the model'}; "
                         f"its linear layers are named: {', '.join(available) or 'none'}")
    task = max(module.num_tasks if isinstance(module, OLoRALinear) else 0 for module in map(candidates.get, names))
    generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, ())) + task)
    for name in names:
        layer = candidates[name]
        if isinstance(layer, nn.Linear):
            parent_name, _, child = name.rpartition(".")
            layer = OLoRALinear(layer, dropout)
            setattr(root.get_submodule(parent_name), child, layer)
        layer.add_task(r, alpha, generator)
    prefix = f"{within}." if within else ""
    return [prefix + name for name in names]


@dataclass(frozen=True)
class OrthogonalityPenalty:
    """O-LoRA's regulariser: ``lambda1`` times the overlap of the newest adapter's ``A`` with the earlier ones',
    plus ``lambda2`` times the newest adapter's norms (see the module docstring)."""

    lambda1: float
    lambda2: float

    def __call__(self, model: nn.Module, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        overlap, norms = olora_terms(model)
        return self.lambda1 * overlap + self.lambda2 * norms


def olora_terms(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sum |A_t A_T^T|, sum ||A_T|| + ||B_T||)`` over the model's O-LoRA layers (``T``: the newest task)."""
    layers = list(olora_layers(model).values())
    if not layers:
        raise ValueError("the model has no O-LoRA layers; call apply_olora(model, ...) first")
    overlap = torch.zeros((), device=layers[0].weight.device)
    norms = torch.zeros((), device=layers[0].weight.device)
    for layer in layers:
        new_a, new_b = layer.lora_A[-1].float(), layer.lora_B[-1].float()
        for old_a in list(layer.lora_A)[:-1]:
            overlap = overlap + (old_a.float() @ new_a.T).abs().sum()
        norms = norms + new_a.norm() + new_b.norm()
    return overlap, norms


def olora_record(model: nn.Module) -> dict[str, Any] | None:
    """``{"layers": {name: settings}}`` for config.json, or ``None`` for a model without O-LoRA layers."""
    layers = olora_layers(model)
    return {"layers": {name: layer.settings() for name, layer in layers.items()}} if layers else None


def apply_olora_record(model: nn.Module, record: Any) -> None:
    """Re-create the O-LoRA layers and tasks an :func:`olora_record` lists, so the saved weights load strictly.

    ``record`` comes from an untrusted config.json: only its known fields are read and checked, and every named
    module must be an ``nn.Linear`` of ``model``. The caller's random state is left as it was.
    """
    if not isinstance(record, Mapping) or set(record) != {"layers"} or not isinstance(record["layers"], Mapping):
        raise ValueError(f"the olora adapter record must be {{'layers': {{name: settings}}}}, got {record!r}")
    wraps = []
    for name, settings in record["layers"].items():
        if not isinstance(settings, Mapping) or set(settings) != {"ranks", "alphas", "dropout"}:
            raise ValueError(f"olora layer {name!r} needs exactly the settings ranks, alphas, dropout, got {settings!r}")
        ranks, alphas, dropout = settings["ranks"], settings["alphas"], settings["dropout"]
        if not (isinstance(ranks, list) and isinstance(alphas, list) and len(ranks) == len(alphas) >= 1
                and all(isinstance(r, int) and not isinstance(r, bool) and r >= 1 for r in ranks)
                and all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in alphas)
                and isinstance(dropout, (int, float)) and not isinstance(dropout, bool)):
            raise ValueError(f"olora layer {name!r}: ranks (positive integers) and alphas (numbers) must be lists of "
                             f"one entry per task and dropout a number, got {settings!r}")
        try:
            linear = model.get_submodule(str(name))
        except AttributeError as err:
            raise ValueError(f"olora layer {name!r} is not a module of this model") from err
        if not isinstance(linear, nn.Linear):
            raise ValueError(f"olora layer {name!r} is a {type(linear).__name__}, not an nn.Linear")
        wraps.append((str(name), linear, ranks, alphas, float(dropout)))
    with torch.random.fork_rng(devices=[]):
        for name, linear, ranks, alphas, dropout in wraps:
            layer = OLoRALinear(linear, dropout)
            for r, alpha in zip(ranks, alphas, strict=True):
                layer.add_task(r, alpha)
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name), child, layer)


def fold_olora(model: nn.Module) -> list[str]:
    """Replace every O-LoRA layer by a plain ``nn.Linear`` with ``W + sum_t scale_t B_t A_t`` (exact up to
    rounding: the adapters are linear and input-independent). Returns the folded layers' names."""
    layers = olora_layers(model)
    with torch.random.fork_rng(devices=[]), torch.no_grad():  # nn.Linear's init draws; its values are replaced
        for name, layer in layers.items():
            linear = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None,
                               device=layer.weight.device, dtype=layer.weight.dtype)
            linear.weight.copy_((layer.weight.float() + layer.delta_weight()).to(layer.weight.dtype))
            if layer.bias is not None:
                linear.bias.copy_(layer.bias)
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name), child, linear)
    return list(layers)
