"""Training objectives as ``nn.Module`` wrappers, so ``accelerator.prepare`` (DDP, FSDP, autocast) sees the
one forward that computes the loss.

- :class:`CausalLMObjective` returns the SUM of next-token cross-entropies over the answer tokens; the loop
  divides by the number of answer tokens in the whole optimizer step (all processes, all accumulated
  micro-batches), so the loss and its gradient do not depend on how the step is split.
- :class:`Seq2SeqLMObjective` is the same sum for a ``MultimodalSeq2SeqLM``, whose decoder scores the answer
  tokens with no shift.
- :class:`ContrastiveObjective` is ``DualEncoder.forward``'s contrastive loss (symmetric InfoNCE, or SigLIP's
  sigmoid loss when the spec says ``contrastive_loss: sigmoid``) over the GLOBAL batch: under
  several processes the embeddings are all-gathered with gradient (``torch.distributed.nn.functional``), so
  every process sees the same negatives as one process would.
- :class:`PropertyObjective` is a ``Predictor``'s mean loss over its batch's present labels.

An ``instruct`` stage adapter with a loss term of its own (``model.training_penalty``, set by ``apply_stage``:
LoRAMoE's balance loss, O-LoRA's orthogonality and L2 terms) is added to the LM objectives by :func:`with_penalty`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo.processing import IGNORE_INDEX
from zoo.training.packing import packed_attention, varlen_kwargs
from zoo.training.stages import is_dual_encoder, is_predictor, is_seq2seq_lm


def token_loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy of each token predicting the next one, over labels that are not -100."""
    return F.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
    )


def with_penalty(
    loss_sum: torch.Tensor, model: nn.Module, answer_labels: torch.Tensor, attention_mask: torch.Tensor | None
) -> torch.Tensor:
    """``loss_sum`` plus the stage's penalty times this micro-batch's answer tokens (``answer_labels`` not -100).

    The loop divides the objective by the answer tokens of the whole optimizer step, so the penalty ends up
    weighted per answer token like the cross-entropy: its full weight once per step, whatever the split.
    """
    penalty = getattr(model, "training_penalty", None)
    if penalty is None:
        return loss_sum
    return loss_sum + (answer_labels != IGNORE_INDEX).sum() * penalty(model, attention_mask)


class CausalLMObjective(nn.Module):
    """A ``MultimodalLM`` forward with explicit position ids and a summed loss; a packed row (``cu_seq_lens``
    given) restarts its position ids at each example and attends within each (:mod:`zoo.training.packing`)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        position_ids: torch.Tensor,
        labels: torch.Tensor,
        modality_inputs: Mapping[str, Any],
        cu_seq_lens: torch.Tensor | None = None,
    ) -> torch.Tensor:
        embeds = self.model.embed_inputs(input_ids, modality_inputs)
        language_model = self.model.language_model
        inputs = {"inputs_embeds": embeds, "attention_mask": attention_mask, "position_ids": position_ids,
                  "use_cache": False}
        if cu_seq_lens is None:
            output = language_model(**inputs)
        else:
            with packed_attention(language_model):
                output = language_model(**inputs, **varlen_kwargs(cu_seq_lens))
        return with_penalty(token_loss_sum(output.logits, labels), self.model, labels[:, 1:], attention_mask)


class Seq2SeqLMObjective(nn.Module):
    """A ``MultimodalSeq2SeqLM``'s summed answer-token cross-entropy (``answer_loss_sum``), normalised by the loop
    as a causal LM's."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor,
        modality_inputs: Mapping[str, Any],
    ) -> torch.Tensor:
        loss_sum = self.model.answer_loss_sum(input_ids, attention_mask, labels, modality_inputs)
        return with_penalty(loss_sum, self.model, labels, None)  # encoder and decoder tokens: no one mask fits


def _gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x))


class ContrastiveObjective(nn.Module):
    """A ``DualEncoder``'s contrastive loss (its spec's: InfoNCE or SigLIP's sigmoid) over the items and captions
    of all processes."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        modality: str,
        inputs: Mapping[str, Any] | None = None,
        text_inputs: Mapping[str, Any] | None = None,
        pooled: torch.Tensor | None = None,
        text_pooled: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Loss from processed inputs, or from the towers' cached pooled outputs when the towers are frozen."""
        model = self.model
        items = model.embed_pooled(modality, pooled) if pooled is not None else model.embed_processed(modality, inputs)
        texts = (
            model.embed_pooled("text", text_pooled) if text_pooled is not None else model.embed_processed("text", text_inputs)
        )
        return model.contrastive_loss(_gather_with_grad(items), _gather_with_grad(texts))


class PropertyObjective(nn.Module):
    """A ``Predictor``'s mean loss over the present labels of its batch (``Predictor.head_loss``), from processed
    inputs or, when the encoder is frozen, from its cached pooled features."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, labels: torch.Tensor, inputs: Mapping[str, Any] | None = None,
                pooled: torch.Tensor | None = None) -> torch.Tensor:
        raw = self.model.head(pooled) if pooled is not None else self.model.head_output(**inputs)
        return self.model.head_loss(raw, labels)


def make_objective(model: nn.Module) -> nn.Module:
    if is_predictor(model):
        return PropertyObjective(model)
    if is_seq2seq_lm(model):
        return Seq2SeqLMObjective(model)
    return ContrastiveObjective(model) if is_dual_encoder(model) else CausalLMObjective(model)
