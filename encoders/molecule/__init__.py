"""Molecule inputs: SMILES / RDKit ``Mol`` / reaction SMILES -> PyG graphs under named feature schemes."""

from encoders.molecule.featurize import (
    DEFAULT_SCHEME,
    FeaturizeError,
    FeaturizeResult,
    featurize_many,
    smiles_to_graph,
)
from encoders.molecule.parsing import InvalidMoleculeError
from encoders.molecule.reactions import ROLES, reaction_to_graphs, split_reaction
from encoders.molecule.scheme_base import FeatureScheme, GraphArrays
from encoders.molecule.schemes import SCHEMES, get_scheme
from encoders.smiles_text import MAX_SMILES_LENGTH

__all__ = [
    "DEFAULT_SCHEME",
    "FeatureScheme",
    "FeaturizeError",
    "FeaturizeResult",
    "GraphArrays",
    "InvalidMoleculeError",
    "MAX_SMILES_LENGTH",
    "ROLES",
    "SCHEMES",
    "featurize_many",
    "get_scheme",
    "reaction_to_graphs",
    "smiles_to_graph",
    "split_reaction",
]
