"""``TrainingConfig``: every fine-tuning setting in one frozen dataclass, checked when it is built.

The config is what a run is: it is written into each checkpoint, and resuming with a config that differs in
anything that changes the weights is refused, so a resumed run is the run that was started.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

STAGES: tuple[str, ...] = ("align", "instruct", "head", "full")
BATCHING: tuple[str, ...] = ("padded", "length-grouped", "packed")
MIXED_PRECISION: tuple[str, ...] = ("no", "bf16")
LR_SCHEDULES: tuple[str, ...] = ("cosine", "linear", "constant")  # after warmup: to zero, to zero, flat
ADAPTERS: tuple[str, ...] = ("lora", "loramoe", "olora")  # what the instruct stage adds to the language model
# Settings that do not change the trained weights: a resumed run may differ in these.
RESUME_FREE: tuple[str, ...] = ("progress", "resume", "save_every", "keep_checkpoints", "allow_rng_reset")


class TrainingError(ValueError):
    """A fine-tuning setting, data set or checkpoint that cannot be used; the message says what to do."""


@dataclass(frozen=True)
class TrainingConfig:
    """How to fine-tune.

    ``batch_size`` is the GLOBAL micro-batch: under ``accelerate launch`` each of N processes takes
    ``batch_size / N`` examples of it, so one command gives the same optimisation at any process count. One
    optimizer step sees ``batch_size * grad_accum`` examples. ``max_steps`` (optimizer steps), when set,
    overrides ``epochs``. ``eval_every``, ``save_every`` count optimizer steps (``eval_every="epoch"``: once per pass
    over the training data); ``eval_limit`` validates on the
    first N rows only. ``lr_groups`` maps a
    parameter-name prefix (``projectors``, ``language_model``, ``encoders.image``, ``logit_scale``...) to its
    own learning rate; other trainable parameters use ``lr``. With ``early_stopping_metric`` (a key of the
    validation results' ``metrics``, better when higher unless ``early_stopping_mode="min"``) the best-scoring
    weights are kept in ``best/`` and are the ones written to ``final/``. ``frozen`` lists parameter-name prefixes (``encoders``, ``encoders.smiles``...) that stay frozen whatever the
stage. ``cache_frozen_features`` runs a ``DualEncoder``'s frozen towers once over the data and trains the
heads on their pooled outputs (``align`` with nothing unfrozen). ``merge_lora=False`` keeps an
    ``instruct`` run's LoRA unmerged (``final/`` is then an adapter for ``zoo.training.load_adapter``).
    ``layer_decay`` (in (0, 1]) scales each encoder parameter's learning rate by ``layer_decay ** (L + 1 - depth)``
    (depth 0: embeddings, 1..L: the encoder's blocks, L + 1: what follows them; heads and projectors keep the full
    rate), the layer-wise decay of BEiT / ELECTRA fine-tuning. The learning rate warms up linearly over
    ``warmup_ratio`` of the steps, then follows ``lr_schedule``: ``cosine`` or ``linear`` decay to zero, or
    ``constant`` (the MoleculeNet fine-tuning protocol of Hu et al.).
    ``keep_checkpoints`` (at least 2, so a damaged latest checkpoint has an earlier one to fall back to) is
    how many checkpoints stay on disk. ``adapter`` is what the ``instruct`` stage adds to the language model:
    ``lora`` (peft), or ``loramoe`` (``zoo.training.loramoe``: ``loramoe_experts`` LoRA experts of rank ``lora_r``
    on each of ``lora_target_modules`` (default ``q_proj``, ``v_proj``), mixed per token by a router, dense or over
    the ``loramoe_top_k`` largest logits; the logged loss then includes ``loramoe_balance_weight`` times the
    balance loss, weighted per answer token like the cross-entropy), or ``olora`` (``zoo.training.olora``: a new
    task's LoRA adapter beside the frozen ones of the earlier tasks that the model carries, with ``olora_lambda1``
    times the overlap of its ``A`` with theirs and ``olora_lambda2`` times its norms added to the loss once per
    step). ``allow_rng_reset`` lets a resume go on, with a warning and freshly seeded random states, when the
    checkpoint's saved random states cannot be read; without it that is an error.
    """

    stage: str = "instruct"
    epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 1e-4
    lr_groups: dict[str, float] = field(default_factory=dict)
    warmup_ratio: float = 0.03
    lr_schedule: str = "cosine"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_target_modules: list[str] | None = None
    merge_lora: bool = True
    adapter: str = "lora"
    loramoe_experts: int = 4
    loramoe_top_k: int | None = None
    loramoe_balance_weight: float = 0.01
    olora_lambda1: float = 0.5
    olora_lambda2: float = 0.0
    unfreeze_encoder_blocks: int = 0
    layer_decay: float | None = None
    frozen: list[str] = field(default_factory=list)
    cache_frozen_features: bool = True
    batching: str = "padded"
    eval_every: int | str | None = None
    eval_limit: int | None = None
    early_stopping_metric: str | None = None
    early_stopping_mode: str = "max"
    early_stopping_patience: int | None = None
    seed: int = 0
    resume: bool = True
    save_every: int = 500
    keep_checkpoints: int = 2
    allow_rng_reset: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        _choice("stage", self.stage, STAGES)
        _choice("batching", self.batching, BATCHING)
        _choice("mixed_precision", self.mixed_precision, MIXED_PRECISION)
        _choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _choice("early_stopping_mode", self.early_stopping_mode, ("max", "min"))
        _choice("adapter", self.adapter, ADAPTERS)
        if self.adapter != "lora" and self.stage != "instruct":
            raise TrainingError(f"adapter={self.adapter!r} is added by the instruct stage; use stage 'instruct' "
                                f"(stage {self.stage!r} adds no adapter)")
        if self.loramoe_experts < 1:
            raise TrainingError(f"loramoe_experts must be at least 1, got {self.loramoe_experts}")
        if self.loramoe_top_k is not None and not 1 <= self.loramoe_top_k <= self.loramoe_experts:
            raise TrainingError(f"loramoe_top_k must be unset (dense routing) or in [1, loramoe_experts="
                                f"{self.loramoe_experts}], got {self.loramoe_top_k}")
        if self.loramoe_balance_weight < 0:
            raise TrainingError(f"loramoe_balance_weight must be >= 0, got {self.loramoe_balance_weight}")
        if self.olora_lambda1 < 0 or self.olora_lambda2 < 0:
            raise TrainingError(f"olora_lambda1 and olora_lambda2 must be >= 0, got {self.olora_lambda1} and "
                                f"{self.olora_lambda2}")
        for name in ("epochs", "batch_size", "grad_accum", "lora_r", "save_every"):
            if getattr(self, name) < 1:
                raise TrainingError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.keep_checkpoints < 2:
            raise TrainingError(f"keep_checkpoints must be at least 2 (the one before the latest is the fallback if the "
                                f"latest is damaged), got {self.keep_checkpoints}")
        if isinstance(self.eval_every, str) and self.eval_every != "epoch":
            raise TrainingError(f"eval_every must be a number of steps or 'epoch', got {self.eval_every!r}")
        for name in ("max_steps", "eval_every", "eval_limit", "early_stopping_patience"):
            value = getattr(self, name)
            if value is not None and value != "epoch" and value < 1:
                raise TrainingError(f"{name} must be at least 1 (or unset), got {value}")
        if not 0 <= self.warmup_ratio < 1:
            raise TrainingError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.layer_decay is not None and not 0 < self.layer_decay <= 1:
            raise TrainingError(f"layer_decay must be in (0, 1] (or unset), got {self.layer_decay}")
        if self.unfreeze_encoder_blocks < 0:
            raise TrainingError(f"unfreeze_encoder_blocks must be >= 0, got {self.unfreeze_encoder_blocks}")
        if self.unfreeze_encoder_blocks and self.stage == "full":
            raise TrainingError("unfreeze_encoder_blocks is for the align and instruct stages; 'full' trains everything")
        if self.early_stopping_metric is not None and self.eval_every is None:
            raise TrainingError("early_stopping_metric needs eval_every (and validation_data) to be set")
        if self.early_stopping_patience is not None and self.early_stopping_metric is None:
            raise TrainingError("early_stopping_patience needs early_stopping_metric (a key of results['metrics'])")

    @classmethod
    def from_kwargs(cls, values: Mapping[str, Any]) -> TrainingConfig:
        """A config from keyword settings; an unknown key is an error naming the allowed ones."""
        allowed = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(allowed))
        if unknown:
            raise TrainingError(f"unknown training setting(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")
        values = dict(values)
        if values.get("lr_groups") is None:
            values.pop("lr_groups", None)
        if values.get("frozen") is None:
            values.pop("frozen", None)
        else:
            values["frozen"] = list(values["frozen"])
        if values.get("lora_target_modules") is not None:
            values["lora_target_modules"] = list(values["lora_target_modules"])
        try:
            return cls(**values)
        except TypeError as err:
            raise TrainingError(f"invalid training settings: {err}") from err

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def differences(self, saved: Mapping[str, Any]) -> list[str]:
        """Settings (other than :data:`RESUME_FREE`) whose value differs from a saved config's. A setting added
        after the checkpoint was written counts as its default there (the run could not have set it), so an older
        checkpoint still resumes when the new setting is left at its default."""
        mine = self.to_dict()
        defaults = TrainingConfig().to_dict()
        return sorted(
            k for k in set(mine) | set(saved)
            if k not in RESUME_FREE and mine.get(k) != saved.get(k, defaults.get(k))
        )


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise TrainingError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
