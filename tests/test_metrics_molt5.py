"""The ``molt5`` profile of the text -> molecule metrics and the caption BLEU tokenisers, on hand-computed cases.

MolT5's evaluation (github.com/blender-nlp/MolT5, ``evaluation/``) compares standard InChI, averages MACCS /
RDK / Morgan-count Tanimoto over the predictions RDKit parses (``''`` parses to an empty molecule) and
tokenises captions with SciBERT's WordPiece for BLEU. No test here needs the network: the SciBERT path runs on
a tiny WordPiece vocabulary written to ``tmp_path``.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rdkit import Chem, DataStructs
from rdkit.Chem import MACCSkeys, rdFingerprintGenerator
from rdkit.rdBase import BlockLogs

from tasks.config import TaskConfig
from tasks.metrics import (
    CaptionScores,
    TokenizerNotFoundError,
    canonicalize_smiles,
    caption_bleu,
    caption_metrics,
    load_scibert_tokenizer,
    molecule_exact_matches,
    molecule_generation_metrics,
    scibert_tokenize,
)
from tasks.metrics.molecule_generation import MOLT5_KEYS
from zoo.evaluation import scoring
from zoo.evaluation.evaluate import METRICS

STRICT_KEYS = {
    "smiles_char_bleu4",
    "canonical_exact_match",
    "mean_levenshtein",
    "validity",
    "num_invalid",
    *(f"{fp}_tanimoto{suffix}" for fp in ("maccs", "rdk", "morgan2_2048") for suffix in ("", "_valid_only")),
}

# Drug-like molecules with a few heavy atoms each (so every fingerprint has bits set).
MOLECULES = [
    "CC(=O)Oc1ccccc1C(=O)O",
    "CN1C=NC2=C1C(=O)N(C(=O)N2C)C",
    "Oc1ccccn1",
    "C[C@H](N)C(=O)O",
    "C/C=C/C(=O)OCC",
    "c1ccc2ccccc2c1",
    "OC[C@H]1OC(O)[C@H](O)[C@@H](O)[C@@H]1O",
    "CC(C)Cc1ccc(cc1)C(C)C(=O)O",
    "[Na+].[O-]C(=O)c1ccccc1",
    "NC(=O)c1cccnc1",
]


def _inchi(smiles: str) -> str:
    with BlockLogs():
        return Chem.MolToInchi(Chem.MolFromSmiles(smiles))


# --- InChI exact match -------------------------------------------------------------------------------------


def test_tautomers_and_metal_bonding_match_by_inchi_but_not_by_canonical_smiles() -> None:
    pairs = [
        ("O=c1cccc[nH]1", "Oc1ccccn1"),  # 2-pyridone / 2-hydroxypyridine: one mobile-H InChI
        ("[Na]Cl", "[Na+].[Cl-]"),  # standard InChI disconnects the metal
        ("CC=O", "OC=C"),  # keto / enol: standard InChI keeps them apart
        ("CCO", "OCC"),  # the same molecule written two ways
    ]
    for prediction, reference in pairs[:2]:  # the premise, checked with RDKit itself
        assert canonicalize_smiles(prediction) != canonicalize_smiles(reference)
        assert _inchi(prediction) == _inchi(reference)
    predictions, references = [p for p, _ in pairs], [r for _, r in pairs]
    assert molecule_exact_matches(predictions, references, profile="molt5") == [1.0, 1.0, 0.0, 1.0]
    assert molecule_exact_matches(predictions, references) == [0.0, 0.0, 0.0, 1.0]
    molt5 = molecule_generation_metrics(predictions, references, profile="molt5")
    strict = molecule_generation_metrics(predictions, references)
    assert molt5["molt5_exact_match"] == 3 / 4
    assert strict["canonical_exact_match"] == 1 / 4


def test_molt5_exact_match_compares_inchi_strings_even_when_inchi_fails() -> None:
    # RDKit parses '' to an empty molecule and a '*' atom has no InChI: both InChI strings are '', so MolT5
    # counts the empty prediction as an exact match. The strict profile does not.
    assert _inchi("") == _inchi("*C") == ""
    assert molecule_exact_matches([""], ["*C"], profile="molt5") == [1.0]
    assert molecule_exact_matches([""], ["*C"]) == [0.0]


# --- Morgan counts vs bits ---------------------------------------------------------------------------------


def test_morgan_count_vs_bit_tanimoto_hand_computed() -> None:
    # Ethane: CH3 (radius 0) x2, and one radius-1 environment (both CH3 share one bond, kept once) -> 3 counts.
    # Propane: CH3 x2, CH2 x1, CH3-radius-1 x2, CH2-radius-1 x1 (radius 2 adds no new bond set) -> 6 counts.
    # Shared: CH3 radius 0, min(2, 2) = 2. Counts: 2 / (3 + 6 - 2) = 2/7. Bits: 1 shared of 2 + 4 - 1 = 1/5.
    molt5 = molecule_generation_metrics(["CC"], ["CCC"], profile="molt5")
    strict = molecule_generation_metrics(["CC"], ["CCC"])
    assert molt5["molt5_morgan_fts"] == pytest.approx(2 / 7)
    assert strict["morgan2_2048_tanimoto"] == pytest.approx(1 / 5)


def _legacy_morgan_counts(mol: Chem.Mol) -> object:
    from rdkit.Chem import AllChem

    if not hasattr(AllChem, "GetMorganFingerprint"):
        pytest.skip("this RDKit no longer has AllChem.GetMorganFingerprint")
    with BlockLogs(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AllChem.GetMorganFingerprint(mol, 2)


def test_fingerprint_similarities_equal_rdkit_datastructs_as_molt5_calls_them() -> None:
    predictions = MOLECULES[1:] + MOLECULES[:1]  # every prediction another molecule
    metrics = molecule_generation_metrics(predictions, MOLECULES, profile="molt5")
    maccs, rdk, morgan, bits = [], [], [], []
    bit_generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    for p, r in zip(predictions, MOLECULES, strict=True):
        out, ref = Chem.MolFromSmiles(p), Chem.MolFromSmiles(r)
        maccs.append(DataStructs.TanimotoSimilarity(MACCSkeys.GenMACCSKeys(ref), MACCSkeys.GenMACCSKeys(out)))
        rdk.append(DataStructs.TanimotoSimilarity(Chem.RDKFingerprint(ref), Chem.RDKFingerprint(out)))
        legacy_ref, legacy_out = _legacy_morgan_counts(ref), _legacy_morgan_counts(out)
        morgan.append(DataStructs.TanimotoSimilarity(legacy_ref, legacy_out))
        ref_bits, out_bits = bit_generator.GetFingerprint(ref), bit_generator.GetFingerprint(out)
        bits.append(DataStructs.TanimotoSimilarity(ref_bits, out_bits))
    assert metrics["molt5_maccs_fts"] == pytest.approx(sum(maccs) / len(maccs))
    assert metrics["molt5_rdk_fts"] == pytest.approx(sum(rdk) / len(rdk))
    assert metrics["molt5_morgan_fts"] == pytest.approx(sum(morgan) / len(morgan))
    strict = molecule_generation_metrics(predictions, MOLECULES)
    assert strict["morgan2_2048_tanimoto"] == pytest.approx(sum(bits) / len(bits))
    assert strict["morgan2_2048_tanimoto"] != pytest.approx(metrics["molt5_morgan_fts"])


# --- empty and invalid predictions --------------------------------------------------------------------------


def test_empty_prediction_is_valid_in_molt5_and_invalid_in_strict() -> None:
    predictions, references = ["", "CCO"], ["CCO", "CCO"]
    molt5 = molecule_generation_metrics(predictions, references, profile="molt5")
    assert molt5["molt5_validity"] == 1.0 and molt5["molt5_num_invalid"] == 0.0
    assert molt5["molt5_exact_match"] == 0.5
    for name in ("maccs", "rdk", "morgan"):
        assert molt5[f"molt5_{name}_fts"] == 0.5  # the empty molecule is averaged in, scoring 0
    assert molt5["molt5_levenshtein"] == 1.5  # ('' -> 'CCO') 3, then 0
    strict = molecule_generation_metrics(predictions, references)
    assert strict["validity"] == 0.5 and strict["num_invalid"] == 1.0
    assert strict["canonical_exact_match"] == 0.5
    for name in ("maccs", "rdk", "morgan2_2048"):
        assert strict[f"{name}_tanimoto"] == 0.5
        assert strict[f"{name}_tanimoto_valid_only"] == 1.0


def test_unparsable_and_failed_predictions_are_invalid_in_molt5() -> None:
    m = molecule_generation_metrics(["C(", None], ["CC", "CCO"], profile="molt5")
    assert m["molt5_validity"] == 0.0 and m["molt5_num_invalid"] == 2.0
    assert m["molt5_exact_match"] == 0.0
    assert m["molt5_levenshtein"] == (1 + 3) / 2  # None is the empty string here
    assert all(math.isnan(m[f"molt5_{name}_fts"]) for name in ("maccs", "rdk", "morgan"))  # np.mean([]) in MolT5


def test_molt5_bleu_and_levenshtein_are_the_strict_ones() -> None:
    predictions, references = ["CCO", "c1ccccc1", "C("], ["CCN", "c1ccccc1O", "CC"]
    molt5 = molecule_generation_metrics(predictions, references, profile="molt5")
    strict = molecule_generation_metrics(predictions, references)
    assert molt5["molt5_bleu"] == strict["smiles_char_bleu4"]
    assert molt5["molt5_levenshtein"] == strict["mean_levenshtein"] == (1 + 1 + 1) / 3


def test_profiles_have_separate_keys_and_strict_keys_are_unchanged() -> None:
    assert set(molecule_generation_metrics(["CCO"], ["CCO"])) == STRICT_KEYS
    molt5 = molecule_generation_metrics(["CCO"], ["CCO"], profile="molt5")
    assert tuple(molt5) == MOLT5_KEYS
    assert all(key.startswith("molt5_") for key in molt5)


def test_bad_profile_names_the_allowed_ones() -> None:
    for call in (molecule_generation_metrics, molecule_exact_matches):
        with pytest.raises(ValueError, match=r"unknown molecule_generation profile 'MolT5'.*'strict'.*'molt5'"):
            call(["C"], ["C"], profile="MolT5")
    with pytest.raises(ValueError, match="allowed profiles"):
        scoring.molecule_generation(["C"], ["C"], profile=None)


def test_references_must_parse_in_both_profiles() -> None:
    for profile in ("strict", "molt5"):
        with pytest.raises(ValueError, match=r"reference 1 \('C1CC'\) is not a valid SMILES"):
            molecule_generation_metrics(["C", "C"], ["C", "C1CC"], profile=profile)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(MOLECULES), st.sampled_from(MOLECULES), st.integers(0, 2**16))
def test_molt5_exact_match_is_symmetric_and_finds_any_spelling(first: str, second: str, seed: int) -> None:
    assert molecule_exact_matches([first], [second], profile="molt5") == molecule_exact_matches(
        [second], [first], profile="molt5"
    )
    assert molecule_exact_matches([first], [second], profile="molt5") == [float(first == second)]
    spelling = Chem.MolToRandomSmilesVect(Chem.MolFromSmiles(first), 1, randomSeed=seed)[0]
    m = molecule_generation_metrics([spelling], [first], profile="molt5")
    assert m["molt5_exact_match"] == 1.0 and m["molt5_validity"] == 1.0
    assert m["molt5_maccs_fts"] == m["molt5_rdk_fts"] == m["molt5_morgan_fts"] == 1.0


# --- scoring: the task's metric_options -------------------------------------------------------------------


def test_task_metric_options_choose_the_profile_and_results_name_it() -> None:
    task = TaskConfig(name="t2m", kind="generate", metric="molecule_generation", metric_options={"profile": "molt5"})
    predictions, references = [["O=c1cccc[nH]1"], None, ""], ["Oc1ccccn1", "CCO", "CCO"]
    scores = METRICS[task.metric](predictions, references, **task.metric_options)
    assert set(scores.summary) == set(MOLT5_KEYS)
    assert scores.per_row == [1.0, 0.0, 0.0]
    assert scores.summary["molt5_validity"] == 2 / 3  # the failed row is invalid, the empty output valid
    default = METRICS[task.metric](predictions, references)
    assert set(default.summary) == STRICT_KEYS
    assert default.per_row == [0.0, 0.0, 0.0]
    assert default.summary["validity"] == 1 / 3


# --- caption tokenisers -----------------------------------------------------------------------------------

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "molecule", "is", "an", "acid", "##ic", "alcohol", "."]


@pytest.fixture()
def wordpiece_dir(tmp_path: Path) -> Path:
    """A folder laid out like SciBERT's on the Hub (config.json + vocab.txt), with a tiny vocabulary."""
    folder = tmp_path / "tiny-scibert"
    folder.mkdir()
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    (folder / "config.json").write_text('{"model_type": "bert"}', encoding="utf-8")
    return folder


