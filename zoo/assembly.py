"""Assemble a model from its spec: encoders -> projectors -> backbone (or text tower) -> processor."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from zoo import registry
from zoo.spec import (
    ComponentSpec,
    DualEncoderSpec,
    EncoderSpec,
    ModelSpec,
    MultimodalLMSpec,
    PredictorSpec,
    SpecError,
    TemplateModelSpec,
    config_to_dict,
    make_config,
)


class ProcessorDriftError(ValueError):
    """A saved processor config differs from what the model's components resolve to now."""


def _normalised(data: Any) -> Any:
    return json.loads(json.dumps(data))


def resolve_component(kind: str, component: ComponentSpec, where: str) -> tuple[Any, Any]:
    """The registered class for ``component.type`` and its config, checked key by key."""
    cls = registry.resolve(kind, component.type)
    config = make_config(cls.config_class, component.config, f"{where}.config")
    return cls, config


def _encoder(component: ComponentSpec, where: str, modality: str, load_pretrained: bool) -> Any:
    cls, config = resolve_component("encoder", component, where)
    encoder = cls(config, load_pretrained=load_pretrained)
    if encoder.modality != modality:
        raise SpecError(f"{where} is a {encoder.modality!r} encoder but is listed under {modality!r}")
    return encoder


def _check_drift(saved: Mapping[str, Any] | None, encoders: Mapping[str, Any]) -> None:
    if saved is None:
        return
    for modality, encoder in encoders.items():
        now = _normalised(config_to_dict(encoder.config))
        before = saved.get("encoders", {}).get(modality)
        if before != now:
            changed = sorted(k for k in set(now) | set(before or {}) if (before or {}).get(k) != now.get(k))
            raise ProcessorDriftError(
                f"the saved {modality} processor config differs from the model's ({', '.join(changed)}); "
                "the checkpoint was saved with other component versions — re-save it with this version"
            )


def build_model(
    spec: ModelSpec,
    load_pretrained: bool = True,
    saved_processor: Mapping[str, Any] | None = None,
    saved_dir: Path | None = None,
) -> Any:
    """Build ``spec`` with a fixed seed. ``load_pretrained=False`` skips component hub weights (the caller
    loads a full state dict); ``saved_processor`` and the tokenizers in ``saved_dir`` restore a saved
    processor, checked against the rebuilt components."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        if isinstance(spec, MultimodalLMSpec):
            return _build_multimodal_lm(spec, load_pretrained, saved_processor, saved_dir)
        if isinstance(spec, DualEncoderSpec):
            return _build_dual_encoder(spec, load_pretrained, saved_processor, saved_dir)
        if isinstance(spec, EncoderSpec):
            return _build_encoder_model(spec, load_pretrained, saved_processor, saved_dir)
        if isinstance(spec, TemplateModelSpec):
            return _build_template_model(spec, load_pretrained, saved_processor, saved_dir)
        if isinstance(spec, PredictorSpec):
            return _build_predictor(spec, load_pretrained, saved_processor, saved_dir)
    raise SpecError(f"cannot build a spec of type {type(spec).__name__}")


def _build_multimodal_lm(
    spec: MultimodalLMSpec, load_pretrained: bool, saved: Mapping[str, Any] | None, saved_dir: Path | None
) -> Any:
    from encoders.text.tokenizers import BUNDLED_PREFIX, load_tokenizer

    encoders = {
        m: _encoder(c, f"spec.encoders.{m}", m, load_pretrained) for m, c in sorted(spec.encoders.items())
    }
    _check_drift(saved, encoders)
    if saved_dir is not None:
        tokenizer = load_tokenizer(str(saved_dir / "tokenizer"))
    else:
        source = spec.tokenizer.path
        tokenizer = load_tokenizer(BUNDLED_PREFIX + source if spec.tokenizer.type == "bundled" else source,
                                   spec.tokenizer.revision)
    projector_classes = {
        m: resolve_component("projector", c, f"spec.projectors.{m}") for m, c in sorted(spec.projectors.items())
    }
    backbone_cls, backbone_config = resolve_component("backbone", spec.backbone, "spec.backbone")
    family = backbone_cls.model_family()  # MultimodalLM, or MultimodalSeq2SeqLM for an encoder–decoder
    processor = family.processor_class(
        tokenizer,
        {m: _processor_for(e, m, saved_dir) for m, e in encoders.items()},
        {m: config for m, (_, config) in projector_classes.items()},
        {m: spec.placeholder(m) for m in encoders},
        bos_after_leading_placeholders=spec.bos_after_leading_placeholders,
        projector_tokenizers={m: _projector_tokenizer(t, m, saved_dir) for m, t in spec.projector_tokenizers.items()},
    )
    language_model = backbone_cls.build(backbone_config, vocab_size=len(tokenizer), load_pretrained=load_pretrained)
    width = language_model.get_input_embeddings().embedding_dim
    projectors = {
        m: cls(config, encoders[m].hidden_size, width) for m, (cls, config) in projector_classes.items()
    }
    return family(spec, encoders, projectors, language_model, processor)


def _projector_tokenizer(source: Mapping[str, str], modality: str, saved_dir: Path | None) -> Any:
    """The tokenizer of a projector that reads the prompt (the saved copy when the model was saved)."""
    from transformers import AutoTokenizer

    saved = saved_dir / "projector_tokenizers" / modality if saved_dir is not None else None
    if saved is not None and saved.is_dir():
        return AutoTokenizer.from_pretrained(str(saved))
    return AutoTokenizer.from_pretrained(source["path"], revision=source.get("revision"),
                                         subfolder=source.get("subfolder", ""))


def _processor_for(encoder: Any, modality: str, saved_dir: Path | None) -> Any:
    """The encoder's processor; one with a tokenizer takes the saved copy when the model was saved."""
    saved_tokenizer = saved_dir / "tokenizers" / modality if saved_dir is not None else None
    if saved_tokenizer is not None and saved_tokenizer.is_dir():
        from encoders.text.tokenizers import load_tokenizer

        return encoder.processor_class(encoder.config, tokenizer=load_tokenizer(str(saved_tokenizer)))
    return encoder.processor_class(encoder.config)


