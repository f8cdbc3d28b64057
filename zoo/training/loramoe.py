"""LoRAMoE (Dou et al. 2023): a router over several LoRA experts on frozen linear layers, to learn a task
while keeping the backbone's world knowledge.

Each chosen ``nn.Linear`` becomes a :class:`LoRAMoELinear`: the frozen layer plus ``num_experts`` LoRA
experts ``B_e A_e`` mixed per token by a router, ``y = W x + b + scale * sum_e w_e(x) B_e A_e x`` with
``w(x) = softmax(router(x))`` (or a softmax over the ``top_k`` largest router logits, the others 0) and
``scale = alpha / r``. ``B_e`` starts at zero, so the wrapped model first computes exactly what the base
model does. The wrapper keeps the base layer's ``weight`` and ``bias`` under their own names, so the
base keys of the state dict do not change; the router and experts add ``router.weight``, ``lora_A``
(``[E, r, in]``) and ``lora_B`` (``[E, out, r]``).

Use as a fine-tuning option::

    wrapped = apply_loramoe(model, target_modules=("q_proj", "v_proj"), num_experts=4, r=8)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    out = model(**batch)
    loss = out.loss + balance_weight * loramoe_balance_loss(
        model, attention_mask=batch["attention_mask"], sample_types=types, imbalance=0.1
    )

``apply_loramoe`` freezes every other parameter (unfreeze e.g. the projectors afterwards if wanted) and
returns the wrapped modules' names. ``loramoe_balance_loss`` reads the routing weights each layer kept
from the last forward pass, so call it after ``model(...)`` and before the next one. LoRAMoE uses
``balance_weight`` around 1e-2 to 1e-1 and ``imbalance`` 0.1; ``types`` marks each sample as
world-knowledge-like (1) or task-like (0), and may be ``None`` for a plain balance constraint.

Balance loss — LoRAMoE's localized balancing constraint, per wrapped layer: the importance
``Q[b, e]`` is the mean routing weight of expert ``e`` over the real tokens of sample ``b`` (LoRAMoE sums
over tokens; the squared coefficient of variation below is scale-free, so this is the same for equal
lengths and lets padding not count). The experts are split into two groups, the first ``E // 2``
(world knowledge) and the rest (task). With ``sample_types``, ``Q[b, e]`` is multiplied by
``1 + imbalance`` where expert ``e``'s group matches sample ``b``'s type and by ``1 - imbalance`` where it
does not. The layer's loss is ``Var(Z) / Mean(Z)**2`` over all entries of that matrix ``Z`` (population
variance); the result is the mean over layers, so its size does not grow with the number of layers.
Balanced routing gives 0 without sample types, and ``imbalance**2`` at the intended split with them.

Folding back into plain weights (:func:`fold_loramoe`, used by ``zoo merge``) is exact only where the
routing does not depend on the input: one expert, or dense routing (``top_k`` None or equal to the number of
experts) with every router row identical (all logits equal, so each expert gets ``1 / E``). Otherwise the
mixture changes from token to token, so no single ``W`` computes it; folding is refused, and the model keeps
its LoRAMoE layers at inference. ``save_pretrained`` records the wrapped layers (:func:`loramoe_record`) in
config.json and ``zoo.load`` wraps the same layers (:func:`apply_loramoe_record`) before loading the
weights strictly, so a saved LoRAMoE model reloads to identical outputs.

In ``zoo finetune`` it is the ``instruct`` stage's ``adapter="loramoe"`` (``loramoe_experts``, ``lora_r``,
``loramoe_top_k``, ``loramoe_balance_weight``; see ``zoo.training.stages``); the objective adds
``balance_weight * loramoe_balance_loss`` through :class:`BalancePenalty`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class LoRAMoELinear(nn.Module):
    """A frozen ``nn.Linear`` plus ``num_experts`` LoRA experts of rank ``r`` mixed per token by a router."""

    def __init__(
        self,
        base_linear: nn.Linear,
        num_experts: int,
        r: int,
        alpha: float,
        dropout: float = 0.0,
        top_k: int | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(base_linear, nn.Linear):
            raise TypeError(f"LoRAMoELinear wraps an nn.Linear, got {type(base_linear).__name__}")
        if num_experts < 1 or r < 1:
            raise ValueError(f"num_experts and r must be >= 1, got num_experts={num_experts}, r={r}")
        if top_k is not None and not 1 <= top_k <= num_experts:
            raise ValueError(f"top_k must be None (dense routing) or in [1, num_experts={num_experts}], got {top_k}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.in_features, self.out_features = base_linear.in_features, base_linear.out_features
        self.num_experts, self.r, self.top_k = num_experts, r, top_k
        self.alpha, self.dropout_p = float(alpha), float(dropout)
        self.scale = alpha / r
        self.weight = base_linear.weight
        self.bias = base_linear.bias
        self.weight.requires_grad_(False)
        if self.bias is not None:
            self.bias.requires_grad_(False)
        factory = {"device": self.weight.device, "dtype": self.weight.dtype}
        self.router = nn.Linear(self.in_features, num_experts, bias=False, **factory)
        self.lora_A = nn.Parameter(torch.empty(num_experts, r, self.in_features, **factory))
        self.lora_B = nn.Parameter(torch.zeros(num_experts, self.out_features, r, **factory))
        with torch.no_grad():
            for expert in self.lora_A:
                nn.init.kaiming_uniform_(expert, a=math.sqrt(5))  # nn.Linear's init, per expert
        self.dropout = nn.Dropout(dropout)
        self.last_routing_weights: torch.Tensor | None = None

    def routing_weights(self, x: torch.Tensor) -> torch.Tensor:
        """Float32 ``[..., num_experts]`` weights summing to 1 per token (zero outside the top k)."""
        logits = self.router(x).float()
        if self.top_k is None:
            return logits.softmax(-1)
        top, index = logits.topk(self.top_k, dim=-1)
        return torch.zeros_like(logits).scatter(-1, index, top.softmax(-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``W x + b + scale * sum_e w_e(x) B_e A_e x``; keeps ``w`` for :func:`loramoe_balance_loss`."""
        weights = self.routing_weights(x)
        self.last_routing_weights = weights
        hidden = torch.einsum("...i,eri->...er", self.dropout(x), self.lora_A)
        hidden = hidden * weights.unsqueeze(-1).to(hidden.dtype)
        delta = torch.einsum("...er,eor->...o", hidden, self.lora_B)
        return F.linear(x, self.weight, self.bias) + delta * self.scale

    def settings(self) -> dict[str, Any]:
        """What :func:`apply_loramoe_record` needs to rebuild this layer (JSON-ready)."""
        return {"num_experts": self.num_experts, "r": self.r, "alpha": self.alpha, "dropout": self.dropout_p,
                "top_k": self.top_k}

    def fixed_routing(self) -> torch.Tensor | None:
        """The routing weights ``[num_experts]`` when they are the same for every input, else ``None``.

        One expert always gets weight 1; dense routing (``top_k`` None or ``num_experts``) over identical router
        rows gives every expert ``1 / E``. With ``top_k < num_experts`` equal logits tie, and which experts
        win a tie is not defined, so that is not fixed.
        """
        dense = self.top_k is None or self.top_k == self.num_experts
        rows = self.router.weight
        if self.num_experts > 1 and not (dense and bool((rows == rows[:1]).all())):
            return None
        return self.routing_weights(torch.zeros(self.in_features, device=rows.device, dtype=rows.dtype))

    def extra_repr(self) -> str:
        routing = "dense" if self.top_k is None else f"top_k={self.top_k}"
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, num_experts={self.num_experts}, "
            f"r={self.r}, scale={self.scale:g}, routing={routing}"
        )


