"""Reaction SMILES (``reactants>agents>products``, ``A.B>>C``) -> one role-tagged graph per molecule.

Each dot-separated molecule stays its own graph (multi-graph inputs such as PRESTO's give every molecule its
own placeholder span). Atom-map numbers (``[CH3:1]``) are kept in each graph's ``smiles`` text but never
reach the features, so a mapped and an unmapped reaction give identical tensors. Text after the first
whitespace (a name, or a CXSMILES block such as ``|f:0.1|``) is ignored, so fragment groupings are not
applied: every dot-separated molecule is still separate. A ring-bond digit joining two dot-separated
molecules (``C1.C1``) is not supported; that molecule fails with its parse error. Each molecule is screened
and limited in length like any SMILES (see :func:`~encoders.molecule.featurize.smiles_to_graph`).
"""

from __future__ import annotations

import re

from torch_geometric.data import Data

from encoders.molecule.featurize import DEFAULT_SCHEME, smiles_to_graph
from encoders.molecule.parsing import InvalidMoleculeError
from encoders.molecule.scheme_base import FeatureScheme
from encoders.molecule.schemes import get_scheme
from encoders.smiles_text import MAX_SMILES_LENGTH, quote_smiles

ROLES: tuple[str, ...] = ("reactant", "agent", "product")
_ROLE_SEPARATOR = re.compile(r"(?<!-)>")  # the '>' of a dative bond '->' separates nothing


def split_reaction(rxn: str) -> list[tuple[str, str]]:
    """``(role, molecule SMILES)`` for every molecule of ``rxn``, reactants then agents then products."""
    if not isinstance(rxn, str):
        raise TypeError(f"expected a reaction SMILES string, got {type(rxn).__name__}: {rxn!r}")
    head = rxn.split(maxsplit=1)[0] if rxn.strip() else ""
    parts = _ROLE_SEPARATOR.split(head)
    if len(parts) != 3:
        raise InvalidMoleculeError(
            f"reaction SMILES {quote_smiles(rxn)} has {len(parts) - 1} '>' separators; write it as "
            "'reactants>agents>products', e.g. 'CCO.CC(=O)O>[H+]>CCOC(C)=O' or 'A.B>>C'"
        )
    molecules: list[tuple[str, str]] = []
    for role, part in zip(ROLES, parts, strict=True):
        if not part:
            continue
        for fragment in part.split("."):
            if not fragment:
                raise InvalidMoleculeError(
                    f"reaction SMILES {quote_smiles(rxn)} has an empty {role} (a doubled, leading or "
                    "trailing '.'); remove the extra dot"
                )
            molecules.append((role, fragment))
    if not molecules:
        raise InvalidMoleculeError(f"reaction SMILES {quote_smiles(rxn)} contains no molecules")
    return molecules


def reaction_to_graphs(
    rxn: str, scheme: str | FeatureScheme = DEFAULT_SCHEME, max_length: int | None = MAX_SMILES_LENGTH
) -> list[tuple[str, Data]]:
    """One ``(role, Data)`` per molecule of ``rxn``, role in :data:`ROLES`; raises InvalidMoleculeError.

    ``max_length`` limits each molecule's SMILES (default :data:`MAX_SMILES_LENGTH`; None: no limit).
    """
    feature_scheme = get_scheme(scheme)
    graphs: list[tuple[str, Data]] = []
    for role, fragment in split_reaction(rxn):
        try:
            graphs.append((role, smiles_to_graph(fragment, feature_scheme, max_length)))
        except InvalidMoleculeError as exc:
            raise InvalidMoleculeError(
                f"in reaction {quote_smiles(rxn)}, {role} {quote_smiles(fragment)}: {exc}"
            ) from exc
    return graphs
