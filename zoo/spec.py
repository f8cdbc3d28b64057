"""Model specs: frozen dataclasses with an exact JSON/YAML round trip.

Every spec and sub-spec is chosen by an explicit ``type`` field, never by which keys are present.
Unknown keys are errors naming the key and the allowed ones. Component ``config`` mappings are checked
against the component's own config dataclass by :func:`make_config` when the model is built.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

DEFAULT_PLACEHOLDERS: dict[str, str] = {
    "image": "<image>",
    "molecule_graph": "<molecule>",
    "smiles": "<smiles>",
    "audio": "<audio>",
    "audio_codec": "<audio_codes>",
}


class SpecError(ValueError):
    """A spec that cannot be parsed; the message says where and what is allowed."""


def _check_keys(data: Mapping[str, Any], allowed: list[str], where: str, required: list[str]) -> None:
    if not isinstance(data, Mapping):
        raise SpecError(f"{where} must be a mapping, got {type(data).__name__}")
    for key in data:
        if key not in allowed:
            raise SpecError(f"unknown key {key!r} in {where}; allowed keys: {', '.join(allowed)}")
    for key in required:
        if key not in data:
            raise SpecError(f"{where} is missing required key {key!r}")


def _field_names(cls: type) -> tuple[list[str], list[str]]:
    all_names = [f.name for f in fields(cls)]
    required = [
        f.name for f in fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    return all_names, required


def make_config(config_class: type, values: Mapping[str, Any], where: str) -> Any:
    """Instantiate a component's config dataclass, naming unknown keys and the allowed ones."""
    allowed, required = _field_names(config_class)
    _check_keys(values, allowed, where, required)
    try:
        return config_class(**values)
    except (TypeError, ValueError) as err:
        raise SpecError(f"invalid {where}: {err}") from err


def config_to_dict(config: Any) -> dict[str, Any]:
    """A component config dataclass as a plain dict (JSON-ready)."""
    return dataclasses.asdict(config)


@dataclass(frozen=True)
class ComponentSpec:
    """One component: a registry name and the keyword config its ``config_class`` takes."""

    type: str
    config: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> ComponentSpec:
        _check_keys(data, ["type", "config"], where, ["type"])
        config = data.get("config") or {}
        if not isinstance(config, Mapping):
            raise SpecError(f"{where}.config must be a mapping, got {type(config).__name__}")
        return cls(type=str(data["type"]), config=dict(config))


@dataclass(frozen=True)
class TokenizerSpec:
    """Where the text tokenizer comes from: ``bundled`` (shipped in zoo/assets), ``pretrained`` (hub or dir)."""

    type: str
    path: str
    revision: str | None = None

    TYPES: ClassVar[tuple[str, ...]] = ("bundled", "pretrained")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> TokenizerSpec:
        _check_keys(data, ["type", "path", "revision"], where, ["type", "path"])
        if data["type"] not in cls.TYPES:
            raise SpecError(f"unknown {where}.type {data['type']!r}; allowed: {', '.join(cls.TYPES)}")
        return cls(type=data["type"], path=str(data["path"]), revision=data.get("revision"))


# A modality name becomes a folder name in a saved model (tokenizers/<modality>): one plain path component.
_MODALITY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


def _components(data: Any, where: str, allow_empty: bool = False) -> dict[str, ComponentSpec]:
    if not isinstance(data, Mapping) or not (data or allow_empty):
        raise SpecError(f"{where} must be a non-empty mapping of modality -> component")
    for modality in data:
        if not isinstance(modality, str) or not _MODALITY_NAME.fullmatch(modality):
            raise SpecError(f"{where}: modality name {modality!r} must be letters, digits, '_' or '-' (it names a "
                            "folder of a saved model)")
    return {k: ComponentSpec.from_dict(v, f"{where}.{k}") for k, v in data.items()}


