"""Regex tokenizer for SMILES and reaction SMILES, with a BERT-format vocabulary (``vocab.txt``).

The token set follows Schwaller et al.'s reaction-transformer convention (the one rxnfp, rxnmapper and
MoLFormer use): a bracket atom is one token (``[C@@H]``, ``[NH3+]``, ``[CH3:1]``), so are ``Br``, ``Cl``,
two-digit ring bonds ``%NN`` and the reaction arrow ``>>``; everything else is one character. Unlike a plain
``re.findall``, tokenization never drops a character: the tokens always join back to the input, and text
the pattern cannot cover raises :class:`InvalidInputError`. Whitespace, control and non-ASCII characters
are refused first, anywhere in the text (inside brackets too), with the same check and message as the
molecule featurizer (:mod:`encoders.smiles_text`). Tokenizing takes time linear in the length,
so the tokenizer sets no length limit (a reaction SMILES may be longer than any one molecule).

For ``transformers``, :meth:`SmilesTokenizer.to_transformers` builds a standard fast tokenizer (WordLevel
model on this regex, ``[CLS] X [SEP]`` template). We build rather than subclass ``PreTrainedTokenizer``
because the result saves as a plain ``tokenizer.json`` that ``AutoTokenizer`` loads anywhere, without our
code and without ``trust_remote_code``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, pre_tokenizers, processors
from tokenizers.models import WordLevel
from transformers import PreTrainedTokenizerFast

from encoders.base import InvalidInputError
from encoders.smiles_text import quote_smiles, smiles_text_problem

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, UNK, CLS, SEP, MASK)

# Order matters: longer alternatives first (``Br`` before ``B``, ``>>`` before ``>``). ASCII classes
# ([0-9], not \d) so that non-ASCII digits are rejected instead of read as ring bonds.
SMILES_TOKEN_PATTERN: str = "|".join(
    (
        r"\[[^\[\]]+\]",  # bracket atom, whole: isotope, element, chirality, H count, charge, atom map
        r"Br|Cl",  # two-letter organic-subset atoms
        r"[BCNOSPFI]|[bcnosp]",  # one-letter organic-subset atoms, aliphatic and aromatic
        r"%[0-9]{2}|%\([0-9]+\)",  # ring bonds 10-99, and the %(NNN) extension
        r"[0-9]",  # ring bonds 0-9
        r">>|>",  # reaction arrow; single '>' separates reactants > agents > products
        r"[-=#$:/\\~]",  # bonds ('~' is the SMARTS any-bond, kept as in Schwaller's vocabulary)
        r"[()+.*@?]",  # branches, '.' between components, '*' wildcard, and Schwaller's leftovers
    )
)
_SCANNER = re.compile(f"(?P<token>{SMILES_TOKEN_PATTERN})|(?P<invalid>.)", re.DOTALL)


def tokenize_smiles(text: str) -> list[str]:
    """Split ``text`` into SMILES tokens whose concatenation is exactly ``text``.

    Raises :class:`InvalidInputError` quoting the input and naming the position when a character is
    whitespace, a control or non-ASCII character, or belongs to no token.
    """
    problem = smiles_text_problem(text)
    if problem is not None:
        raise InvalidInputError(f"cannot tokenize SMILES {quote_smiles(text)}: {problem}")
    tokens = []
    for match in _SCANNER.finditer(text):
        if match.lastgroup == "invalid":
            raise InvalidInputError(
                f"cannot tokenize SMILES {quote_smiles(text)}: {_explain(match.group(), match.start())}"
            )
        tokens.append(match.group())
    return tokens


def _explain(char: str, position: int) -> str:
    if char == "[":
        return f"the bracket atom opened at position {position} is never closed (write e.g. '[NH4+]')"
    return (
        f"{char!r} at position {position} is not SMILES; atoms outside the organic subset "
        "B C N O S P F Cl Br I need brackets (e.g. '[Na+]')"
    )


def build_vocab(corpus: Iterable[str], min_count: int = 1) -> list[str]:
    """Vocabulary for ``corpus``: the special tokens, then tokens seen ``min_count`` times, most frequent first.

    Ties break alphabetically, so the same corpus always gives the same ids.
    """
    counts = Counter(token for text in corpus for token in tokenize_smiles(text))
    kept = sorted(
        (t for t, n in counts.items() if n >= min_count and t not in SPECIAL_TOKENS),
        key=lambda t: (-counts[t], t),
    )
    return [*SPECIAL_TOKENS, *kept]


class SmilesTokenizer:
    """Regex SMILES tokenization plus a BERT-format vocabulary: token strings to ids and back to files."""

    def __init__(self, vocab: Sequence[str]) -> None:
        bad = [t for t in vocab if not t or any(c.isspace() for c in t)]
        if bad:
            raise ValueError(f"vocabulary entries must be non-empty and without whitespace, got {bad[:5]!r}")
        duplicates = sorted(t for t, n in Counter(vocab).items() if n > 1)
        if duplicates:
            raise ValueError(f"vocabulary has duplicate entries {duplicates[:5]!r}; each token needs one id")
        missing = [t for t in SPECIAL_TOKENS if t not in vocab]
        if missing:
            raise ValueError(f"vocabulary lacks the special tokens {missing}; build it with build_vocab()")
        self.vocab: list[str] = list(vocab)
        self.token_to_id: dict[str, int] = {t: i for i, t in enumerate(self.vocab)}

    @classmethod
    def from_file(cls, path: str | Path) -> SmilesTokenizer:
        """Read a ``vocab.txt`` (one token per line, the line number is the id), or the one inside a folder."""
        path = Path(path)
        if path.is_dir():
            path = path / "vocab.txt"
        if not path.is_file():
            raise FileNotFoundError(
                f"no SMILES vocabulary at {path}; write one with SmilesTokenizer(build_vocab(corpus)).save(folder)"
            )
        return cls(path.read_text(encoding="utf-8").splitlines())

    def save(self, directory: str | Path) -> Path:
        """Write the vocabulary to ``directory/vocab.txt`` (creating the folder), as BERT checkpoints do."""
        path = Path(directory) / "vocab.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{t}\n" for t in self.vocab), encoding="utf-8")
        return path

    def __len__(self) -> int:
        return len(self.vocab)

    @property
    def pad_token_id(self) -> int:
        return self.token_to_id[PAD]

    def tokenize(self, text: str) -> list[str]:
        """Tokens of ``text``; they join back to it exactly (see :func:`tokenize_smiles`)."""
        return tokenize_smiles(text)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Ids of ``text``'s tokens, ``[UNK]`` for tokens not in the vocabulary, wrapped in ``[CLS] ... [SEP]``."""
        unk = self.token_to_id[UNK]
        ids = [self.token_to_id.get(t, unk) for t in tokenize_smiles(text)]
        return [self.token_to_id[CLS], *ids, self.token_to_id[SEP]] if add_special_tokens else ids

    def to_transformers(self, model_max_length: int = 512) -> PreTrainedTokenizerFast:
        """The same tokenization as a ``transformers`` fast tokenizer (BERT special tokens, no lower-casing).

        Its ``decode`` concatenates tokens without spaces, so decoding gives back the SMILES.
        """
        backend = Tokenizer(WordLevel(dict(self.token_to_id), unk_token=UNK))
        backend.pre_tokenizer = pre_tokenizers.Split(Regex(SMILES_TOKEN_PATTERN), behavior="isolated")
        cls_id, sep_id = self.token_to_id[CLS], self.token_to_id[SEP]
        backend.post_processor = processors.TemplateProcessing(
            single=f"{CLS} $A {SEP}",
            pair=f"{CLS} $A {SEP} $B:1 {SEP}:1",
            special_tokens=[(CLS, cls_id), (SEP, sep_id)],
        )
        backend.decoder = decoders.Fuse()
        return PreTrainedTokenizerFast(
            tokenizer_object=backend,
            model_max_length=model_max_length,
            pad_token=PAD,
            unk_token=UNK,
            cls_token=CLS,
            sep_token=SEP,
            mask_token=MASK,
        )