def apply_loramoe(
    model: nn.Module,
    target_modules: Sequence[str] = ("q_proj", "v_proj"),
    *,
    num_experts: int = 4,
    r: int = 8,
    alpha: float = 16.0,
    dropout: float = 0.05,
    top_k: int | None = None,
    within: str | None = "language_model",
    freeze_others: bool = True,
) -> list[str]:
    """Wrap every ``nn.Linear`` named ``target_modules`` (last name component) under ``model.<within>``.

    ``within=None`` searches the whole model. With ``freeze_others`` every parameter of ``model`` is frozen
    except the new routers and experts; without it, only the wrapped layers' own weights are frozen (the
    ``instruct`` stage keeps its projectors training). Returns the full names (from ``model``) of the wrapped
    modules.
    """
    root = _submodule(model, within)
    targets = set(target_modules)
    linears = [name for name, module in root.named_modules() if isinstance(module, nn.Linear)]
    names = [name for name in linears if name.rpartition(".")[2] in targets]
    if not names:
        available = sorted({name.rpartition(".")[2] for name in linears})
        raise ValueError(
            f"no nn.Linear named {', '.join(sorted(targets))} under {within or 'the model'}; "
            f"its linear layers are named: {', '.join(available) or 'none'}"
        )
    if freeze_others:
        model.requires_grad_(False)
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = root.get_submodule(parent_name)
        setattr(parent, child, LoRAMoELinear(getattr(parent, child), num_experts, r, alpha, dropout, top_k))
    prefix = f"{within}." if within else ""
    return [prefix + name for name in names]