@dataclass(frozen=True)
class MultimodalLMSpec:
    """Encoders -> projectors -> a language model (causal, or encoder–decoder with ``hf-seq2seq-lm``); one
    placeholder token per modality in the prompt.

    ``bos_after_leading_placeholders`` puts the tokenizer's BOS after the placeholders that open a prompt instead
    of before them (``<image>x32, BOS, text``): the layout BLIP-2 was trained on and transformers'
    ``Blip2Processor`` builds. Prompts that open with text are unchanged; off, BOS always comes first.

    ``projector_tokenizers[m]`` (``{path, revision, subfolder}``) names the tokenizer of a projector that reads
    the prompt's text (InstructBLIP's Q-Former, ``qformer_tokenizer/``): the processor gives each ``m`` item
    the text of its prompt, placeholders removed, tokenized by it.

    ``generation`` holds the checkpoint's generation defaults (``num_beams``, ``eos_token_id``, BART's
    ``forced_bos_token_id`` ...): plain values of :data:`GENERATION_FIELDS` only, which ``generate`` uses unless
    its caller passes the same argument.

    An encoder–decoder may stand alone, ``encoders: {}`` and ``projectors: {}``: a text-to-text model (T5,
    MolT5) whose prompt is its encoder's input. A causal LM always has at least one modality encoder."""

    encoders: dict[str, ComponentSpec]
    projectors: dict[str, ComponentSpec]
    backbone: ComponentSpec
    tokenizer: TokenizerSpec
    placeholders: dict[str, str] = field(default_factory=dict)
    seed: int = 0
    bos_after_leading_placeholders: bool = False
    projector_tokenizers: dict[str, dict[str, str]] = field(default_factory=dict)
    generation: dict[str, Any] = field(default_factory=dict)
    type: str = "multimodal-lm"

    TEXT_ONLY_BACKBONES: ClassVar[tuple[str, ...]] = ("hf-seq2seq-lm",)

    def __post_init__(self) -> None:
        if not self.encoders and self.backbone.type not in self.TEXT_ONLY_BACKBONES:
            raise SpecError(
                f"spec.encoders is empty but backbone {self.backbone.type!r} needs at least one modality encoder; "
                f"only an encoder–decoder ({', '.join(self.TEXT_ONLY_BACKBONES)}) may be a text-only model"
            )
        if set(self.encoders) != set(self.projectors):
            raise SpecError(
                f"every encoder needs a projector and vice versa: encoders {sorted(self.encoders)}, "
                f"projectors {sorted(self.projectors)}"
            )
        for modality, tokenizer in self.projector_tokenizers.items():
            if modality not in self.projectors:
                raise SpecError(f"spec.projector_tokenizers.{modality}: no projector for {modality!r}")
            _check_keys(tokenizer, list(_PROJECTOR_TOKENIZER_KEYS), f"spec.projector_tokenizers.{modality}", ["path"])
            if not all(isinstance(v, str) for v in tokenizer.values()):
                raise SpecError(f"spec.projector_tokenizers.{modality}: path, revision and subfolder are strings")
            subfolder = tokenizer.get("subfolder", "")
            if subfolder and any(part in ("", ".", "..") for part in subfolder.replace("\\", "/").split("/")):
                raise SpecError(f"spec.projector_tokenizers.{modality}.subfolder {subfolder!r} must be a relative path "
                                "inside the tokenizer's repo or folder (no '..', no leading '/')")
        for modality in self.encoders:
            if modality not in self.placeholders and modality not in DEFAULT_PLACEHOLDERS:
                raise SpecError(f"no placeholder token for modality {modality!r}; set spec.placeholders")
        check_generation(self.generation, "spec.generation")

    def placeholder(self, modality: str) -> str:
        return self.placeholders.get(modality, DEFAULT_PLACEHOLDERS.get(modality, ""))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MultimodalLMSpec:
        allowed, required = _field_names(cls)
        _check_keys(data, allowed, "spec", required)
        return cls(
            encoders=_components(data["encoders"], "spec.encoders", allow_empty=True),
            projectors=_components(data["projectors"], "spec.projectors", allow_empty=True),
            backbone=ComponentSpec.from_dict(data["backbone"], "spec.backbone"),
            tokenizer=TokenizerSpec.from_dict(data["tokenizer"], "spec.tokenizer"),
            placeholders=dict(data.get("placeholders") or {}),
            seed=int(data.get("seed", 0)),
            bos_after_leading_placeholders=_flag(data, "bos_after_leading_placeholders"),
            projector_tokenizers={m: dict(_mapping(t, f"spec.projector_tokenizers.{m}"))
                                  for m, t in _mapping(data.get("projector_tokenizers"), "spec.projector_tokenizers").items()},
            generation=_mapping(data.get("generation"), "spec.generation"),
        )