# ---- IBM's MoLFormer vocabulary -----------------------------------------------------------------------------------

# IBM's tokenizer (``tokenization_molformer.py`` of ``ibm-research/MoLFormer-XL-both-10pct``): Schwaller's regex
# with a single ``>`` (no ``>>`` token) and no ``%(NNN)`` ring bonds, special tokens in angle brackets.
MOLFORMER_TOKEN_PATTERN: str = (
    r"(\[[^\]]+]|Br?|Cl?|N|O|S|P|F|I|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\|\/|:|~|@|\?|>|\*|\$|\%[0-9]{2}|[0-9])"
)
MOLFORMER_SPECIAL_TOKENS: dict[str, str] = {
    "bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>", "mask_token": "<mask>",
}


def read_molformer_vocab(path: str | Path) -> dict[str, int]:
    """``{token: id}`` from IBM's ``vocab.json`` (that mapping) or ``tokenizer.json`` (its WordLevel
    ``model.vocab``), checked: every id used once, the special tokens present. Nothing else is read."""
    import json

    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ValueError(f"cannot read the MoLFormer vocabulary {path}: {err}") from err
    if isinstance(data, dict) and isinstance(data.get("model"), dict):  # tokenizer.json
        if data["model"].get("type") != "WordLevel":
            raise ValueError(f"{path} is a {data['model'].get('type')!r} tokenizer, not IBM's WordLevel one")
        data = data["model"].get("vocab")
    if not isinstance(data, dict) or not all(
        isinstance(t, str) and type(i) is int and i >= 0 for t, i in data.items()
    ):
        raise ValueError(f"{path} is not a {{token: id}} vocabulary (IBM's vocab.json or tokenizer.json)")
    if sorted(data.values()) != list(range(len(data))):
        raise ValueError(f"{path}: the ids of its {len(data)} tokens are not 0..{len(data) - 1}, each once")
    missing = [t for t in MOLFORMER_SPECIAL_TOKENS.values() if t not in data]
    if missing:
        raise ValueError(f"{path} lacks IBM's special tokens {missing}; is it a MoLFormer vocabulary?")
    return dict(data)


def molformer_tokenizer(vocab: dict[str, int], model_max_length: int) -> PreTrainedTokenizerFast:
    """IBM's MoLFormer tokenization as a ``transformers`` fast tokenizer: IBM's regex, ``vocab`` ids as they
    are, ``<bos> X <eos>``, tokens outside the vocabulary as ``<unk>``."""
    special = MOLFORMER_SPECIAL_TOKENS
    backend = Tokenizer(WordLevel(dict(vocab), unk_token=special["unk_token"]))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(MOLFORMER_TOKEN_PATTERN), behavior="isolated")
    bos, eos = special["bos_token"], special["eos_token"]
    backend.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} $B:1 {eos}:1",
        special_tokens=[(bos, vocab[bos]), (eos, vocab[eos])],
    )
    backend.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=backend, model_max_length=model_max_length, **special)
