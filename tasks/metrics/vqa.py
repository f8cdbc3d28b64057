"""Open-ended VQA accuracy exactly as the official VQAv2 evaluation (GT-Vision-Lab ``vqaEval.py``).

Per question: strip newlines/tabs/surrounding whitespace from the prediction and the ten human answers.
Only when the human answers are not all identical are the answers AND the prediction normalised
(:func:`process_punctuation` then :func:`process_digit_article`); when all ten agree, matching is
exact and case-sensitive. Then for each human answer, the prediction is compared with the other nine:
``min(1, matches / 3)``, and the question's accuracy is the mean of those ten numbers. The official
script reports percentages rounded to two decimals; we return unrounded fractions in [0, 1].
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from tasks.metrics._validation import check_not_empty, check_same_length

# The official table, quirks included: keys with capitals ("Im", "Ive", "Id've", "I'dve") never match
# because words are lowercased first, and "somebody'd" maps to "somebodyd".
CONTRACTIONS: dict[str, str] = {
    "aint": "ain't",
    "arent": "aren't",
    "cant": "can't",
    "couldve": "could've",
    "couldnt": "couldn't",
    "couldn'tve": "couldn't've",
    "couldnt've": "couldn't've",
    "didnt": "didn't",
    "doesnt": "doesn't",
    "dont": "don't",
    "hadnt": "hadn't",
    "hadnt've": "hadn't've",
    "hadn'tve": "hadn't've",
    "hasnt": "hasn't",
    "havent": "haven't",
    "hed": "he'd",
    "hed've": "he'd've",
    "he'dve": "he'd've",
    "hes": "he's",
    "howd": "how'd",
    "howll": "how'll",
    "hows": "how's",
    "Id've": "I'd've",
    "I'dve": "I'd've",
    "Im": "I'm",
    "Ive": "I've",
    "isnt": "isn't",
    "itd": "it'd",
    "itd've": "it'd've",
    "it'dve": "it'd've",
    "itll": "it'll",
    "let's": "let's",
    "maam": "ma'am",
    "mightnt": "mightn't",
    "mightnt've": "mightn't've",
    "mightn'tve": "mightn't've",
    "mightve": "might've",
    "mustnt": "mustn't",
    "mustve": "must've",
    "neednt": "needn't",
    "notve": "not've",
    "oclock": "o'clock",
    "oughtnt": "oughtn't",
    "ow's'at": "'ow's'at",
    "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at",
    "shant": "shan't",
    "shed've": "she'd've",
    "she'dve": "she'd've",
    "she's": "she's",
    "shouldve": "should've",
    "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've",
    "shouldn'tve": "shouldn't've",
    "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've",
    "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll",
    "somebodys": "somebody's",
    "someoned": "someone'd",
    "someoned've": "someone'd've",
    "someone'dve": "someone'd've",
    "someonell": "someone'll",
    "someones": "someone's",
    "somethingd": "something'd",
    "somethingd've": "something'd've",
    "something'dve": "something'd've",
    "somethingll": "something'll",
    "thats": "that's",
    "thered": "there'd",
    "thered've": "there'd've",
    "there'dve": "there'd've",
    "therere": "there're",
    "theres": "there's",
    "theyd": "they'd",
    "theyd've": "they'd've",
    "they'dve": "they'd've",
    "theyll": "they'll",
    "theyre": "they're",
    "theyve": "they've",
    "twas": "'twas",
    "wasnt": "wasn't",
    "wed've": "we'd've",
    "we'dve": "we'd've",
    "weve": "we've",
    "werent": "weren't",
    "whatll": "what'll",
    "whatre": "what're",
    "whats": "what's",
    "whatve": "what've",
    "whens": "when's",
    "whered": "where'd",
    "wheres": "where's",
    "whereve": "where've",
    "whod": "who'd",
    "whod've": "who'd've",
    "who'dve": "who'd've",
    "wholl": "who'll",
    "whos": "who's",
    "whove": "who've",
    "whyll": "why'll",
    "whyre": "why're",
    "whys": "why's",
    "wont": "won't",
    "wouldve": "would've",
    "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've",
    "yall": "y'all",
    "yall'll": "y'all'll",
    "y'allll": "y'all'll",
    "yall'd've": "y'all'd've",
    "y'alld've": "y'all'd've",
    "y'all'dve": "y'all'd've",
    "youd": "you'd",
    "youd've": "you'd've",
    "you'dve": "you'd've",
    "youll": "you'll",
    "youre": "you're",
    "youve": "you've",
}
NUMBER_WORDS: dict[str, str] = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
ARTICLES: frozenset[str] = frozenset({"a", "an", "the"})
PUNCTUATION: tuple[str, ...] = (
    ";",
    "/",
    "[",
    "]",
    '"',
    "{",
    "}",
    "(",
    ")",
    "=",
    "+",
    "\\",
    "_",
    "-",
    ">",
    "<",
    "@",
    "`",
    ",",
    "?",
    "!",
)
# The official pattern's "(?!<=\d)" is a mistyped lookbehind: as written it is a lookahead that never
# blocks, so every period not followed by a digit is removed ("2.5" keeps its period, "5." does not).
PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
COMMA_STRIP = re.compile(r"(\d)(,)(\d)")
# The official call is ``periodStrip.sub("", text, re.UNICODE)``: the flag lands in ``count``, so at most
# re.UNICODE (= 32) periods are removed per answer.
_PERIOD_STRIP_COUNT = int(re.UNICODE)


def process_punctuation(text: str) -> str:
    """The official ``processPunctuation``: drop or space out punctuation, then strip periods.

    A punctuation mark is deleted when it touches a space anywhere in the text (``"p "`` or ``" p"``) or
    the text has a digit-comma-digit group; otherwise it becomes a space. Then periods not followed by
    a digit are removed (at most 32, as in the official call).
    """
    out = text
    has_digit_comma = COMMA_STRIP.search(text) is not None
    for mark in PUNCTUATION:
        if (mark + " " in text or " " + mark in text) or has_digit_comma:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return PERIOD_STRIP.sub("", out, count=_PERIOD_STRIP_COUNT)


def process_digit_article(text: str) -> str:
    """The official ``processDigitArticle``: lowercase, number words to digits, drop articles, fix contractions."""
    words = [NUMBER_WORDS.get(word, word) for word in text.lower().split()]
    words = [word for word in words if word not in ARTICLES]
    return " ".join(CONTRACTIONS.get(word, word) for word in words)


def _clean(answer: str) -> str:
    return answer.replace("\n", " ").replace("\t", " ").strip()


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """Accuracy of one prediction against the human answers (ten in VQAv2), in [0, 1].

    Leave-one-out: for each human answer, ``min(1, (# of the OTHER answers equal to the prediction) / 3)``,
    averaged over the answers. The official script removes each answer by comparing answer records,
    which carry unique ids, so this is leave-one-out by position.
    """
    if isinstance(answers, str):
        raise TypeError("answers must be a list of the human answers, not a single string")
    if len(answers) < 2:
        raise ValueError(
            f"VQA accuracy compares the prediction with the other human answers, so it needs at least "
            f"two; got {len(answers)}"
        )
    pred = _clean(prediction)
    gts = [_clean(a) for a in answers]
    if len(set(gts)) > 1:
        gts = [process_digit_article(process_punctuation(a)) for a in gts]
        pred = process_digit_article(process_punctuation(pred))
    total_matches = sum(gt == pred for gt in gts)
    scores = [min(1.0, (total_matches - (gt == pred)) / 3) for gt in gts]
    return sum(scores) / len(scores)


@dataclass(frozen=True)
class VQAResult:
    """Per-question accuracies (input order) and their mean."""

    per_question: list[float]
    overall: float


def vqa_scores(predictions: Sequence[str], answers: Sequence[Sequence[str]]) -> VQAResult:
    """:func:`vqa_accuracy` for every question and the overall mean (the official "overall" / 100)."""
    check_same_length("predictions", predictions, "answers", answers)
    check_not_empty("predictions", predictions)
    per_question = []
    for i, (pred, gts) in enumerate(zip(predictions, answers, strict=True)):
        try:
            per_question.append(vqa_accuracy(pred, gts))
        except (TypeError, ValueError) as err:
            raise type(err)(f"question {i}: {err}") from err
    return VQAResult(per_question=per_question, overall=sum(per_question) / len(per_question))
