"""Analogue reranking for a retro template model: how the training reactions most like a product were made.

RetroSim (Coley et al. 2017) ranks precursors by analogy: a candidate is good when a training product much like
this one was made from reactants much like the candidate. Here that analogy, whether those neighbours used a
template that gave the candidate, and the candidate's shape against the product (how many molecules, atoms and
rings) become features beside the template model's own scores, and a listwise reranker (linear plus one small
tanh layer, fitted on held-out reactions, never on the test set) orders each product's candidates.

The index holds every training reaction as two sparse fingerprint bit sets (product; reactant set) and its
template ids. It is saved as one safetensors asset (``analogues.safetensors``) with the reranker's weights,
sha256-checked like the model's weights, so the shapes travel with the data and not with the spec.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

ANALOGUES_ASSET = "analogues.safetensors"
FEATURES = (
    "log score", "log radius-1 score", "log general score", "analogy", "analogy squared",
    "neighbour template vote", "nearest neighbour with the template", "log rank",
    "one reactant molecule", "three or more reactant molecules", "log heavy-atom ratio", "log templates giving it",
    "summed cubed analogy", "best reactant similarity", "ring change", "general templates only",
)  # fmt: skip
HIDDEN = 8  # the reranker's tanh units
NO_TEMPLATE = -1
RERANKER = {"weights": (len(FEATURES),), "hidden_weight": (HIDDEN, len(FEATURES)), "hidden_bias": (HIDDEN,),
            "output_weight": (HIDDEN,)}  # fmt: skip


@dataclass(frozen=True)
class MoleculeShape:
    """What the reranker reads of a molecule (set): its fingerprint bits, heavy atoms and rings."""

    bits: np.ndarray
    heavy_atoms: int
    rings: int


@dataclass(frozen=True)
class CandidateEvidence:
    """What the template model says about one outcome: its summed probability from radius-1 and general
    templates, the output indices of the templates that gave it, and its shape (``None`` when nothing reranks)."""

    smiles: str
    score: float
    general_score: float
    templates: frozenset[int]
    shape: MoleculeShape | None


def _neutral_reranker() -> dict[str, torch.Tensor]:
    """Reranker weights that keep the template model's own order: all on the log score."""
    reranker = {name: torch.zeros(size) for name, size in RERANKER.items()}
    reranker["weights"][0] = 1.0
    return reranker


