"""What each stage trains, and the train/eval mode of every part.

- ``align``: the projectors only (encoders and LLM frozen: InstructMol / PRESTO stage 1). For a
  ``DualEncoder``: the projection heads, ``logit_scale`` and a sigmoid loss's ``logit_bias`` (SAIL-style
  alignment of two frozen towers).
- ``instruct``: the projectors plus LoRA adapters on ``model.language_model`` (peft; a causal LM or an
  encoder–decoder, as ``model.lora_task_type`` says), or with ``adapter="loramoe"`` LoRAMoE layers
  (``zoo.training.loramoe``), whose balance loss the objective adds (``model.training_penalty``), or with
  ``adapter="olora"`` a new task's adapter kept orthogonal to the earlier tasks' (``zoo.training.olora``).
- ``head``: a ``Predictor``'s property head only (the encoder frozen: a linear probe when the head is linear).
- ``full``: every parameter.

``unfreeze_encoder_blocks=N`` also trains the last N blocks of every encoder (see :func:`encoder_blocks`);
``frozen`` keeps parameter-name prefixes frozen in any stage (``full`` with ``frozen=["encoders"]`` trains a
language model from scratch on top of a pretrained encoder).
Encoders with no trainable parameter run in eval mode (their dropout off, batch-norm statistics untouched);
the LLM stays in train mode because gradients flow through it to the projectors.
"""

from __future__ import annotations

import warnings
from typing import Any

from torch import nn

from zoo.training.config import TrainingConfig, TrainingError


def is_multimodal_lm(model: nn.Module) -> bool:
    return hasattr(model, "language_model") and hasattr(model, "projectors")


def is_seq2seq_lm(model: nn.Module) -> bool:
    """A ``MultimodalLM`` on an encoder–decoder (``hf-seq2seq-lm``): its answer is the decoder's labels, not
    tokens after the prompt, so it trains with its own collator and objective and cannot be packed."""
    return is_multimodal_lm(model) and bool(getattr(model.language_model.config, "is_encoder_decoder", False))


def is_dual_encoder(model: nn.Module) -> bool:
    return hasattr(model, "towers") and hasattr(model, "text_tower")


def is_predictor(model: nn.Module) -> bool:
    return getattr(getattr(model, "spec", None), "type", None) == "predictor"


STAGES_OF = {  # which stages train which family
    "MultimodalLM": ("align", "instruct", "full"),
    "DualEncoder": ("align", "full"),
    "Predictor": ("head", "full"),
}


def family(model: nn.Module) -> str:
    """The model's trainable family; a model that ``zoo finetune`` cannot train is an error saying what can."""
    if is_multimodal_lm(model):
        return "MultimodalLM"
    if is_dual_encoder(model):
        return "DualEncoder"
    if is_predictor(model):
        return "Predictor"
    raise TrainingError(
        f"cannot fine-tune a {type(model).__name__} on this task; finetune trains a MultimodalLM, a DualEncoder, or "
        "an encoder with a property head (give a task of kind 'property', e.g. -t moleculenet-bbbp, and the head is added)"
    )


def encoders_of(model: nn.Module) -> dict[str, nn.Module]:
    """The modality encoders of a ``MultimodalLM``, the towers (text included) of a ``DualEncoder``, or the one
    encoder of a ``Predictor``."""
    kind = family(model)
    if kind == "MultimodalLM":
        return dict(model.encoders.items())
    if kind == "DualEncoder":
        return {**dict(model.towers.items()), "text": model.text_tower}
    return {model.modality: model.encoder}


def encoder_blocks(encoder: nn.Module) -> tuple[str, list[nn.Module]]:
    """The encoder's stack of repeated blocks and its name.

    Found generically: among ``nn.ModuleList``/``nn.Sequential`` containers holding at least two children
    of one class that each have sub-modules (so lists of plain embeddings or norms do not count), the one
    with the most parameters, e.g. timm ``model.blocks``, HF ``model.encoder.layer``, GNN ``gnn.gnns``.
    """
    candidates = []
    for name, module in encoder.named_modules():
        if not isinstance(module, (nn.ModuleList, nn.Sequential)):
            continue
        children = list(module.children())
        if len(children) >= 2 and len({type(c) for c in children}) == 1 and all(next(c.children(), None) is not None for c in children):
            candidates.append((sum(p.numel() for p in module.parameters()), name, children))
    if not candidates:
        raise TrainingError(
            f"{type(encoder).__name__} has no stack of repeated blocks (an nn.ModuleList/Sequential of one block "
            "class) to unfreeze; set unfreeze_encoder_blocks=0 or use stage 'full'"
        )
    _, name, blocks = max(candidates, key=lambda c: c[0])
    return name, blocks


