"""Batch already-featurized molecule graphs for :class:`~encoders.molecule.graph_encoder.MoleculeGraphEncoder`.

Each item is checked against the config's feature scheme first, so a graph featurized for another encoder
fails here, naming the item, instead of deep inside an embedding lookup.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch_geometric.data import Batch, Data

from encoders.base import InvalidInputError, ProcessedBatch
from encoders.molecule.graph_encoder import GraphEncoderConfig


def _check_categorical(
    values: torch.Tensor | None, vocab: tuple[int, ...], rows: int | None, what: str
) -> str | None:
    """Why ``values`` is not an integer ``[rows, len(vocab)]`` matrix with column ``k`` in ``[0, vocab[k])``."""
    if values is None:
        return f"has no {what}"
    if values.dim() != 2 or values.size(1) != len(vocab):
        return f"has {what} of shape {tuple(values.shape)}, expected width {len(vocab)}"
    if rows is not None and values.size(0) != rows:
        return f"has {values.size(0)} rows of {what} for {rows} edges"
    if values.dtype.is_floating_point or values.dtype.is_complex or values.dtype == torch.bool:
        return f"has {what} of dtype {values.dtype}, expected integer category indices"
    if values.numel() and ((values < 0).any() or (values >= values.new_tensor(vocab)).any()):
        return f"has {what} outside the category ranges {list(vocab)}"
    return None


class MoleculeGraphProcessor:
    """Turn molecules (SMILES, RDKit ``Mol`` or featurized ``Data``) into the encoder's ``graph`` batch."""

    def __init__(self, config: GraphEncoderConfig) -> None:
        self.config = config

    def _graph(self, index: int, item: object) -> Data:
        if isinstance(item, Data):
            return item
        from rdkit import Chem

        from encoders.molecule.featurize import smiles_to_graph
        from encoders.molecule.parsing import InvalidMoleculeError

        if not isinstance(item, (str, Chem.Mol)):
            return item  # _check names the wrong type
        try:
            return smiles_to_graph(item, scheme=self.config.scheme)
        except InvalidMoleculeError as err:
            raise InvalidMoleculeError(f"molecule item {index}: {err}") from err

    def __call__(self, items: Sequence[object]) -> ProcessedBatch:
        graphs = [self._graph(i, item) for i, item in enumerate(items)]
        for index, graph in enumerate(graphs):
            self._check(index, graph)
        return ProcessedBatch(
            inputs={"graph": Batch.from_data_list(list(graphs))}, sizes=[g.num_nodes for g in graphs]
        )

    def _check(self, index: int, graph: object) -> None:
        """Raise :class:`InvalidInputError` naming item ``index`` if it does not fit the config's scheme."""
        scheme = self.config.scheme
        hint = f"featurize it with scheme {scheme!r} (encoders.molecule.featurize)"
        if not isinstance(graph, Data) or isinstance(graph, Batch):
            raise InvalidInputError(
                f"molecule graph item {index} is a {type(graph).__name__}, not a torch_geometric Data; {hint}"
            )
        x, edge_index = graph.x, graph.edge_index
        problem = _check_categorical(x, self.config.atom_vocab, None, "atom features x")
        if problem is None and x.size(0) == 0:
            problem = "has no atoms"
        if problem is None and (edge_index is None or edge_index.dim() != 2 or edge_index.size(0) != 2):
            problem = "has no edge_index of shape [2, E]"
        if problem is None and edge_index.numel() and (edge_index.min() < 0 or edge_index.max() >= x.size(0)):
            problem = f"has edge_index entries outside [0, {x.size(0)})"
        if problem is None:
            problem = _check_categorical(
                graph.edge_attr, self.config.bond_vocab, edge_index.size(1), "edge_attr"
            )
        if problem is not None:
            raise InvalidInputError(f"molecule graph item {index} {problem} for scheme {scheme!r}; {hint}")
