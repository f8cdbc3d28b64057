"""SMILES (or RDKit ``Mol``) -> ``torch_geometric.data.Data``, one at a time or in bulk.

Every ``Data`` carries ``x``, ``edge_index``, ``edge_attr`` (int64, layout set by the feature scheme, see
:mod:`encoders.molecule.schemes`), ``smiles`` (the input text) and ``num_nodes``.
"""

from __future__ import annotations

import math
import multiprocessing
import sys
import weakref
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from itertools import repeat

import torch
from rdkit import Chem, rdBase
from torch_geometric.data import Data
from torch_geometric.data.storage import GlobalStorage

from encoders.molecule.parsing import InvalidMoleculeError, parse_smiles, screen_smiles
from encoders.molecule.scheme_base import ChunkArrays, FeatureScheme, GraphArrays
from encoders.molecule.schemes import get_scheme
from encoders.smiles_text import MAX_SMILES_LENGTH

DEFAULT_SCHEME = "pretrain-gnns"
_MAX_CHUNK = 1000  # SMILES per chunk: large enough to amortise per-chunk numpy and inter-process overhead
# What Data.__init__ puts beside the storage (its FeatureStore / GraphStore attribute classes), for _new_data.
_DATA_ATTRIBUTES = {key: value for key, value in Data().__dict__.items() if key != "_store"}
_set_attribute = object.__setattr__  # past Data's and the storage's own __setattr__


def smiles_to_graph(
    smiles: str | Chem.Mol,
    scheme: str | FeatureScheme = DEFAULT_SCHEME,
    max_length: int | None = MAX_SMILES_LENGTH,
) -> Data:
    """Featurize one molecule given as SMILES text or as an RDKit ``Mol``.

    Raises :class:`InvalidMoleculeError` (quoting the input and the reason) for text that is empty, longer
    than ``max_length`` characters (default :data:`MAX_SMILES_LENGTH` = 4,000; None: no limit), holds
    whitespace, control or non-ASCII characters (named with their position), or is not a valid molecule
    (RDKit's reason); ValueError for an unknown scheme. The limit bounds the time: RDKit's own parse time
    grows with the square of the length on some text. For a ``Mol``, ``data.smiles`` is its canonical
    SMILES. A multi-fragment SMILES (``A.B``) gives one graph with disconnected components.
    """
    feature_scheme = get_scheme(scheme)
    if isinstance(smiles, Chem.Mol):
        return _mol_to_graph(smiles, feature_scheme)
    return to_data(feature_scheme.arrays(parse_smiles(smiles, max_length), smiles), smiles)


def to_data(arrays: GraphArrays, smiles: str) -> Data:
    """Wrap a scheme's arrays as a PyG ``Data`` (the tensors share memory with the arrays)."""
    return Data(
        x=torch.from_numpy(arrays.x),
        edge_index=torch.from_numpy(arrays.edge_index),
        edge_attr=torch.from_numpy(arrays.edge_attr),
        smiles=smiles,
        num_nodes=len(arrays.x),
    )


def _mol_to_graph(mol: Chem.Mol, scheme: FeatureScheme) -> Data:
    """Featurize a user-built ``Mol``, turning RDKit's precondition errors into advice."""
    if mol.GetNumAtoms() == 0:
        raise InvalidMoleculeError("the RDKit Mol has no atoms; give a molecule with at least one atom")
    try:
        with rdBase.BlockLogs():  # RDKit also prints a stack trace for the errors caught below
            return to_data(scheme.arrays(mol), Chem.MolToSmiles(mol))
    except RuntimeError as exc:  # e.g. implicit valence or ring info not computed on an unsanitized Mol
        reason = " ".join(line.strip() for line in str(exc).splitlines()[:2])
        raise InvalidMoleculeError(
            f"the RDKit Mol cannot be featurized ({reason}); sanitize it first with Chem.SanitizeMol(mol)"
        ) from exc


@dataclass(frozen=True)
class FeaturizeError:
    """One input that could not be featurized: its position, the item as given, and why."""

    index: int
    input: object
    message: str


@dataclass
class FeaturizeResult:
    """The outcome of :func:`featurize_many`: ``graphs[i]`` is input ``i``'s ``Data``, or None if it failed."""

    graphs: list[Data | None]
    errors: list[FeaturizeError]
    num_unique: int

    def __len__(self) -> int:
        return len(self.graphs)

    def __getitem__(self, index: int) -> Data | None:
        return self.graphs[index]

    def __iter__(self) -> Iterator[Data | None]:
        return iter(self.graphs)

    def summary(self) -> str:
        """A report naming every failed item, for logs: counts first, then one line per failure."""
        done = len(self.graphs) - len(self.errors)
        head = f"featurized {done} of {len(self.graphs)} molecules ({self.num_unique} distinct SMILES)"
        if not self.errors:
            return head + "; none failed"
        lines = [f"{head}; {len(self.errors)} failed:"]
        lines += [f"  item {e.index}: {e.message}" for e in self.errors]
        return "\n".join(lines)