def test_default_caption_tokenizer_is_named_and_keys_are_unchanged() -> None:
    scores = caption_metrics(["the cat sat"], ["the cat sat"])
    assert isinstance(scores, CaptionScores)
    assert set(scores) == set(scores.tokenizers) == {
        "bleu2", "bleu4", "rouge1_f_no_stemming", "rouge2_f_no_stemming", "rougeL_f_no_stemming", "meteor_exact",
    }
    assert all(name.startswith("words") for name in scores.tokenizers.values())
    bleu = caption_bleu(["a"], ["a"])
    assert bleu.tokenizers == {key: scores.tokenizers[key] for key in ("bleu2", "bleu4")}


def test_scibert_tokenize_truncates_to_512_and_drops_special_tokens(wordpiece_dir: Path) -> None:
    from transformers import BertTokenizerFast

    tokenizer = BertTokenizerFast.from_pretrained(str(wordpiece_dir), local_files_only=True)
    assert scibert_tokenize("[CLS] The molecule is acidic. [SEP]", tokenizer) == [
        "the", "molecule", "is", "acid", "##ic", ".",
    ]
    assert scibert_tokenize("the " * 600, tokenizer) == ["the"] * 512
    # A [SEP] inside the first 512 pieces still takes a place before it is dropped, as in MolT5.
    assert len(scibert_tokenize("[SEP] " + "the " * 600, tokenizer)) == 511


