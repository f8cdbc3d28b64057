"""SMILES and reaction-SMILES encoders: the regex tokenizer, HF BERT-family checkpoints, and native MoLFormer."""

from encoders.smiles.hf_encoder import (
    RXNMAPPER_ALBERT,
    HFSmilesConfig,
    HFSmilesEncoder,
    HFSmilesProcessor,
    find_rxnmapper_albert,
)
from encoders.smiles.molformer import (
    MolFormerConfig,
    MolFormerEncoder,
    MolFormerProcessor,
    load_molformer_weights,
    molformer_key_map,
)
from encoders.smiles.processor import SmilesProcessor
from encoders.smiles.tokenizer import SPECIAL_TOKENS, SmilesTokenizer, build_vocab, tokenize_smiles

__all__ = [
    "RXNMAPPER_ALBERT",
    "SPECIAL_TOKENS",
    "HFSmilesConfig",
    "HFSmilesEncoder",
    "HFSmilesProcessor",
    "MolFormerConfig",
    "MolFormerEncoder",
    "MolFormerProcessor",
    "SmilesProcessor",
    "SmilesTokenizer",
    "build_vocab",
    "find_rxnmapper_albert",
    "load_molformer_weights",
    "molformer_key_map",
    "tokenize_smiles",
]
