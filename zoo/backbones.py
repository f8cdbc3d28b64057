"""LLM backbones: any Hugging Face causal LM, from a hub id / directory or from a config dict."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class HFCausalLMConfig:
    """Either ``pretrained`` (hub id or directory, with ``revision``) or ``model_config`` (random init).

    ``model_config`` holds ``model_type`` plus that architecture's config fields. Remote code never runs
    unless ``trust_remote_code`` is set explicitly.
    """

    pretrained: str | None = None
    revision: str | None = None
    model_config: dict[str, Any] | None = None
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        if (self.pretrained is None) == (self.model_config is None):
            raise ValueError("give exactly one of 'pretrained' (hub id or directory) or 'model_config'")
        if self.model_config is not None and "model_type" not in self.model_config:
            raise ValueError("model_config needs a 'model_type' (e.g. 'llama', 'qwen2', 'gpt2')")


class HFCausalLM:
    """Builds the ``transformers`` model; the MultimodalLM keeps it as ``language_model``."""

    config_class = HFCausalLMConfig

    @staticmethod
    def build(config: HFCausalLMConfig, vocab_size: int, load_pretrained: bool = True) -> Any:
        """The causal LM with room for ``vocab_size`` tokens (placeholders included)."""
        from transformers import AutoConfig, AutoModelForCausalLM

        if config.model_config is not None:
            params = dict(config.model_config)
            hf_config = AutoConfig.for_model(params.pop("model_type"), **params)
            model = AutoModelForCausalLM.from_config(hf_config)
        elif load_pretrained:
            model = AutoModelForCausalLM.from_pretrained(
                config.pretrained,
                revision=config.revision,
                trust_remote_code=config.trust_remote_code,
                use_safetensors=True,
            )
        else:
            hf_config = AutoConfig.from_pretrained(
                config.pretrained, revision=config.revision, trust_remote_code=config.trust_remote_code
            )
            model = AutoModelForCausalLM.from_config(hf_config)
        if model.get_input_embeddings().num_embeddings < vocab_size:
            model.resize_token_embeddings(vocab_size, mean_resizing=False)
        return model