def _submodule(model: nn.Module, within: str | None) -> nn.Module:
    if not within:
        return model
    try:
        return model.get_submodule(within)
    except AttributeError as err:
        raise ValueError(
            f"the model has no submodule {within!r}; name one that exists, or pass within=None to search the "
            "whole model"
        ) from err


def loramoe_balance_loss(
    model: nn.Module,
    attention_mask: torch.Tensor | None = None,
    sample_types: torch.Tensor | None = None,
    imbalance: float = 0.0,
) -> torch.Tensor:
    """LoRAMoE's localized balancing constraint, averaged over the wrapped layers (see the module docstring).

    ``attention_mask`` ``[B, T]`` (1 = real token) excludes padding; it must match the tokens the layers
    saw, so pass ``None`` when LoRAMoE layers sit outside the language model. ``sample_types`` ``[B]``:
    1 for world-knowledge samples (favouring the first ``E // 2`` experts), 0 for task samples.
    """
    layers = [module for module in model.modules() if isinstance(module, LoRAMoELinear)]
    if not layers:
        raise ValueError("the model has no LoRAMoE layers; call apply_loramoe(model, ...) first")
    if any(layer.last_routing_weights is None for layer in layers):
        raise ValueError("a LoRAMoE layer has no routing weights yet; call loramoe_balance_loss after model(...)")
    losses = [
        _localized_balance(layer.last_routing_weights, attention_mask, sample_types, imbalance) for layer in layers
    ]
    return torch.stack(losses).mean()


def _localized_balance(
    weights: torch.Tensor,
    attention_mask: torch.Tensor | None,
    sample_types: torch.Tensor | None,
    imbalance: float,
) -> torch.Tensor:
    """``Var / Mean**2`` of the (type-weighted) per-sample expert importance of one layer."""
    batch, num_experts = weights.shape[0], weights.shape[-1]
    if attention_mask is None:
        importance = weights.reshape(batch, -1, num_experts).mean(1)
    else:
        if tuple(attention_mask.shape) != tuple(weights.shape[:-1]):
            raise ValueError(
                f"attention_mask has shape {tuple(attention_mask.shape)} but a LoRAMoE layer routed tokens of "
                f"shape {tuple(weights.shape[:-1])}; pass the mask of the batch just run, or None"
            )
        mask = attention_mask.to(weights.dtype).reshape(batch, -1, 1)
        importance = (weights.reshape(batch, -1, num_experts) * mask).sum(1) / mask.sum(1).clamp(min=1)
    if sample_types is not None:
        if num_experts < 2 or tuple(sample_types.shape) != (batch,):
            raise ValueError(
                f"sample_types needs shape ({batch},) and at least 2 experts (got {tuple(sample_types.shape)} "
                f"and {num_experts}); give one 0/1 type per sample"
            )
        knowledge_expert = torch.arange(num_experts, device=weights.device) < num_experts // 2
        matches = knowledge_expert.unsqueeze(0) == sample_types.to(weights.device).bool().unsqueeze(1)
        importance = importance * torch.where(matches, 1.0 + imbalance, 1.0 - imbalance)
    values = importance.flatten()
    return values.var(correction=0) / (values.mean() ** 2 + 1e-10)


@dataclass(frozen=True)
class BalancePenalty:
    """The training objective's LoRAMoE term, ``weight * loramoe_balance_loss`` (without sample types)."""

    weight: float

    def __call__(self, model: nn.Module, attention_mask: torch.Tensor | None) -> torch.Tensor:
        return self.weight * loramoe_balance_loss(model, attention_mask)


class LoRAMoEFoldError(ValueError):
    """A LoRAMoE model whose routing depends on the input, so it cannot become plain weights."""