def featurize_many(
    smiles_list: Iterable[str],
    scheme: str | FeatureScheme = DEFAULT_SCHEME,
    workers: int = 1,
    max_length: int | None = MAX_SMILES_LENGTH,
) -> FeaturizeResult:
    """Featurize many SMILES, collecting per-item failures instead of raising them.

    Each item fails or succeeds on its own, with the error :func:`smiles_to_graph` would raise: text over
    ``max_length`` characters (default :data:`MAX_SMILES_LENGTH` = 4,000; None: no limit) or with a
    character no SMILES has is refused before parsing, in time linear in its length. Each distinct string
    is featurized once; a repeat gets its own copy (``Data.clone``) so editing one item never changes
    another. ``workers > 1`` spreads chunks of distinct SMILES over that many processes and gives results
    identical to ``workers=1``. Raises only for bad arguments (``scheme``, ``workers``, or a single string
    instead of a list).
    """
    feature_scheme = get_scheme(scheme)
    if isinstance(smiles_list, str):
        raise TypeError("featurize_many takes a list of SMILES, not one string; use smiles_to_graph for one")
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    items = list(smiles_list)
    slot_of: dict[str, int] = {}
    for item in items:
        if isinstance(item, str):
            slot_of.setdefault(item, len(slot_of))
    outcomes = _featurize_unique(list(slot_of), feature_scheme, workers, max_length)

    graphs: list[Data | None] = []
    errors: list[FeaturizeError] = []
    handed_out: set[int] = set()
    for index, item in enumerate(items):
        if not isinstance(item, str):
            message = (
                f"{type(item).__name__} {item!r} is not a SMILES string; convert it first "
                "(Chem.MolToSmiles for an RDKit Mol) or use smiles_to_graph"
            )
            errors.append(FeaturizeError(index, item, message))
            graphs.append(None)
            continue
        slot = slot_of[item]
        outcome = outcomes[slot]
        if isinstance(outcome, str):
            errors.append(FeaturizeError(index, item, outcome))
            graphs.append(None)
        elif slot in handed_out:
            graphs.append(outcome.clone())
        else:
            handed_out.add(slot)
            graphs.append(outcome)
    return FeaturizeResult(graphs, errors, len(slot_of))


def _featurize_unique(
    smiles: list[str], scheme: FeatureScheme, workers: int, max_length: int | None
) -> list[Data | str]:
    """A ``Data`` or an error message per SMILES, in order: refused text gets its message at once, the
    rest is featurized here or in a process pool."""
    refusals = [screen_smiles(text, max_length) for text in smiles]
    screened = [text for text, refusal in zip(smiles, refusals, strict=True) if refusal is None]
    graphs = iter(_featurize_screened(screened, scheme, workers))
    return [next(graphs) if refusal is None else refusal for refusal in refusals]


def _featurize_screened(smiles: list[str], scheme: FeatureScheme, workers: int) -> list[Data | str]:
    """:func:`_featurize_unique` for screened text."""
    if workers == 1 or len(smiles) < 2:
        chunks = [smiles[i : i + _MAX_CHUNK] for i in range(0, len(smiles), _MAX_CHUNK)]
        # Every chunk's arrays first, then the graphs: thousands of new tensors and Data objects made between
        # the parses would slow RDKit's allocations down (by about a tenth of the parse time).
        return _graphs(chunks, [featurize_chunk(chunk, scheme) for chunk in chunks])
    size = max(1, min(_MAX_CHUNK, math.ceil(len(smiles) / (4 * workers))))
    chunks = [smiles[i : i + size] for i in range(0, len(smiles), size)]
    with ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context()) as pool:
        return _graphs(chunks, pool.map(featurize_chunk, chunks, repeat(scheme)))


def featurize_chunk(smiles: list[str], scheme: FeatureScheme) -> ChunkArrays:
    """Worker task: the arrays of a chunk of screened SMILES (one set of numpy arrays is cheap to send
    between processes)."""
    return scheme.chunk_arrays(smiles)


def _graphs(chunks: list[list[str]], results: Iterable[ChunkArrays]) -> list[Data | str]:
    """The outcomes of all chunks, in order."""
    return [
        out for chunk, arrays in zip(chunks, results, strict=True) for out in _chunk_graphs(arrays, chunk)
    ]


def _chunk_graphs(arrays: ChunkArrays, smiles: list[str]) -> list[Data | str]:
    """One ``Data`` per featurized SMILES of a chunk (tensors of its own, not views of the chunk's), or the
    SMILES's error message."""
    xs = torch.split_with_sizes_copy(torch.from_numpy(arrays.x), arrays.num_atoms)
    edge_indexes = torch.split_with_sizes_copy(torch.from_numpy(arrays.edge_index), arrays.num_edges, dim=1)
    edge_attrs = torch.split_with_sizes_copy(torch.from_numpy(arrays.edge_attr), arrays.num_edges)
    texts = [text for position, text in enumerate(smiles) if position not in arrays.errors]
    graphs = iter(map(_new_data, xs, edge_indexes, edge_attrs, texts, arrays.num_atoms))
    return [arrays.errors[i] if i in arrays.errors else next(graphs) for i in range(len(smiles))]


def _new_data(
    x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor, smiles: str, num_nodes: int
) -> Data:
    """``Data(x=..., edge_index=..., edge_attr=..., smiles=..., num_nodes=...)`` in a tenth of the time.

    ``Data.__init__`` routes every attribute through ``__setattr__`` and the storage's property checks; this
    sets the same attributes directly, without building the instance dicts Python creates lazily anyway
    (two fewer objects for the garbage collector per graph). tests/test_molecule_featurize.py checks that
    the result matches a ``Data`` built the usual way, so a PyG release that changes the layout fails a test.
    """
    data = Data.__new__(Data)
    store = GlobalStorage.__new__(GlobalStorage)
    mapping = {
        "x": x,
        "edge_index": edge_index,
        "edge_attr": edge_attr,
        "smiles": smiles,
        "num_nodes": num_nodes,
    }
    _set_attribute(store, "_mapping", mapping)
    _set_attribute(store, "_parent", weakref.ref(data))
    for key, value in _DATA_ATTRIBUTES.items():
        _set_attribute(data, key, value)
    _set_attribute(data, "_store", store)
    return data


def _pool_context() -> multiprocessing.context.BaseContext | None:
    """Fork on Linux: workers inherit the loaded RDKit instead of re-importing torch for seconds each."""
    return multiprocessing.get_context("fork") if sys.platform.startswith("linux") else None
