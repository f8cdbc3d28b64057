"""``MultimodalSeq2SeqLM``: encoders -> projectors -> features scattered into an encoder–decoder's encoder input.

The prompt, with each placeholder run replaced by its item's projected features exactly as in ``MultimodalLM``,
is the encoder's input; the answer is the decoder's (``Seq2SeqProcessor`` lays the batch out), so the decoder's
logits at position ``t`` score answer token ``t`` with no shift. With no modality encoders at all
(``encoders: {}``) it is a plain text-to-text model (T5, MolT5): the prompt is tokenized whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from zoo.models.multimodal_lm import MultimodalLM
from zoo.processing import IGNORE_INDEX, Seq2SeqProcessor


class MultimodalSeq2SeqLM(MultimodalLM):
    """A ``MultimodalLM`` on a T5/BART-style backbone (``hf-seq2seq-lm``), or that backbone alone."""

    processor_class = Seq2SeqProcessor
    lora_task_type = "SEQ_2_SEQ_LM"

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        modality_inputs: Mapping[str, Any] | None = None,
        labels: torch.Tensor | None = None,
        **lm_kwargs: Any,
    ) -> Any:
        """The decoder's output; with ``labels`` (the answers) the decoder reads them shifted right (teacher
        forcing), its logits cover the answer positions and its loss the answer tokens."""
        embeds = self.embed_inputs(input_ids, modality_inputs)
        return self.language_model(inputs_embeds=embeds, attention_mask=attention_mask, labels=labels, **lm_kwargs)

    def label_targets(self, labels: torch.Tensor) -> torch.Tensor:
        """The decoder's logits at ``t`` score label ``t`` (its input is the labels shifted right)."""
        return labels

    def answer_logits(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        return self(**batch).logits, batch["labels"]

    def answer_loss_sum(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor,
        modality_inputs: Mapping[str, Any] | None = None,
    ) -> torch.Tensor:
        """The SUM of cross-entropies over the answer tokens, as the trainer normalises a causal LM's loss (by
        the answer tokens of the whole optimizer step)."""
        logits = self(input_ids, attention_mask, modality_inputs, labels=labels, use_cache=False).logits
        return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE_INDEX, reduction="sum")

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        modality_inputs: Mapping[str, Any] | None = None,
        **generate_kwargs: Any,
    ) -> torch.Tensor:
        """New token ids ``[B * num_return_sequences, T_new]``, without the decoder's start token; any padding
        of the encoder input works, as the encoder reads it whole under its attention mask."""
        embeds = self.embed_inputs(input_ids, modality_inputs)
        sequences = self.language_model.generate(inputs_embeds=embeds, attention_mask=attention_mask,
                                                 **self.generation_arguments(generate_kwargs))
        return sequences[:, 1:]
