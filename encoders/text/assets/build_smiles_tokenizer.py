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

SPECIAL = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
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
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=SPECIAL["unk_token"]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(uspto_dir), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL)
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out_dir)
    return out_dir


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("uspto_dir", type=Path, help="folder with USPTO-50K src-train.txt and tgt-train.txt")
    print(f"wrote {build(parser.parse_args().uspto_dir)}")