def _build_dual_encoder(
    spec: DualEncoderSpec, load_pretrained: bool, saved: Mapping[str, Any] | None, saved_dir: Path | None
) -> Any:
    from zoo.models.dual_encoder import DualEncoder
    from zoo.processing import ProcessorSet

    towers = {m: _encoder(c, f"spec.towers.{m}", m, load_pretrained) for m, c in sorted(spec.towers.items())}
    text_tower = _encoder(spec.text_tower, "spec.text_tower", "text", load_pretrained)
    _check_drift(saved, {**towers, "text": text_tower})
    processors = {m: _processor_for(t, m, saved_dir) for m, t in {**towers, "text": text_tower}.items()}
    return DualEncoder(spec, towers, text_tower, ProcessorSet(processors))


def _single_encoder(
    spec: EncoderSpec | TemplateModelSpec | PredictorSpec, load_pretrained: bool, saved: Mapping[str, Any] | None,
    saved_dir: Path | None,
) -> tuple[Any, Any]:
    """The one encoder of an encoder, template or predictor model and its processor set."""
    from zoo.processing import ProcessorSet

    encoder = _encoder(spec.encoder, "spec.encoder", spec.modality, load_pretrained)
    _check_drift(saved, {spec.modality: encoder})
    return encoder, ProcessorSet({spec.modality: _processor_for(encoder, spec.modality, saved_dir)})


def _build_encoder_model(
    spec: EncoderSpec, load_pretrained: bool, saved: Mapping[str, Any] | None, saved_dir: Path | None
) -> Any:
    from zoo.models.encoder_model import EncoderModel

    return EncoderModel(spec, *_single_encoder(spec, load_pretrained, saved, saved_dir))


def _build_template_model(
    spec: TemplateModelSpec, load_pretrained: bool, saved: Mapping[str, Any] | None, saved_dir: Path | None
) -> Any:
    from zoo.models.template_model import TemplateModel

    return TemplateModel(spec, *_single_encoder(spec, load_pretrained, saved, saved_dir))


def _build_predictor(
    spec: PredictorSpec, load_pretrained: bool, saved: Mapping[str, Any] | None, saved_dir: Path | None
) -> Any:
    from zoo.models.predictor import Predictor

    return Predictor(spec, *_single_encoder(spec, load_pretrained, saved, saved_dir))