def test_scibert_bleu_uses_word_pieces_and_names_them(wordpiece_dir: Path) -> None:
    from transformers import BertTokenizerFast

    tokenizer = BertTokenizerFast.from_pretrained(str(wordpiece_dir), local_files_only=True)
    # Word pieces: hyp [acid, ##ic], ref [acid, ##ic, alcohol]: p1 = p2 = 1, BP = exp(1 - 3/2).
    scibert = caption_bleu(["acidic"], ["acidic alcohol"], tokenizer=tokenizer)
    assert set(scibert) == {"bleu2_scibert", "bleu4_scibert"}
    assert scibert["bleu2_scibert"] == pytest.approx(math.exp(-0.5))
    assert all(name.startswith("scibert: WordPiece") for name in scibert.tokenizers.values())
    # Words: hyp [acidic] has no bigram, so BLEU-2 is vanishingly small.
    assert caption_bleu(["acidic"], ["acidic alcohol"])["bleu2"] < 1e-100
    loaded = load_scibert_tokenizer(wordpiece_dir)
    both = caption_metrics(["acidic"], ["acidic alcohol"], bleu_tokenizer=loaded)
    assert both["bleu2_scibert"] == scibert["bleu2_scibert"]
    assert both.tokenizers["bleu2_scibert"] == f"scibert: WordPiece ({wordpiece_dir})"
    assert both.tokenizers["meteor_exact"].startswith("words")


