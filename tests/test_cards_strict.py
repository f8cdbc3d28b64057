"""Card ``eval_results`` are parsed strictly: YAML turns an unquoted comma in a ``{...}`` entry into a junk key,
so such an entry is refused at load, naming the card and the entry, instead of showing up mangled in ``zoo info``."""

from __future__ import annotations

from pathlib import Path

import pytest

import zoo.cards
from zoo.cards import RESULT_KEYS, RESULT_REQUIRED, parse_card
from zoo.spec import SpecError

CARDS_DIR = Path(__file__).resolve().parents[1] / "model_cards"
HEAD = "---\nname: {name}\ndescription: d\nlicense: mit\nspec: {{}}\neval_results:\n  - {entry}\n---\nbody\n"
GOOD = "task: vqa, dataset: d, metric: accuracy, value: 0.5, measured_by: modalzoo"
UNQUOTED_COMMA = ("{task: full fine-tune (encoder + linear head, 10 epochs, best validation epoch), dataset: BBBP, "
                  "metric: roc_auc, value: 0.71, measured_by: modalzoo}")


@pytest.mark.parametrize("path", sorted(CARDS_DIR.glob("*.md")), ids=lambda p: p.name)
def test_every_shipped_card_passes_the_strict_eval_results_check(path):
    parsed = parse_card(path.read_text(encoding="utf-8"), f"model_cards/{path.name}")
    for result in parsed.eval_results:
        assert set(RESULT_REQUIRED) <= set(result) <= set(RESULT_KEYS)


def test_quoted_fine_tune_results_keep_their_whole_task_text():
    results = zoo.cards.card("pretrain-gnns-graphsage-supervised-contextpred").eval_results
    assert "full fine-tune (encoder + linear head, 10 epochs, best validation epoch)" in {r["task"] for r in results}
    datasets = {r["dataset"] for r in zoo.cards.card("pretrain-gnns-gcn-contextpred").eval_results}
    assert "MoleculeNet BBBP, Bemis-Murcko scaffold split 80/10/10, test part" in datasets


def test_an_unquoted_comma_is_refused_at_load_naming_card_and_entry(tmp_path, monkeypatch):
    path = tmp_path / "comma-card.md"
    path.write_text(HEAD.format(name="comma-card", entry=UNQUOTED_COMMA))
    monkeypatch.setattr(zoo.cards, "_card_files", lambda: {"comma-card": path})
    with pytest.raises(SpecError) as err:
        zoo.cards.card("comma-card")
    message = str(err.value)
    assert "model_cards/comma-card.md eval_results[0]" in message
    assert "'10 epochs' has no value" in message
    assert "write text that contains commas in quotes" in message


@pytest.mark.parametrize("entry, error", [
    ("{" + GOOD + ", epochs: 10}", r"unknown key 'epochs'.*allowed keys: task, .*commas in quotes"),
    ("{" + GOOD.replace("value: 0.5", "value: '0.5'") + "}", r"value must be a number written without quotes"),
    ("{" + GOOD.replace(", value: 0.5", "") + "}", r"missing required key 'value'"),
    ("{" + GOOD.replace("task: vqa", "task: 3") + "}", r"task must be text, got 3; write it in quotes"),
    ("just a string", r"eval_results\[0\] must be a mapping"),
])
def test_malformed_entries_say_what_to_fix(entry, error):
    with pytest.raises(SpecError, match=error):
        parse_card(HEAD.format(name="x", entry=entry), "x.md")