def _csr(bit_sets: Sequence[np.ndarray], width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Bit sets as (column indices, row offsets)."""
    offsets = np.zeros(len(bit_sets) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(b) for b in bit_sets])
    columns = np.concatenate(bit_sets) if bit_sets else np.zeros(0)
    if len(columns) and (columns.min() < 0 or columns.max() >= width):
        raise ValueError(f"fingerprint bits must lie in [0, {width}); got {columns.min()}..{columns.max()}")
    return torch.from_numpy(columns.astype(np.int16 if width <= 32767 else np.int32)), torch.from_numpy(offsets)


class AnalogueIndex:
    """Training reactions (product bits, reactant bits, template ids) and the reranker weights over FEATURES."""

    def __init__(self, tensors: dict[str, torch.Tensor]) -> None:
        needed = {"product_bits", "product_offsets", "reactant_bits", "reactant_offsets", "templates", "width",
                  *RERANKER}
        if missing := sorted(needed - tensors.keys()):
            raise ValueError(f"the analogue index lacks {', '.join(missing)}; rebuild it with AnalogueIndex.build")
        self.tensors = tensors
        self.width = int(tensors["width"].item())
        for side in ("product", "reactant"):
            self._check_side(side)
        rows = len(tensors["product_offsets"]) - 1
        if len(tensors["reactant_offsets"]) - 1 != rows or tuple(tensors["templates"].shape) != (rows, 2):
            raise ValueError(f"the analogue index is inconsistent: {rows} products but reactant offsets "
                             f"{len(tensors['reactant_offsets']) - 1} and templates {tuple(tensors['templates'].shape)}")
        for name, size in RERANKER.items():
            if tuple(tensors[name].shape) != size:
                raise ValueError(f"the analogue reranker's {name} must have shape {size} ({len(FEATURES)} features, "
                                 f"{HIDDEN} hidden units), got {tuple(tensors[name].shape)}; rebuild the index")
        self.product_rows_by_bit, self.bit_offsets = self._postings()
        self.product_sizes = np.diff(tensors["product_offsets"].numpy()).astype(np.float32)
        self.reactant_offsets = tensors["reactant_offsets"].numpy()
        self.reactant_bits = tensors["reactant_bits"].numpy().astype(np.int64)
        self.templates = tensors["templates"].numpy()
        self.reranker = {name: tensors[name].float() for name in RERANKER}
        self._reranker_arrays = {name: t.numpy() for name, t in self.reranker.items()}  # ranking runs in numpy

    @classmethod
    def build(
        cls, products: Sequence[np.ndarray], reactants: Sequence[np.ndarray], templates: Sequence[tuple[int, int]],
        width: int,
    ) -> AnalogueIndex:
        """An index of training reactions (bit sets of each product and reactant set, and the output indices of
        its radius-1 and general template, ``NO_TEMPLATE`` for none), with the reranker at its neutral start:
        the template model's own score alone."""
        if not len(products) == len(reactants) == len(templates):
            raise ValueError(f"{len(products)} products, {len(reactants)} reactant sets, {len(templates)} template pairs")
        product_bits, product_offsets = _csr(products, width)
        reactant_bits, reactant_offsets = _csr(reactants, width)
        return cls({
            "product_bits": product_bits, "product_offsets": product_offsets, "reactant_bits": reactant_bits,
            "reactant_offsets": reactant_offsets, "templates": torch.tensor(np.asarray(templates, dtype=np.int32)),
            "width": torch.tensor(width), **_neutral_reranker(),
        })  # fmt: skip

    def with_reranker(self, reranker: dict[str, torch.Tensor]) -> AnalogueIndex:
        """This index with fitted reranker weights (the tensors of ``RERANKER``)."""
        return AnalogueIndex({**self.tensors, **{name: reranker[name].detach().float().cpu() for name in RERANKER}})

    def to_bytes(self) -> bytes:
        from safetensors.torch import save

        return save({name: t.contiguous() for name, t in self.tensors.items()}, metadata={"features": ",".join(FEATURES)})

    @classmethod
    def from_bytes(cls, data: bytes) -> AnalogueIndex:
        from safetensors.torch import load

        try:
            tensors = load(data)
        except Exception as err:  # safetensors raises its own error types for a malformed buffer
            raise ValueError(f"the analogue index is not a readable safetensors file ({err})") from err
        return cls(tensors)

    def _check_side(self, side: str) -> None:
        """Refuse an index whose bit lists could read outside their rows (it is untrusted input, like weights)."""
        bits, offsets = self.tensors[f"{side}_bits"], self.tensors[f"{side}_offsets"]
        if self.width < 1 or bits.ndim != 1 or offsets.ndim != 1 or len(offsets) < 1:
            raise ValueError(f"the analogue index's {side} bits are malformed; rebuild it with AnalogueIndex.build")
        if offsets[0] != 0 or offsets[-1] != len(bits) or bool((torch.diff(offsets) < 0).any()):
            raise ValueError(f"the analogue index's {side} offsets do not partition its {len(bits)} bits")
        if len(bits) and (int(bits.min()) < 0 or int(bits.max()) >= self.width):
            raise ValueError(f"the analogue index's {side} bits leave [0, {self.width})")

    def _postings(self) -> tuple[np.ndarray, np.ndarray]:
        """The training products grouped by fingerprint bit (an inverted index): the rows that set bit ``b`` are
        ``rows[offsets[b]:offsets[b + 1]]``. A query then touches only the rows sharing one of its bits."""
        offsets = self.tensors["product_offsets"].numpy()
        bits = self.tensors["product_bits"].numpy().astype(np.int64)
        rows = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
        order = np.argsort(bits, kind="stable")
        return rows[order], np.searchsorted(bits[order], np.arange(self.width + 1))

    def neighbours(self, bits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` training products most like a product with these bits (Tanimoto), most similar first, and
        their similarities."""
        starts, ends = self.bit_offsets[bits], self.bit_offsets[np.asarray(bits) + 1]
        touched = np.concatenate([self.product_rows_by_bit[s:e] for s, e in zip(starts, ends, strict=True)] or [np.zeros(0, np.int64)])
        shared = np.bincount(touched, minlength=len(self.product_sizes)).astype(np.float32)
        similarity = shared / np.maximum(self.product_sizes + len(bits) - shared, 1.0)
        k = min(k, len(similarity))
        near = np.argpartition(-similarity, k - 1)[:k] if k else np.zeros(0, np.int64)
        near = near[np.lexsort((near, -similarity[near]))]  # most similar first, ties by row
        return near, similarity[near]

    def _reactants(self, row: int) -> np.ndarray:
        return self.reactant_bits[self.reactant_offsets[row] : self.reactant_offsets[row + 1]]

    def features(self, product: MoleculeShape, candidates: Sequence[CandidateEvidence], k: int) -> torch.Tensor:
        """FEATURES of each candidate of one product, ``[len(candidates), len(FEATURES)]``."""
        near, similarity = self.neighbours(product.bits, k)
        neighbour_reactants = np.zeros((len(near), self.width), dtype=np.float32)
        for i, row in enumerate(near):
            neighbour_reactants[i, self._reactants(row)] = 1.0
        candidate_bits = np.zeros((len(candidates), self.width), dtype=np.float32)
        for j, candidate in enumerate(candidates):
            candidate_bits[j, candidate.shape.bits] = 1.0
        shared = candidate_bits @ neighbour_reactants.T  # [candidates, neighbours]
        either = candidate_bits.sum(1, keepdims=True) + neighbour_reactants.sum(1)[None, :] - shared
        reactant_similarity = shared / np.maximum(either, 1.0)
        analogies = reactant_similarity * similarity[None, :]
        analogy, summed = analogies.max(1, initial=0.0), (analogies**3).sum(1)
        best_reactant = reactant_similarity.max(1, initial=0.0)
        near_templates = [set(self.templates[row].tolist()) - {NO_TEMPLATE} for row in near]
        rows = []
        for rank, candidate in enumerate(candidates):
            sharing = [float(s) for s, used in zip(similarity, near_templates, strict=True) if used & candidate.templates]
            radius_1 = max(candidate.score - candidate.general_score, 0.0)
            molecules = candidate.smiles.count(".") + 1
            rows.append([
                math.log(candidate.score), math.log(radius_1 + 1e-6), math.log(candidate.general_score + 1e-6),
                float(analogy[rank]), float(analogy[rank]) ** 2, sum(s**3 for s in sharing), max(sharing, default=0.0),
                math.log(rank + 1),
                float(molecules == 1), float(molecules >= 3),
                math.log(max(candidate.shape.heavy_atoms, 1) / max(product.heavy_atoms, 1)),
                math.log(len(candidate.templates)), float(summed[rank]), float(best_reactant[rank]),
                float(candidate.shape.rings - product.rings), float(candidate.general_score >= candidate.score - 1e-9),
            ])  # fmt: skip
        return torch.tensor(rows, dtype=torch.float32).reshape(len(candidates), len(FEATURES))

    def rerank(self, features: torch.Tensor) -> np.ndarray:
        """Each candidate's reranked probability among its product's candidates. Computed in numpy: a few small
        products per product, where torch's per-call overhead (and its threads waking beside the template workers)
        would cost more than the arithmetic."""
        logits = reranker_logits(self._reranker_arrays, features.numpy())
        weights = np.exp(logits - logits.max())
        return weights / weights.sum()


def reranker_logits(reranker: dict[str, Any], features: Any) -> Any:
    """The reranker's score of each candidate (``features [..., F]`` -> ``[...]``): linear plus a tanh layer; torch
    tensors (fitting) or numpy arrays (ranking) alike."""
    tanh = np.tanh if isinstance(features, np.ndarray) else torch.tanh
    hidden = tanh(features @ reranker["hidden_weight"].T + reranker["hidden_bias"])
    return features @ reranker["weights"] + hidden @ reranker["output_weight"]


def fit_reranker(
    lists: Sequence[tuple[torch.Tensor, int]], *, steps: int = 600, lr: float = 0.02, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Listwise reranker weights over FEATURES: each ``(features [candidates, F], position of the recorded
    answer or -1)`` list contributes the log-probability of its answer (lists without it cannot teach the
    order and are skipped). Starts from the template model's own score (the tanh layer's output at zero, its
    input weights seeded as ``nn.Linear`` draws them), Adam, full batch."""
    usable = [(x, y) for x, y in lists if y >= 0 and len(x)]
    if not usable:
        raise ValueError("no held-out product has its recorded reactants among the candidates; cannot fit the reranker")
    longest = max(len(x) for x, _ in usable)
    padded = torch.zeros(len(usable), longest, len(FEATURES))
    mask = torch.zeros(len(usable), longest, dtype=torch.bool)
    for i, (x, _) in enumerate(usable):
        padded[i, : len(x)] = x
        mask[i, : len(x)] = True
    answers = torch.tensor([y for _, y in usable])
    reranker = _neutral_reranker()
    generator = torch.Generator().manual_seed(seed)
    bound = 1 / math.sqrt(len(FEATURES))
    reranker["hidden_weight"].uniform_(-bound, bound, generator=generator)
    reranker["hidden_bias"].uniform_(-bound, bound, generator=generator)
    params = [t.requires_grad_(True) for t in reranker.values()]
    optimizer = torch.optim.Adam(params, lr=lr)
    for _ in range(steps):
        logits = reranker_logits(reranker, padded).masked_fill(~mask, float("-inf"))
        loss = -logits.log_softmax(-1).gather(1, answers[:, None]).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return {name: t.detach() for name, t in reranker.items()}