def apply_stage(model: nn.Module, config: TrainingConfig) -> int:
    """Freeze and unfreeze ``model`` for ``config.stage`` (adding LoRA for ``instruct``); returns how many
    parameters train."""
    encoders = encoders_of(model)
    allowed = STAGES_OF[family(model)]
    if config.stage not in allowed:
        raise TrainingError(f"a {family(model)} trains with stage {' or '.join(repr(s) for s in allowed)}, "
                            f"not {config.stage!r}")
    model.requires_grad_(config.stage == "full")
    if config.stage == "head":
        model.head.requires_grad_(True)
        for modality, encoder in encoders.items():
            _unfreeze_last_blocks(modality, encoder, config.unfreeze_encoder_blocks)
    elif config.stage != "full":
        if is_dual_encoder(model):
            model.projections.requires_grad_(True)
            model.text_projection.requires_grad_(True)
            model.logit_scale.requires_grad_(True)
            if model.text_logit_scale is not None:  # CLAP's text -> item temperature
                model.text_logit_scale.requires_grad_(True)
            if model.logit_bias is not None:  # a sigmoid loss's bias (SigLIP)
                model.logit_bias.requires_grad_(True)
        else:
            model.projectors.requires_grad_(True)
        for modality, encoder in encoders.items():
            _unfreeze_last_blocks(modality, encoder, config.unfreeze_encoder_blocks)
    _keep_frozen(model, config.frozen)
    if config.gradient_checkpointing:
        _enable_gradient_checkpointing(model, encoders)
    model.training_penalty = add_adapter(model, config) if config.stage == "instruct" else None
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if not trainable:
        raise TrainingError(f"stage {config.stage!r} leaves nothing to train in this model (no projection or head weights)")
    set_train_mode(model)
    return trainable


def _unfreeze_last_blocks(modality: str, encoder: nn.Module, n: int) -> None:
    if n == 0:
        return
    name, blocks = encoder_blocks(encoder)
    if n > len(blocks):
        raise TrainingError(
            f"unfreeze_encoder_blocks={n} but the {modality} encoder has {len(blocks)} blocks ({name}); "
            f"give at most {len(blocks)}"
        )
    for block in blocks[-n:]:
        block.requires_grad_(True)


def _keep_frozen(model: nn.Module, prefixes: list[str]) -> None:
    """Freeze every parameter whose name starts with one of ``prefixes``; a prefix that names nothing is an
    error (a typo would otherwise train what the user meant to keep)."""
    for prefix in prefixes:
        matched = [p for name, p in model.named_parameters() if name == prefix or name.startswith(prefix + ".")]
        if not matched:
            tops = sorted({name.split(".")[0] for name, _ in model.named_parameters()})
            raise TrainingError(f"frozen prefix {prefix!r} names no parameter; parameters start with {', '.join(tops)}")
        for parameter in matched:
            parameter.requires_grad_(False)


