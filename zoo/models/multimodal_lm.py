"""``MultimodalLM``: encoders -> projectors -> features scattered into a causal LM's input embeddings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from zoo.models.pretrained import PretrainedMixin
from zoo.processing import PROJECTOR_TEXT_KEYS, MultimodalBatch, MultimodalProcessor, PlaceholderCountError


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counted over real tokens only, so left padding does not shift them (batch-size invariance)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


class MultimodalLM(PretrainedMixin, nn.Module):
    """A LLaVA-style model over any number of modalities, several items per prompt."""

    processor_class: type[MultimodalProcessor] = MultimodalProcessor  # lays out prompt and answer for this family
    lora_task_type = "CAUSAL_LM"  # peft's name for this kind of language model

    def __init__(
        self,
        spec: Any,
        encoders: Mapping[str, nn.Module],
        projectors: Mapping[str, nn.Module],
        language_model: nn.Module,
        processor: MultimodalProcessor,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.encoders = nn.ModuleDict(encoders)
        self.projectors = nn.ModuleDict(projectors)
        self.language_model = language_model
        self.processor = processor

    def encode_modality(self, modality: str, inputs: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Projected tokens ``[n_items, M, D_lm]`` and their mask for one modality's processed inputs."""
        text = {k: inputs[k] for k in PROJECTOR_TEXT_KEYS if k in inputs}  # for a projector that reads the prompt
        skip = ("items_per_sample", "tokens_per_item", *PROJECTOR_TEXT_KEYS)
        encoded = self.run_encoder(self.encoders[modality], {k: v for k, v in inputs.items() if k not in skip})
        return self.projectors[modality](encoded.tokens, encoded.mask, **text)

    def embed_inputs(self, input_ids: torch.Tensor, modality_inputs: Mapping[str, Any] | None) -> torch.Tensor:
        """Token embeddings with each placeholder run replaced by its item's projected features."""
        embeds = self.language_model.get_input_embeddings()(input_ids)
        for modality, inputs in (modality_inputs or {}).items():
            tokens, mask = self.encode_modality(modality, inputs)
            placeholder_id = self.processor.placeholder_ids[modality]
            is_placeholder = input_ids == placeholder_id
            self._check_item_counts(modality, mask, inputs["tokens_per_item"])
            self._check_counts(modality, is_placeholder, mask, inputs["items_per_sample"])
            features = tokens[mask].to(embeds.dtype)
            embeds = embeds.masked_scatter(is_placeholder.unsqueeze(-1).expand_as(embeds), features)
        return embeds

    def _check_item_counts(self, modality: str, mask: torch.Tensor, tokens_per_item: torch.Tensor) -> None:
        produced = mask.sum(1).cpu()
        bad = (produced != tokens_per_item.cpu()).nonzero().flatten().tolist()
        if bad:
            k = bad[0]
            raise PlaceholderCountError(
                f"{modality} item {k} was given {int(tokens_per_item[k])} placeholder tokens by the processor but "
                f"the encoder and projector produce {int(produced[k])} ({len(bad)} item(s) disagree); the "
                "processor and the model were built from different configs — use model.processor"
            )

    def _check_counts(
        self, modality: str, is_placeholder: torch.Tensor, mask: torch.Tensor, items_per_sample: torch.Tensor
    ) -> None:
        per_item = mask.sum(1)
        owners = torch.repeat_interleave(
            torch.arange(len(items_per_sample), device=per_item.device), items_per_sample.to(per_item.device)
        )
        expected = torch.zeros(is_placeholder.shape[0], dtype=per_item.dtype, device=per_item.device)
        expected.index_add_(0, owners, per_item)
        found = is_placeholder.sum(1).to(expected.dtype)
        bad = (found != expected).nonzero().flatten().tolist()
        if bad:
            i = bad[0]
            raise PlaceholderCountError(
                f"sample {i} has {int(found[i])} {self.processor.placeholders[modality]} placeholder tokens but its "
                f"{int(items_per_sample[i])} {modality} item(s) produce {int(expected[i])} feature tokens "
                f"({len(bad)} sample(s) disagree); build inputs with model.processor so the counts match"
            )

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        modality_inputs: Mapping[str, Any] | None = None,
        labels: torch.Tensor | None = None,
        **lm_kwargs: Any,
    ) -> Any:
        """The LM's output; with ``labels`` its loss covers the answer tokens only (the rest is -100)."""
        embeds = self.embed_inputs(input_ids, modality_inputs)
        return self.language_model(
            inputs_embeds=embeds,
            attention_mask=attention_mask,
            position_ids=position_ids_from_mask(attention_mask),
            labels=labels,
            **lm_kwargs,
        )

    def label_targets(self, labels: torch.Tensor) -> torch.Tensor:
        """The labels the logits score, position by position: a causal LM's logits at ``t`` predict token
        ``t + 1``, so the first label is never scored."""
        return labels[:, 1:]

    def answer_logits(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and the labels they score, aligned (``logits[:, t]`` scores ``targets[:, t]``, -100 off the
        answer), for a batch built with ``targets``: what answer log-likelihoods are computed from."""
        return self(**batch).logits[:, :-1], self.label_targets(batch["labels"])

    @torch.no_grad()
    def continuation_logits(
        self, batch: Mapping[str, Any], continuations: Sequence[Sequence[int]], owners: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and the tokens they score, aligned as in ``answer_logits``, for token-id continuation ``k`` of
        prompt ``owners[k]`` of a left-padded prompt batch (built without ``targets``).

        Each prompt (its modality features merged) runs once; its KV cache is repeated over its continuations, so
        only the continuation tokens run again: multiple-choice options share their question this way. Targets
        are right-padded with -100."""
        if self.language_model.config.is_encoder_decoder:
            raise ValueError("continuation_logits shares a causal LM's prompt cache; score an encoder-decoder with "
                             "answer_logits on a batch built with targets")
        mask = batch["attention_mask"]
        if bool((mask[:, -1] == 0).any()):
            raise ValueError("continuation_logits needs left padding: build the batch with padding_side='left'")
        prompt = self.language_model(
            inputs_embeds=self.embed_inputs(batch["input_ids"], batch.get("modality_inputs")),
            attention_mask=mask,
            position_ids=position_ids_from_mask(mask),
            use_cache=True,
            logits_to_keep=1,
        )
        width = max(len(c) for c in continuations)
        ids = torch.full((len(continuations), width), self.processor.tokenizer.pad_token_id, dtype=torch.long)
        real = torch.zeros((len(continuations), width), dtype=torch.long)
        for k, tokens in enumerate(continuations):
            ids[k, : len(tokens)] = torch.tensor(list(tokens), dtype=torch.long)
            real[k, : len(tokens)] = 1
        ids, real, owners = ids.to(mask.device), real.to(mask.device), owners.to(mask.device)
        targets = ids.masked_fill(real == 0, -100)
        first = prompt.logits[:, -1:].index_select(0, owners)  # the prompt's last logits score the first token
        if width == 1:
            return first, targets
        cache = prompt.past_key_values
        if cache is None:  # e.g. gradient checkpointing in training mode turns the cache off
            raise ValueError("the language model returned no KV cache to share; score options with model.eval()")
        cache.reorder_cache(owners)  # one copy of its prompt's keys and values per continuation
        prompt_mask = mask.index_select(0, owners)
        positions = prompt_mask.sum(1, keepdim=True) + torch.arange(width - 1, device=mask.device)
        rest = self.language_model(
            inputs_embeds=self.language_model.get_input_embeddings()(ids[:, :-1]),
            attention_mask=torch.cat([prompt_mask, real[:, :-1].to(prompt_mask.dtype)], 1),
            position_ids=positions,
            past_key_values=cache,
            use_cache=False,
        )
        return torch.cat([first, rest.logits], 1), targets

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        modality_inputs: Mapping[str, Any] | None = None,
        **generate_kwargs: Any,
    ) -> torch.Tensor:
        """New token ids ``[B, T_new]`` for a left-padded batch (``model.processor(...)`` pads left)."""
        if bool((attention_mask[:, -1] == 0).any()):
            raise ValueError("generate needs left padding: build the batch with processor(..., padding_side='left')")
        embeds = self.embed_inputs(input_ids, modality_inputs)
        return self.language_model.generate(inputs_embeds=embeds, attention_mask=attention_mask,
                                            **self.generation_arguments(generate_kwargs))

    def generation_arguments(self, generate_kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """What ``language_model.generate`` gets: the tokenizer's pad and EOS ids, over them the spec's
        ``generation`` defaults (the checkpoint's), over those the caller's ``generate_kwargs``. A caller's own
        ``generation_config`` replaces the spec's defaults whole."""
        tokenizer = self.processor.tokenizer
        defaults = {"pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id}
        if "generation_config" not in generate_kwargs:
            defaults.update(self.spec.generation)
        return {**defaults, **generate_kwargs}

    def generate_text(
        self,
        prompts: Sequence[str],
        items: Mapping[str, Sequence[Sequence[Any]]] | None = None,
        **generate_kwargs: Any,
    ) -> list[str] | list[list[str]]:
        """Prompts + raw items -> generated strings, batched (left padded for a causal LM).

        Returns one string per prompt, in prompt order. With ``num_return_sequences=k`` > 1 (e.g. with
        ``num_beams=k``) it returns one list of ``k`` strings per prompt instead, ``out[i]`` holding the
        sequences for ``prompts[i]``, so that a prompt's candidates cannot be paired with another prompt.
        """
        batch: MultimodalBatch = self.processor(prompts, items, padding_side="left").to(self.device)
        new_tokens = self.generate(**batch, **generate_kwargs)
        texts = self.processor.batch_decode(new_tokens)
        per_prompt = len(texts) // len(prompts)  # generate returns each prompt's sequences next to each other
        if per_prompt == 1:
            return texts
        return [texts[i : i + per_prompt] for i in range(0, len(texts), per_prompt)]