_PROJECTOR_TOKENIZER_KEYS = ("path", "revision", "subfolder")


def _flag(data: Mapping[str, Any], name: str) -> bool:
    """An optional boolean spec field (absent: false); anything but true/false is refused, not coerced."""
    value = data.get(name, False)
    if not isinstance(value, bool):
        raise SpecError(f"spec.{name} must be true or false, got {value!r}")
    return value


def _mapping(data: Any, where: str) -> dict[str, Any]:
    """An optional mapping field (absent or null: empty)."""
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise SpecError(f"{where} must be a mapping, got {type(data).__name__}")
    return dict(data)


def _whole(value: Any, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _real(value: Any, least: float = -math.inf, most: float = math.inf) -> bool:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return number and math.isfinite(value) and least <= value <= most


def _token_ids(value: Any) -> bool:
    return _whole(value, 0) or (isinstance(value, list) and bool(value) and all(_whole(v, 0) for v in value))


# The generation settings a spec may carry (``spec.generation``), with the check each value must pass and what
# it must be. Numbers, flags and token ids only, so no field of an untrusted file can name code; settings that
# would change what ``generate`` returns (``num_return_sequences``, ``return_dict_in_generate``) are left out.
GENERATION_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    **{name: (lambda v: _whole(v, 0), "a token id (an int >= 0)") for name in
       ("bos_token_id", "pad_token_id", "decoder_start_token_id", "forced_bos_token_id")},
    **{name: (_token_ids, "a token id or a non-empty list of them") for name in ("eos_token_id", "forced_eos_token_id")},
    **{name: (lambda v: _whole(v, 1), "an int >= 1") for name in ("max_length", "max_new_tokens", "num_beams")},
    **{name: (lambda v: _whole(v, 0), "an int >= 0") for name in
       ("min_length", "min_new_tokens", "no_repeat_ngram_size", "encoder_no_repeat_ngram_size", "top_k")},
    "early_stopping": (lambda v: isinstance(v, bool) or v == "never", "true, false or 'never'"),
    "do_sample": (lambda v: isinstance(v, bool), "true or false"),
    "length_penalty": (_real, "a number"),
    "repetition_penalty": (lambda v: _real(v) and v > 0, "a number > 0"),
    "temperature": (lambda v: _real(v, 0.0), "a number >= 0"),
    "top_p": (lambda v: _real(v, 0.0, 1.0), "a number from 0 to 1"),
}


