"""Write ``encoders/text/assets/tiny-bpe``: a small byte-level BPE tokenizer trained here, so nothing is downloaded.

Run ``python -m encoders.text.assets.build_tiny_tokenizer`` to rebuild it; the corpus is generated deterministically
from the word lists below (scene descriptions, questions, chemistry words and SMILES), so the output is
identical on every machine.
"""

from __future__ import annotations

import itertools
from pathlib import Path

COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "black", "white", "grey", "brown"]
SHAPES = ["circle", "square", "triangle", "star", "cross", "ring", "diamond", "hexagon"]
PLACES = ["left", "right", "top", "bottom", "centre", "top left", "top right", "bottom left", "bottom right"]
QUESTIONS = [
    "What colour is the {shape}?", "Where is the {colour} {shape}?", "How many shapes are there?",
    "Is there a {colour} {shape}?", "Describe the image.", "What is this molecule?", "Describe the sound.",
    "Predict the reactants of the product.", "Predict the product of the reaction.",
]
CHEMISTRY = [
    "molecule", "atom", "bond", "ring", "aromatic", "acid", "alcohol", "amine", "ester", "ketone",
    "reactant", "product", "reagent", "solvent", "catalyst", "yield", "carbon", "nitrogen", "oxygen",
    "sulfur", "chlorine", "bromine", "fluorine", "hydrogen", "is a", "compound", "derivative", "salt",
]
SMILES = ["CCO", "c1ccccc1", "CC(=O)O", "C1CCCCC1", "CN", "O=C=O", "c1ccncc1", "CC(C)O", "Cl", "Br", "[Na+]"]
SPECIAL = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
OUT_DIR = Path(__file__).parent / "tiny-bpe"


def corpus() -> list[str]:
    """Deterministic training lines."""
    lines = []
    for colour, shape, place in itertools.product(COLOURS, SHAPES, PLACES):
        lines.append(f"A {colour} {shape} at the {place}.")
        lines.extend(q.format(colour=colour, shape=shape) for q in QUESTIONS)
    lines.extend(f"The {w} {s} {w}." for w, s in itertools.product(CHEMISTRY, SMILES))
    lines.extend(str(n) for n in range(100))
    return lines


def train_byte_level_bpe(lines: list[str], out_dir: Path, vocab_size: int, split_words: bool = True) -> Path:
    """Train a byte-level BPE with our special tokens on ``lines`` and save it in the Hugging Face format.

    ``split_words=False`` lets merges cross word and punctuation boundaries (SMILES have no words).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=SPECIAL["unk_token"]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=split_words)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(lines, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL)
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out_dir)
    return out_dir


def build(out_dir: Path = OUT_DIR, vocab_size: int = 600) -> Path:
    """Train the tokenizer and save it in the Hugging Face format to ``out_dir``."""
    return train_byte_level_bpe(corpus(), out_dir, vocab_size)


if __name__ == "__main__":
    print(f"wrote {build()}")
