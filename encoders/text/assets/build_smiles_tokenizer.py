"""Write ``encoders/text/assets/smiles-bpe``: a byte-level BPE over reaction SMILES and the reaction prompts.

The language-model side of the reaction models (``rxn-retro-uspto50k``) speaks this vocabulary. It is trained
on the USPTO-50K training split only (products and reactants, no validation or test rows) plus the prompt
texts of the ``retro-uspto50k`` and ``forward-uspto50k`` tasks, with no pre-splitting, so frequent fragments
such as ``c1ccc(`` become single tokens and sequences are about 3x shorter than one token per atom.

    .venv/bin/python -m encoders.text.assets.build_smiles_tokenizer ../shared/data/uspto50k
"""

from __future__ import annotations

import argparse
from pathlib import Path

from encoders.text.assets.build_tiny_tokenizer import train_byte_level_bpe

OUT_DIR = Path(__file__).parent / "smiles-bpe"
PROMPT_REPEATS = 1000
PROMPTS = [" Predict the reactants. Reaction class {n}.", " Predict the product."]


def corpus(uspto_dir: Path) -> list[str]:
    """Training-split SMILES (spaces removed) and every prompt text, in file order."""
    lines = []
    for name in ("src-train.txt", "tgt-train.txt"):
        for line in (uspto_dir / name).read_text(encoding="utf-8").splitlines():
            tokens = line.split()
            if tokens and tokens[0].startswith("<RX_"):
                tokens = tokens[1:]
            lines.append("".join(tokens))
    # Repeated so that BPE merges each prompt into a few tokens (a line counts once per occurrence).
    lines.extend(p.format(n=n) for p in PROMPTS for n in range(1, 11) for _ in range(PROMPT_REPEATS))
    return lines


def build(uspto_dir: Path, out_dir: Path = OUT_DIR, vocab_size: int = 1000) -> Path:
    """Train the tokenizer on ``uspto_dir``'s training split and save it in the Hugging Face format."""
    return train_byte_level_bpe(corpus(uspto_dir), out_dir, vocab_size, split_words=False)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("uspto_dir", type=Path, help="folder with USPTO-50K src-train.txt and tgt-train.txt")
    print(f"wrote {build(parser.parse_args().uspto_dir)}")
