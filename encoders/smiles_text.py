"""The characters a SMILES may hold, checked in one pass before any parser sees the text.

A SMILES is printable ASCII without spaces. RDKit stops reading at the first space, tab, newline or NUL
(``'CCO CC'`` parses as ethanol, the rest read as a name), drops a full-width letter, and cannot even
receive a lone surrogate, so such text is refused here with the character's position named. The featurizer
(:mod:`encoders.molecule.featurize`) and the tokenizer (:mod:`encoders.smiles.tokenizer`) both use this
module, so they refuse the same text with the same message. It imports nothing beyond the standard library.
"""

from __future__ import annotations

import re

MAX_SMILES_LENGTH = 4_000
"""Default length limit (characters) of one molecule's SMILES for the featurizer: text beyond it is refused
unread. RDKit's parse time grows with the square of the length on some text (``'c' * n``, long conjugated
chains: about 0.2 s at 4,000 characters), so a limit is what bounds the time one string can take. The
longest SMILES in ChEBI-20, MoleculeNet and USPTO-50K has 1,598 characters."""

_NOT_SMILES = re.compile(r"[^!-~]")  # anything but printable ASCII other than the space
_WHITESPACE = frozenset(" \t\n\r\v\f")


def smiles_text_problem(text: str, max_length: int | None = None) -> str | None:
    """Why ``text`` cannot be a SMILES: over ``max_length`` characters (None: no limit), or holding a
    character no SMILES has (whitespace, a control character such as NUL, anything non-ASCII), named with
    its position; None when the text may be parsed. Time linear in the length, and constant past the limit.
    """
    if max_length is not None and len(text) > max_length:
        return (
            f"it has {len(text):,} characters, over the limit of {max_length:,} (max_length; default "
            f"MAX_SMILES_LENGTH = {MAX_SMILES_LENGTH:,}); RDKit's time can grow with the square of the "
            "length, so longer text is refused unread: pass a larger max_length for a real molecule this long"
        )
    found = _NOT_SMILES.search(text)
    if found is None:
        return None
    char, position = found.group(), found.start()
    if char in _WHITESPACE:
        return (
            f"whitespace {char!r} at position {position}; a SMILES has none: strip the text, or split off "
            "what follows the SMILES (a name, a CXSMILES block, the next molecule)"
        )
    if char.isascii():
        return f"control character {char!r} at position {position}; a SMILES has none: remove it"
    return (
        f"non-ASCII character {char!r} (U+{ord(char):04X}) at position {position}; a SMILES is ASCII: "
        "write look-alikes (full-width letters, Unicode digits and dashes) in ASCII and remove invisible "
        "characters (zero-width spaces, byte-order marks)"
    )


def quote_smiles(text: str, limit: int = 120) -> str:
    """``repr(text)`` for error messages, cut to its first ``limit`` characters plus the length if longer."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text):,} characters)"