def loramoe_layers(model: nn.Module) -> dict[str, LoRAMoELinear]:
    """The model's LoRAMoE layers by full name."""
    return {name: module for name, module in model.named_modules() if isinstance(module, LoRAMoELinear)}


def loramoe_record(model: nn.Module) -> dict[str, Any] | None:
    """``{"layers": {name: settings}}`` for config.json, or ``None`` for a model without LoRAMoE layers."""
    layers = loramoe_layers(model)
    return {"layers": {name: layer.settings() for name, layer in layers.items()}} if layers else None


RECORD_FIELDS = {"num_experts": int, "r": int, "alpha": (int, float), "dropout": (int, float), "top_k": (int, type(None))}


def apply_loramoe_record(model: nn.Module, record: Any) -> None:
    """Wrap the layers a :func:`loramoe_record` names, with its settings, so the saved weights load strictly.

    ``record`` comes from an untrusted config.json: only its known fields are read, each checked, and every
    named module must be an ``nn.Linear`` of ``model``. The new layers' random initialisation does not
    disturb the caller's random state (the saved weights replace it).
    """
    if not isinstance(record, Mapping) or set(record) != {"layers"} or not isinstance(record["layers"], Mapping):
        raise ValueError(f"the loramoe adapter record must be {{'layers': {{name: settings}}}}, got {record!r}")
    wraps = []
    for name, settings in record["layers"].items():
        if not isinstance(settings, Mapping) or set(settings) != set(RECORD_FIELDS):
            raise ValueError(f"loramoe layer {name!r} needs exactly the settings {', '.join(RECORD_FIELDS)}, "
                             f"got {settings!r}")
        for key, kind in RECORD_FIELDS.items():
            if not isinstance(settings[key], kind) or isinstance(settings[key], bool):
                raise ValueError(f"loramoe layer {name!r}: {key} has the wrong type ({settings[key]!r})")
        try:
            linear = model.get_submodule(str(name))
        except AttributeError as err:
            raise ValueError(f"loramoe layer {name!r} is not a module of this model") from err
        if not isinstance(linear, nn.Linear):
            raise ValueError(f"loramoe layer {name!r} is a {type(linear).__name__}, not an nn.Linear")
        wraps.append((str(name), linear, settings))
    with torch.random.fork_rng(devices=[]):
        for name, linear, settings in wraps:
            parent_name, _, child = name.rpartition(".")
            layer = LoRAMoELinear(linear, settings["num_experts"], settings["r"], settings["alpha"],
                                  settings["dropout"], settings["top_k"])
            setattr(model.get_submodule(parent_name), child, layer)


def fold_loramoe(model: nn.Module) -> list[str]:
    """Replace every LoRAMoE layer by a plain ``nn.Linear`` computing the same ``W' = W + scale * sum_e w_e B_e A_e``.

    Only where the routing is fixed (:meth:`LoRAMoELinear.fixed_routing`); otherwise nothing is changed and
    :class:`LoRAMoEFoldError` says why. Folding is computed in float32 and cast back to the layer's dtype, so
    outputs agree with the unfolded model up to rounding. Returns the folded layers' names.
    """
    layers = loramoe_layers(model)
    routings = {name: layer.fixed_routing() for name, layer in layers.items()}
    routed = [name for name, weights in routings.items() if weights is None]
    if routed:
        layer = layers[routed[0]]
        raise LoRAMoEFoldError(
            f"{len(routed)} LoRAMoE layer(s), e.g. {routed[0]} ({layer.num_experts} experts, "
            f"{'dense' if layer.top_k is None else f'top_k={layer.top_k}'} routing), mix their experts with a "
            "router that depends on each token, so no plain weight computes them and folding would not be exact. "
            "Keep the model as it is (zoo.load reloads it with its LoRAMoE layers), or train with "
            "loramoe_experts=1 if you need a plain model"
        )
    with torch.random.fork_rng(devices=[]), torch.no_grad():  # nn.Linear's init draws; its values are replaced
        for name, layer in layers.items():
            weights = routings[name].float()
            delta = torch.einsum("e,eor,eri->oi", weights, layer.lora_B.float(), layer.lora_A.float())
            linear = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None,
                               device=layer.weight.device, dtype=layer.weight.dtype)
            linear.weight.copy_((layer.weight.float() + layer.scale * delta).to(layer.weight.dtype))
            if layer.bias is not None:
                linear.bias.copy_(layer.bias)
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name), child, linear)
    return list(layers)