def add_lora(model: nn.Module, config: TrainingConfig) -> None:
    """Wrap ``model.language_model`` in a peft LoRA model (only the adapters train)."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.lora_target_modules,
        bias="none",
        task_type=model.lora_task_type,
    )
    try:
        with warnings.catch_warnings():  # peft reads a deprecated transformers property
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            model.language_model = get_peft_model(model.language_model, lora)
    except ValueError as err:
        raise TrainingError(
            f"LoRA could not be added to the language model ({err}); set lora_target_modules, e.g. "
            "['q_proj', 'v_proj'] or 'all-linear'"
        ) from err


def add_loramoe(model: nn.Module, config: TrainingConfig) -> Any:
    """LoRAMoE layers on the language model's ``lora_target_modules`` (default ``q_proj``, ``v_proj``); returns
    the balance-loss penalty for the objective (``None`` at weight 0)."""
    from zoo.training.loramoe import BalancePenalty, apply_loramoe, loramoe_layers

    existing = loramoe_layers(model)
    if existing:
        _continue_loramoe(existing, config)
        return BalancePenalty(config.loramoe_balance_weight) if config.loramoe_balance_weight > 0 else None
    try:
        apply_loramoe(model, config.lora_target_modules or ("q_proj", "v_proj"), num_experts=config.loramoe_experts,
                      r=config.lora_r, alpha=config.lora_alpha, dropout=config.lora_dropout, top_k=config.loramoe_top_k,
                      within="language_model", freeze_others=False)
    except ValueError as err:
        raise TrainingError(f"LoRAMoE could not be added to the language model ({err}); set lora_target_modules "
                            "to names of its linear layers") from err
    return BalancePenalty(config.loramoe_balance_weight) if config.loramoe_balance_weight > 0 else None


def _continue_loramoe(layers: dict[str, Any], config: TrainingConfig) -> None:
    """A model that already carries LoRAMoE layers (an earlier run's) trains those experts and routers on: wrapping
    them again would nest experts. The run's settings must describe the layers it continues."""
    wanted = {"num_experts": config.loramoe_experts, "r": config.lora_r, "top_k": config.loramoe_top_k}
    for name, layer in layers.items():
        held = {key: layer.settings()[key] for key in wanted}
        if held != wanted:
            raise TrainingError(
                f"{name} already holds LoRAMoE layers with {held}, but this run asks for {wanted}; set loramoe_experts, "
                "lora_r and loramoe_top_k to the model's values to continue training its experts"
            )
        for part in (layer.router, layer.lora_A, layer.lora_B):
            part.requires_grad_(True)


def add_olora(model: nn.Module, config: TrainingConfig) -> Any:
    """A new O-LoRA task adapter on the language model's ``lora_target_modules`` (default ``q_proj``, ``v_proj``);
    returns the orthogonality + L2 penalty for the objective."""
    from zoo.training.olora import OrthogonalityPenalty, apply_olora

    try:
        apply_olora(model, config.lora_target_modules or ("q_proj", "v_proj"), r=config.lora_r,
                    alpha=config.lora_alpha, dropout=config.lora_dropout, within="language_model")
    except ValueError as err:
        raise TrainingError(f"O-LoRA could not be added to the language model ({err}); set lora_target_modules "
                            "to names of its linear layers") from err
    return OrthogonalityPenalty(config.olora_lambda1, config.olora_lambda2)


ADAPTER_FUNCTIONS = {"lora": add_lora, "loramoe": add_loramoe, "olora": add_olora}  # config.adapter -> what adds it


def add_adapter(model: nn.Module, config: TrainingConfig) -> Any:
    """The instruct stage's adapter (``config.adapter``) on the language model; returns the penalty the objective
    adds for it (a callable ``(model, attention_mask) -> loss``), or ``None``."""
    return ADAPTER_FUNCTIONS[config.adapter](model, config)


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold the LoRA adapters into the language model's weights (peft ``merge_and_unload``): the result is a
    plain model that ``save_pretrained`` and ``zoo.load`` handle without peft."""
    from peft import PeftModel

    if isinstance(getattr(model, "language_model", None), PeftModel):
        model.language_model = model.language_model.merge_and_unload()
    return model


def set_train_mode(model: nn.Module) -> None:
    """Train mode, except encoder parts with no trainable parameter, which run in eval mode."""
    model.train()
    for encoder in encoders_of(model).values():
        for module in encoder.modules():
            params = list(module.parameters())
            if params and not any(p.requires_grad for p in params):
                module.eval()


def _enable_gradient_checkpointing(model: nn.Module, encoders: dict[str, Any]) -> None:
    """The LLM's activation checkpointing; for encoders that train, timm's ``set_grad_checkpointing`` or a
    transformers model's checkpointing on the first sub-module that has one."""
    if is_multimodal_lm(model):
        _hf_checkpointing(model.language_model)
    for modality, encoder in encoders.items():
        if not any(p.requires_grad for p in encoder.parameters()):
            continue  # a frozen encoder keeps no activations for backward
        for module in encoder.modules():
            if hasattr(module, "set_grad_checkpointing"):
                module.set_grad_checkpointing(True)
                break
            if getattr(module, "supports_gradient_checkpointing", False):
                _hf_checkpointing(module)
                break
        else:
            warnings.warn(f"the {modality} encoder has no gradient checkpointing switch; it trains without", stacklevel=3)


def _hf_checkpointing(module: nn.Module) -> None:
    """A transformers model's activation checkpointing (non-reentrant, so frozen inputs need no grad hooks);
    ``activation_checkpointing_enable`` replaced ``gradient_checkpointing_enable`` in transformers 5.x."""
    if hasattr(module, "activation_checkpointing_enable"):
        module.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        module.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
