"""The ``reaction-components`` encoder: a reaction SMILES as the sums of its molecules' embeddings, side by side.

A reaction ``reactants>reagents>products`` is split into its molecules. Each distinct molecule of a batch is
encoded once by a SMILES transformer (e.g. rxnmapper's reaction ALBERT) and pooled; each side of a reaction is
the sum (or mean) of its molecules' vectors, and the reaction vector is the three sides concatenated
(``3 x hidden``). High-throughput screens such as Suzuki–Miyaura repeat a few dozen molecules across thousands
of reactions, so a batch of 128 reactions costs one pass over ~40 short SMILES: fine-tuning the transformer is
cheap on a CPU, where encoding each full reaction string (~180 tokens) would be ~20x slower.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from encoders.base import EncoderOutput, InvalidInputError, ProcessedBatch
from encoders.smiles.hf_encoder import HFSmilesConfig, HFSmilesEncoder, HFSmilesProcessor
from encoders.smiles.tokenizer import tokenize_smiles

SIDES: tuple[str, ...] = ("reactants", "reagents", "products")
SIDE_POOLINGS: tuple[str, ...] = ("sum", "mean")


@dataclass(frozen=True)
class ReactionComponentsConfig(HFSmilesConfig):
    """The molecule encoder's settings (as :class:`HFSmilesConfig`) and how a side pools its molecules:
    ``sum`` keeps how many molecules a side has (an extra equivalent counts), ``mean`` does not."""

    side_pooling: str = "sum"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.side_pooling not in SIDE_POOLINGS:
            raise ValueError(f"unknown side_pooling {self.side_pooling!r}; allowed: {', '.join(SIDE_POOLINGS)}")

    def num_tokens(self, size: int) -> int:
        """One token per reaction."""
        return 1


def reaction_sides(reaction: object, index: int = 0) -> tuple[list[str], list[str], list[str]]:
    """The molecules of ``reactants>reagents>products`` (``reactants>>products`` has no reagents), each
    checked with the SMILES regex; an invalid reaction raises an error naming its item and what is wrong."""
    if not isinstance(reaction, str) or not reaction.strip():
        raise InvalidInputError(f"reaction item {index} is {reaction!r:.80}; pass a reaction SMILES 'A.B>>C'")
    parts = reaction.strip().split(">")
    if len(parts) != 3:
        raise InvalidInputError(
            f"reaction item {index} ({reaction:.80}) has {len(parts) - 1} '>'; write reactants>reagents>products "
            "or reactants>>products"
        )
    sides = tuple(part.split(".") if part else [] for part in parts)
    for side, molecules in zip(SIDES, sides, strict=True):
        if side != "reagents" and not molecules:
            raise InvalidInputError(f"reaction item {index} ({reaction:.80}) has no {side}")
        for molecule in molecules:
            if not molecule:
                raise InvalidInputError(f"reaction item {index} ({reaction:.80}) has an empty molecule among its {side}")
            try:
                tokenize_smiles(molecule)
            except InvalidInputError as error:
                raise InvalidInputError(f"reaction item {index}, {side} molecule {molecule!r:.60}: {error}") from None
    return sides  # type: ignore[return-value]


class ReactionComponentsProcessor:
    """Reaction SMILES -> the batch's distinct molecules as ``input_ids``/``attention_mask`` ``[M, L]`` and
    ``side_counts`` ``[B, 3, M]`` (how often molecule m is on each side of reaction b)."""

    def __init__(self, config: ReactionComponentsConfig, tokenizer: PreTrainedTokenizerBase | None = None) -> None:
        self.config = config
        self.molecules = HFSmilesProcessor(config, tokenizer)
        self.tokenizer = self.molecules.tokenizer

    def __call__(self, reactions: Sequence[object]) -> ProcessedBatch:
        if isinstance(reactions, str) or not reactions:
            raise InvalidInputError(f"expected a non-empty list of reaction SMILES, got {reactions!r:.80}")
        parsed = [reaction_sides(reaction, i) for i, reaction in enumerate(reactions)]
        position: dict[str, int] = {}
        for sides in parsed:
            for molecules in sides:
                for molecule in molecules:
                    position.setdefault(molecule, len(position))
        counts = torch.zeros(len(parsed), len(SIDES), len(position))
        for b, sides in enumerate(parsed):
            for s, molecules in enumerate(sides):
                for molecule in molecules:
                    counts[b, s, position[molecule]] += 1
        molecules = self.molecules(list(position)).inputs
        inputs = {**molecules, "side_counts": counts}
        return ProcessedBatch(inputs=inputs, sizes=[1] * len(parsed))


class ReactionComponentsEncoder(nn.Module):
    """Encodes each distinct molecule once with a SMILES transformer (weights under ``molecule.``) and pools
    the reaction's sides into one ``[B, 3 * hidden]`` vector (one token)."""

    modality = "smiles"
    config_class = ReactionComponentsConfig
    processor_class = ReactionComponentsProcessor

    def __init__(self, config: ReactionComponentsConfig, load_pretrained: bool = True) -> None:
        super().__init__()
        self.config = config
        self.molecule = HFSmilesEncoder(config, load_pretrained=load_pretrained)
        self.hidden_size = len(SIDES) * self.molecule.hidden_size

    def num_tokens(self, size: int) -> int:
        return self.config.num_tokens(size)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, side_counts: torch.Tensor) -> EncoderOutput:
        """Molecule tokens ``[M, L]`` and ``side_counts`` ``[B, 3, M]`` to one vector per reaction."""
        if side_counts.dim() != 3 or side_counts.shape[1:] != (len(SIDES), input_ids.size(0)):
            raise ValueError(
                f"side_counts must have shape [B, {len(SIDES)}, {input_ids.size(0)}] for {input_ids.size(0)} "
                f"molecules, got {tuple(side_counts.shape)}"
            )
        molecules = self.molecule(input_ids=input_ids, attention_mask=attention_mask).pooled
        counts = side_counts.to(molecules.dtype)
        sides = torch.einsum("bsm,md->bsd", counts, molecules)
        if self.config.side_pooling == "mean":
            sides = sides / counts.sum(-1, keepdim=True).clamp(min=1)
        pooled = sides.flatten(1)
        mask = torch.ones(pooled.size(0), 1, dtype=torch.bool, device=pooled.device)
        return EncoderOutput(tokens=pooled.unsqueeze(1), mask=mask, pooled=pooled)
