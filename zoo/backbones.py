"""LLM backbones: any Hugging Face causal LM or encoder–decoder LM, from a hub id / directory or a config dict.

Each backbone class names the model family that wraps it (``model_family``): a causal LM reads modality tokens
and answer in one sequence (``MultimodalLM``); an encoder–decoder reads the prompt and its modality tokens in
the encoder and writes the answer with the decoder (``MultimodalSeq2SeqLM``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class HFLMConfig:
    """Either ``pretrained`` (hub id or directory, with ``revision``) or ``model_config`` (random init).

    ``model_config`` holds ``model_type`` plus that architecture's config fields. Remote code never runs
    unless ``trust_remote_code`` is set explicitly.
    """

    pretrained: str | None = None
    revision: str | None = None
    model_config: dict[str, Any] | None = None
    trust_remote_code: bool = False

    EXAMPLE_MODEL_TYPES: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        if (self.pretrained is None) == (self.model_config is None):
            raise ValueError("give exactly one of 'pretrained' (hub id or directory) or 'model_config'")
        if self.model_config is not None and "model_type" not in self.model_config:
            examples = ", ".join(repr(t) for t in self.EXAMPLE_MODEL_TYPES)
            raise ValueError(f"model_config needs a 'model_type' (e.g. {examples})")


@dataclass(frozen=True)
class HFCausalLMConfig(HFLMConfig):
    """A decoder-only LM (``AutoModelForCausalLM``)."""

    EXAMPLE_MODEL_TYPES: ClassVar[tuple[str, ...]] = ("llama", "qwen2", "gpt2")


@dataclass(frozen=True)
class HFSeq2SeqLMConfig(HFLMConfig):
    """An encoder–decoder LM (``AutoModelForSeq2SeqLM``: T5, BART, MolT5 ...)."""

    EXAMPLE_MODEL_TYPES: ClassVar[tuple[str, ...]] = ("t5", "bart")


def build_hf_lm(auto_class: Any, config: HFLMConfig, vocab_size: int, load_pretrained: bool) -> Any:
    """``auto_class``'s model for ``config`` (safetensors only) with room for ``vocab_size`` tokens."""
    from transformers import AutoConfig

    if config.model_config is not None:
        params = dict(config.model_config)
        hf_config = AutoConfig.for_model(params.pop("model_type"), **params)
        model = auto_class.from_config(hf_config)
    elif load_pretrained:
        model = auto_class.from_pretrained(
            config.pretrained,
            revision=config.revision,
            trust_remote_code=config.trust_remote_code,
            use_safetensors=True,
        )
    else:
        hf_config = AutoConfig.from_pretrained(
            config.pretrained, revision=config.revision, trust_remote_code=config.trust_remote_code
        )
        model = auto_class.from_config(hf_config)
    if model.get_input_embeddings().num_embeddings < vocab_size:
        model.resize_token_embeddings(vocab_size, mean_resizing=False)
    return model


class HFCausalLM:
    """Builds the ``transformers`` causal LM; the MultimodalLM keeps it as ``language_model``."""

    config_class = HFCausalLMConfig

    @staticmethod
    def build(config: HFCausalLMConfig, vocab_size: int, load_pretrained: bool = True) -> Any:
        """The causal LM with room for ``vocab_size`` tokens (placeholders included)."""
        from transformers import AutoModelForCausalLM

        return build_hf_lm(AutoModelForCausalLM, config, vocab_size, load_pretrained)

    @staticmethod
    def model_family() -> type:
        """The model that wraps this backbone: modality tokens and answer in one causal sequence."""
        from zoo.models.multimodal_lm import MultimodalLM

        return MultimodalLM


class HFSeq2SeqLM:
    """Builds the ``transformers`` encoder–decoder; the MultimodalSeq2SeqLM keeps it as ``language_model``."""

    config_class = HFSeq2SeqLMConfig

    @staticmethod
    def build(config: HFSeq2SeqLMConfig, vocab_size: int, load_pretrained: bool = True) -> Any:
        """The encoder–decoder with room for ``vocab_size`` tokens (placeholders included)."""
        from transformers import AutoModelForSeq2SeqLM

        return build_hf_lm(AutoModelForSeq2SeqLM, config, vocab_size, load_pretrained)

    @staticmethod
    def model_family() -> type:
        """The model that wraps this backbone: modality tokens in the encoder, the answer from the decoder."""
        from zoo.models.multimodal_seq2seq_lm import MultimodalSeq2SeqLM

        return MultimodalSeq2SeqLM