def check_generation(settings: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``settings`` as generation defaults: every key one of :data:`GENERATION_FIELDS` and its value of that
    field's kind; anything else is refused, naming the key and what is allowed."""
    if not isinstance(settings, Mapping):
        raise SpecError(f"{where} must be a mapping, got {type(settings).__name__}")
    for key, value in settings.items():
        if key not in GENERATION_FIELDS:
            raise SpecError(f"unknown key {key!r} in {where}; allowed keys: {', '.join(GENERATION_FIELDS)}")
        check, kind = GENERATION_FIELDS[key]
        if not check(value):
            raise SpecError(f"{where}.{key} must be {kind}, got {value!r}")
    return dict(settings)


def generation_from_checkpoint(data: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The generation defaults a checkpoint file sets (``generation_config.json``, or the settings an old
    config.json holds): its :data:`GENERATION_FIELDS`, each checked (a wrong kind is refused, naming it); its
    other fields (transformers' bookkeeping, settings that need code) are ignored, and null means unset."""
    return check_generation({k: v for k, v in data.items() if k in GENERATION_FIELDS and v is not None}, where)


@dataclass(frozen=True)
class DualEncoderSpec:
    """Modality towers and a text tower projected into one normalised space (CLIP-style).

    ``projection: none`` is for towers whose pooled output is already in the shared space (open_clip, CLAP);
    ``mlp`` and SAIL's ``star-mlp`` are heads for frozen unimodal towers, set by ``projection_config`` (checked
    against the head's config dataclass when the model is built: ``zoo.models.dual_encoder.HEADS``).
    ``logit_scales: per-direction`` gives the text -> item logits a temperature of their own (CLAP's
    ``logit_scale_t``, beside ``logit_scale_a`` for item -> text); ``shared`` is CLIP's one for both.
    ``contrastive_loss: sigmoid`` trains with SigLIP's pairwise loss and gives the model a learned
    ``logit_bias`` (initial value ``init_logit_bias``, else -10); ``softmax`` is CLIP's InfoNCE, with no bias.
    """

    towers: dict[str, ComponentSpec]
    text_tower: ComponentSpec
    embed_dim: int
    projection: str = "linear"
    projection_config: dict[str, Any] = field(default_factory=dict)
    init_logit_scale: float | None = None  # None: the text tower's own (open_clip, CLAP), else the loss's default
    logit_scales: str = "shared"
    contrastive_loss: str = "softmax"
    init_logit_bias: float | None = None  # sigmoid loss only; None: SigLIP's -10
    seed: int = 0
    type: str = "dual-encoder"

    PROJECTIONS: ClassVar[tuple[str, ...]] = ("linear", "none", "mlp", "star-mlp")
    LOGIT_SCALES: ClassVar[tuple[str, ...]] = ("shared", "per-direction")
    CONTRASTIVE_LOSSES: ClassVar[tuple[str, ...]] = ("softmax", "sigmoid")

    def __post_init__(self) -> None:
        if self.projection not in self.PROJECTIONS:
            raise SpecError(f"unknown spec.projection {self.projection!r}; allowed: {', '.join(self.PROJECTIONS)}")
        if self.logit_scales not in self.LOGIT_SCALES:
            raise SpecError(
                f"unknown spec.logit_scales {self.logit_scales!r}; allowed: {', '.join(self.LOGIT_SCALES)}"
            )
        if self.contrastive_loss not in self.CONTRASTIVE_LOSSES:
            raise SpecError(f"unknown spec.contrastive_loss {self.contrastive_loss!r}; "
                            f"allowed: {', '.join(self.CONTRASTIVE_LOSSES)}")
        if self.contrastive_loss == "sigmoid" and self.logit_scales != "shared":
            raise SpecError("spec.contrastive_loss 'sigmoid' scores each pair once, with one scale and bias; "
                            "set logit_scales: shared")
        if self.init_logit_bias is not None and self.contrastive_loss != "sigmoid":
            raise SpecError("spec.init_logit_bias is for contrastive_loss 'sigmoid' only (softmax has no bias); "
                            "remove it or set contrastive_loss: sigmoid")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DualEncoderSpec:
        allowed, required = _field_names(cls)
        _check_keys(data, allowed, "spec", required)
        return cls(
            towers=_components(data["towers"], "spec.towers"),
            text_tower=ComponentSpec.from_dict(data["text_tower"], "spec.text_tower"),
            embed_dim=int(data["embed_dim"]),
            projection=str(data.get("projection", "linear")),
            projection_config=_mapping(data.get("projection_config"), "spec.projection_config"),
            init_logit_scale=None if data.get("init_logit_scale") is None else float(data["init_logit_scale"]),
            logit_scales=str(data.get("logit_scales", "shared")),
            contrastive_loss=str(data.get("contrastive_loss", "softmax")),
            init_logit_bias=None if data.get("init_logit_bias") is None else float(data["init_logit_bias"]),
            seed=int(data.get("seed", 0)),
        )


@dataclass(frozen=True)
class EncoderSpec:
    """One modality encoder on its own (features, probes, a named pretrained part)."""

    modality: str
    encoder: ComponentSpec
    seed: int = 0
    type: str = "encoder"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EncoderSpec:
        allowed, required = _field_names(cls)
        _check_keys(data, allowed, "spec", required)
        return cls(
            modality=str(data["modality"]),
            encoder=ComponentSpec.from_dict(data["encoder"], "spec.encoder"),
            seed=int(data.get("seed", 0)),
        )


def _check_head(hidden_sizes: list[int], dropout: float) -> None:
    """An MLP head's widths and dropout (the template and predictor families)."""
    if any(h < 1 for h in hidden_sizes):
        raise SpecError(f"every spec.hidden_sizes entry must be at least 1, got {hidden_sizes}")
    if not 0.0 <= dropout < 1.0:
        raise SpecError(f"spec.dropout must be in [0, 1), got {dropout}")


@dataclass(frozen=True)
class TemplateModelSpec:
    """A molecule encoder -> MLP head -> logits over a reaction-template library (the NeuralSym / LocalRetro
    idea). ``direction`` is ``retro`` (product -> reactants) or ``forward`` (reactants -> product); at
    prediction the ``templates_per_item`` most likely templates are applied and their outcomes ranked.
    ``num_general_templates`` > 0 adds a second library of radius-0 templates (reaction centre and leaving
    groups only) scored by the same head after the first: they reach products no radius-1 template fits.
    ``analogue_neighbours`` > 0 reranks a retro model's outcomes with that many most similar training products
    (``zoo.models.analogues``; the index is an asset of the model)."""

    modality: str
    encoder: ComponentSpec
    num_templates: int
    num_general_templates: int = 0
    direction: str = "retro"
    hidden_sizes: list[int] = field(default_factory=lambda: [1024])
    dropout: float = 0.3
    templates_per_item: int = 50
    analogue_neighbours: int = 0
    seed: int = 0
    type: str = "template-classifier"

    DIRECTIONS: ClassVar[tuple[str, ...]] = ("retro", "forward")

    def __post_init__(self) -> None:
        if self.direction not in self.DIRECTIONS:
            raise SpecError(f"unknown spec.direction {self.direction!r}; allowed: {', '.join(self.DIRECTIONS)}")
        if self.num_templates < 1 or self.templates_per_item < 1:
            raise SpecError("spec.num_templates and templates_per_item must be at least 1")
        if self.analogue_neighbours < 0 or (self.analogue_neighbours and self.direction != "retro"):
            raise SpecError(f"spec.analogue_neighbours must be 0 (none) or, for a retro model, more; got "
                            f"{self.analogue_neighbours} for direction {self.direction}")
        if self.num_general_templates < 0:
            raise SpecError(f"spec.num_general_templates must be 0 (none) or more, got {self.num_general_templates}")
        _check_head(self.hidden_sizes, self.dropout)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TemplateModelSpec:
        allowed, required = _field_names(cls)
        _check_keys(data, allowed, "spec", required)
        return cls(
            modality=str(data["modality"]),
            encoder=ComponentSpec.from_dict(data["encoder"], "spec.encoder"),
            num_templates=int(data["num_templates"]),
            num_general_templates=int(data.get("num_general_templates", 0)),
            direction=str(data.get("direction", "retro")),
            hidden_sizes=[int(h) for h in data.get("hidden_sizes", [1024])],
            dropout=float(data.get("dropout", 0.3)),
            templates_per_item=int(data.get("templates_per_item", 50)),
            analogue_neighbours=int(data.get("analogue_neighbours", 0)),
            seed=int(data.get("seed", 0)),
        )


@dataclass(frozen=True)
class PredictorSpec:
    """An encoder -> MLP head -> properties of each item. ``head`` is ``regression`` (one real value per
    target, learned standardised and scaled back to data units), ``binary`` (one probability per target:
    multi-label with missing labels masked) or ``multiclass`` (a probability per entry of ``classes``).
    ``targets`` names the label columns it was trained on (one column for multiclass). ``hidden_sizes: []`` is
    a linear head on the LayerNorm'd features."""

    modality: str
    encoder: ComponentSpec
    targets: list[str]
    head: str = "regression"
    classes: list[str] = field(default_factory=list)
    hidden_sizes: list[int] = field(default_factory=list)
    dropout: float = 0.0
    seed: int = 0
    type: str = "predictor"

    HEADS: ClassVar[tuple[str, ...]] = ("regression", "binary", "multiclass")

    def __post_init__(self) -> None:
        if self.head not in self.HEADS:
            raise SpecError(f"unknown spec.head {self.head!r}; allowed: {', '.join(self.HEADS)}")
        if not self.targets or len(set(self.targets)) != len(self.targets):
            raise SpecError(f"spec.targets must name one or more distinct label columns, got {self.targets}")
        if (self.head == "multiclass") != bool(self.classes):
            raise SpecError("spec.classes lists the classes of a multiclass head (at least two), and only of one")
        if self.head == "multiclass" and (len(self.classes) < 2 or len(self.targets) != 1):
            raise SpecError("a multiclass head has one target column and at least two spec.classes")
        _check_head(self.hidden_sizes, self.dropout)

    @property
    def num_outputs(self) -> int:
        return len(self.classes) if self.head == "multiclass" else len(self.targets)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PredictorSpec:
        allowed, required = _field_names(cls)
        _check_keys(data, allowed, "spec", required)
        return cls(
            modality=str(data["modality"]),
            encoder=ComponentSpec.from_dict(data["encoder"], "spec.encoder"),
            targets=[str(t) for t in data["targets"]],
            head=str(data.get("head", "regression")),
            classes=[str(c) for c in data.get("classes", [])],
            hidden_sizes=[int(h) for h in data.get("hidden_sizes", [])],
            dropout=float(data.get("dropout", 0.0)),
            seed=int(data.get("seed", 0)),
        )


ModelSpec = MultimodalLMSpec | DualEncoderSpec | EncoderSpec | TemplateModelSpec | PredictorSpec
SPEC_TYPES: dict[str, type] = {
    "multimodal-lm": MultimodalLMSpec,
    "dual-encoder": DualEncoderSpec,
    "encoder": EncoderSpec,
    "template-classifier": TemplateModelSpec,
    "predictor": PredictorSpec,
}


def spec_from_dict(data: Mapping[str, Any]) -> ModelSpec:
    """Parse a spec mapping, dispatching on its explicit ``type``."""
    if not isinstance(data, Mapping):
        raise SpecError(f"a spec must be a mapping, got {type(data).__name__}")
    if "type" not in data:
        raise SpecError(f"spec is missing required key 'type'; allowed types: {', '.join(SPEC_TYPES)}")
    kind = data["type"]
    if kind not in SPEC_TYPES:
        raise SpecError(f"unknown spec type {kind!r}; allowed types: {', '.join(SPEC_TYPES)}")
    return SPEC_TYPES[kind].from_dict(data)


def spec_to_dict(spec: ModelSpec) -> dict[str, Any]:
    """A spec as plain data, with every field written out (defaults included) for an exact round trip."""
    return dataclasses.asdict(spec)


def spec_to_json(spec: ModelSpec) -> str:
    return json.dumps(spec_to_dict(spec), indent=2, sort_keys=True)


def spec_from_json(text: str) -> ModelSpec:
    return spec_from_dict(json.loads(text))


def spec_to_yaml(spec: ModelSpec) -> str:
    import yaml

    return yaml.safe_dump(spec_to_dict(spec), sort_keys=True)


def spec_from_yaml(text: str) -> ModelSpec:
    import yaml

    return spec_from_dict(yaml.safe_load(text))