def test_scoring_reads_the_tokenizer_from_metric_options(wordpiece_dir: Path) -> None:
    options = {"bleu_tokenizer": "scibert", "scibert_path": str(wordpiece_dir)}  # as a task's metric_options
    scores = scoring.captioning(["acidic"], [["acidic alcohol"]], **options)
    assert scores.summary["bleu2_scibert"] == pytest.approx(math.exp(-0.5))
    assert "bleu2" not in scores.summary
    with pytest.raises(ValueError, match="scibert_path is only read with bleu_tokenizer: scibert"):
        scoring.captioning(["a"], ["a"], scibert_path=str(wordpiece_dir))


def test_missing_scibert_is_a_clear_error_with_the_download_command(tmp_path: Path) -> None:
    for name in (str(tmp_path / "no-such-folder"), "modalzoo-tests/no-such-tokenizer"):
        with pytest.raises(TokenizerNotFoundError, match="huggingface-cli download allenai/scibert_scivocab_uncased"):
            load_scibert_tokenizer(name)
    assert issubclass(TokenizerNotFoundError, FileNotFoundError)  # the CLI prints it as one line


def test_unknown_caption_tokenizer() -> None:
    with pytest.raises(ValueError, match="unknown caption tokenizer 'bert'.*'words'.*'scibert'"):
        caption_bleu(["a"], ["a"], tokenizer="bert")
