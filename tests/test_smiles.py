"""SMILES tokenizer, HF BERT-family SMILES encoder, native MoLFormer, and USPTO-50K tokenization."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.nn import functional as F
from transformers import AutoConfig, AutoModel, AutoTokenizer, BertTokenizer

from encoders.base import InvalidInputError
from encoders.smiles import (
    RXNMAPPER_ALBERT,
    SPECIAL_TOKENS,
    HFSmilesConfig,
    HFSmilesEncoder,
    HFSmilesProcessor,
    MolFormerConfig,
    MolFormerEncoder,
    MolFormerProcessor,
    SmilesTokenizer,
    build_vocab,
    find_rxnmapper_albert,
    hf_encoder,
    load_molformer_weights,
    molformer_key_map,
    tokenize_smiles,
)

CORPUS = [
    "CC(=O)Oc1ccccc1C(=O)O",
    "C[C@@H](N)C(=O)O",
    "[NH3+]CC(=O)[O-]",
    "ClCCBr.OCC>>ClCCOCC",
    "c1ccc2ccccc2c1",
    "C%12CCCCC%12",
    "[CH3:1][OH:2]",
    "C/C=C\\C#N",
]
LONG = "C" * 56 + "(=O)O"  # 61 tokens


# --- tokenizer -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("smiles", "tokens"),
    [
        ("C[C@@H](N)C(=O)O", ["C", "[C@@H]", "(", "N", ")", "C", "(", "=", "O", ")", "O"]),
        ("[NH3+]CC(=O)[O-]", ["[NH3+]", "C", "C", "(", "=", "O", ")", "[O-]"]),
        ("[CH3:1][OH:2]", ["[CH3:1]", "[OH:2]"]),
        ("ClCCBr", ["Cl", "C", "C", "Br"]),
        ("BrB", ["Br", "B"]),
        ("Sc1ccsc1", ["S", "c", "1", "c", "c", "s", "c", "1"]),
        ("C%12CC%12C1CC1", ["C", "%12", "C", "C", "%12", "C", "1", "C", "C", "1"]),
        ("C%(123)C%(123)", ["C", "%(123)", "C", "%(123)"]),
        ("CC(=O)O.OCC>>CCOC(C)=O", [*"CC(=O)O.OCC", ">>", *"CCOC(C)=O"]),
        ("CC>[Pd]>CO", ["C", "C", ">", "[Pd]", ">", "C", "O"]),
        ("*C(F)(F)F", ["*", "C", "(", "F", ")", "(", "F", ")", "F"]),
        ("C/C=C\\C#N", ["C", "/", "C", "=", "C", "\\", "C", "#", "N"]),
        ("[13CH4].[2H]O[2H]", ["[13CH4]", ".", "[2H]", "O", "[2H]"]),
        ("", []),
    ],
)
def test_hand_checked_tokenizations(smiles: str, tokens: list[str]) -> None:
    assert tokenize_smiles(smiles) == tokens


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("C C", "whitespace"),
        ("C[NH3", "never closed"),
        ("CXC", "'X'"),
        ("C\u0661C", "position 1"),
        ("CC]", "']'"),
        ("[C H4]", "whitespace ' ' at position 2"),  # inside a bracket atom too
        ("[Na\u200b+]", "(U+200B) at position 3"),
        ("CC\x00", "control character '\\x00' at position 2"),
    ],
)
def test_invalid_characters_raise_quoting_the_input(text: str, reason: str) -> None:
    with pytest.raises(InvalidInputError) as error:
        tokenize_smiles(text)
    assert repr(text) in str(error.value) and reason in str(error.value)


_ORGANIC = ["B", "Br", "C", "Cl", "N", "O", "S", "P", "F", "I", "b", "c", "n", "o", "s", "p"]
_SIMPLE = [*_ORGANIC, *"0123456789", "%10", "%99", "%(100)", ">>", *"-=#$:/\\~()+.*@?"]
_BRACKET = st.builds(
    lambda isotope, element, chirality, hydrogens, charge, atom_map: (
        f"[{isotope}{element}{chirality}{hydrogens}{charge}{atom_map}]"
    ),
    st.sampled_from(["", "2", "13"]),
    st.sampled_from(["C", "c", "N", "n", "O", "Na", "Fe", "se", "*", "H"]),
    st.sampled_from(["", "@", "@@", "@TH1"]),
    st.sampled_from(["", "H", "H2", "H3"]),
    st.sampled_from(["", "+", "-", "+2", "--"]),
    st.sampled_from(["", ":1", ":12"]),
)
_TOKEN = st.one_of(st.sampled_from(_SIMPLE), _BRACKET)


@given(st.lists(_TOKEN, max_size=40))
def test_token_compositions_tokenize_back_to_themselves(tokens: list[str]) -> None:
    # Any sequence of valid tokens (bare '>' aside: '>' '>' reads as '>>') is recovered token by token.
    assert tokenize_smiles("".join(tokens)) == tokens


@given(st.lists(st.one_of(_TOKEN, st.just(">")), max_size=40))
def test_token_compositions_with_arrows_join_back(tokens: list[str]) -> None:
    text = "".join(tokens)
    assert "".join(tokenize_smiles(text)) == text


@given(st.one_of(st.text(alphabet=st.sampled_from(list("CNOScnBrl()[]=#@+-:123%>.\\/*H X"))), st.text()))
def test_arbitrary_text_round_trips_or_raises(text: str) -> None:
    try:
        tokens = tokenize_smiles(text)
    except InvalidInputError as error:
        assert repr(text[:120]) in str(error)
    else:
        assert "".join(tokens) == text


def test_vocab_file_is_bert_format(tmp_path: Path) -> None:
    vocab = build_vocab(CORPUS)
    assert tuple(vocab[:5]) == SPECIAL_TOKENS == ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
    assert vocab[5] == "C" and "[C@@H]" in vocab and "%12" in vocab and ">>" in vocab
    assert build_vocab(reversed(CORPUS)) == vocab  # deterministic ids
    path = SmilesTokenizer(vocab).save(tmp_path)
    assert path == tmp_path / "vocab.txt"
    assert path.read_text().splitlines() == vocab
    bert = BertTokenizer(vocab=str(path), do_lower_case=False)  # transformers reads the same ids
    assert bert.convert_tokens_to_ids(vocab) == list(range(len(vocab)))
    assert SmilesTokenizer.from_file(tmp_path).vocab == vocab


def test_encode_uses_unk_for_unknown_tokens() -> None:
    tokenizer = SmilesTokenizer(build_vocab(["CCO"]))
    ids = tokenizer.token_to_id
    assert tokenizer.encode("CCO[Na+]") == [
        ids["[CLS]"],
        ids["C"],
        ids["C"],
        ids["O"],
        ids["[UNK]"],
        ids["[SEP]"],
    ]
    assert tokenizer.encode("CO", add_special_tokens=False) == [ids["C"], ids["O"]]


@pytest.mark.parametrize(
    ("vocab", "message"),
    [
        (["C", "O"], "special tokens"),
        ([*SPECIAL_TOKENS, "C", "C"], "duplicate"),
        ([*SPECIAL_TOKENS, "C C"], "whitespace"),
    ],
)
def test_bad_vocabularies_are_refused(vocab: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SmilesTokenizer(vocab)


def test_transformers_tokenizer_matches_and_reloads(tmp_path: Path) -> None:
    ours = SmilesTokenizer(build_vocab(CORPUS))
    hf = ours.to_transformers()
    hf.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    for smiles in CORPUS:
        assert hf.tokenize(smiles) == tokenize_smiles(smiles)
        assert hf(smiles)["input_ids"] == reloaded(smiles)["input_ids"] == ours.encode(smiles)
        assert hf.decode(hf(smiles)["input_ids"], skip_special_tokens=True) == smiles
    assert hf.tokenize("CC[Na+]>>CC") == ["C", "C", "[UNK]", ">>", "C", "C"]
    assert hf("CC[Na+]>>CC")["input_ids"] == ours.encode("CC[Na+]>>CC")


# --- HF BERT-family encoder ------------------------------------------------------------------------------


def _tiny_checkpoint(folder: Path, model_type: str) -> Path:
    """A tiny random ``model_type`` model plus our vocab, saved like a hub checkpoint."""
    vocab = SmilesTokenizer(build_vocab(CORPUS))
    vocab.save(folder)
    sizes = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
    config = AutoConfig.for_model(
        model_type,
        vocab_size=len(vocab),
        pad_token_id=vocab.pad_token_id,
        max_position_embeddings=66,
        **sizes,
    )
    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("model_type", ["bert", "albert", "roberta"])
def test_hf_encoder_loads_saved_checkpoint(tmp_path: Path, model_type: str) -> None:
    folder = _tiny_checkpoint(tmp_path, model_type)
    config = HFSmilesConfig(pretrained=str(folder), max_length=16, pooling="mean")
    encoder = HFSmilesEncoder(config).eval()
    saved = AutoModel.from_pretrained(folder).state_dict()
    for key, value in encoder.model.state_dict().items():
        assert torch.equal(value, saved[key]), key
    assert encoder.modality == "smiles" and encoder.hidden_size == 32

    batch = HFSmilesProcessor(config)(["CCO", LONG, "ClCCBr.OCC>>ClCCOCC"])
    assert batch.sizes == [5, 63, 17]
    assert batch.inputs["input_ids"].shape == (3, 16)
    out = encoder(**batch.inputs)
    assert out.tokens.shape == (3, 16, 32) and out.pooled.shape == (3, 32)
    assert out.mask.sum(1).tolist() == [config.num_tokens(s) for s in batch.sizes] == [5, 16, 16]


def test_hf_encoder_zoo_contract(tmp_path: Path) -> None:
    """What the zoo does: build without hub weights, save the processor's tokenizer, reload it by AutoTokenizer."""
    config = HFSmilesConfig(pretrained=str(_tiny_checkpoint(tmp_path / "ckpt", "albert")), max_length=16)
    skeleton = HFSmilesEncoder(config, load_pretrained=False)
    assert skeleton.model.state_dict().keys() == HFSmilesEncoder(config).model.state_dict().keys()
    assert HFSmilesEncoder.processor_class is HFSmilesProcessor and skeleton.num_tokens(40) == 16
    processor = HFSmilesProcessor(config)
    processor.tokenizer.save_pretrained(tmp_path / "tokenizer")
    restored = HFSmilesProcessor(config, tokenizer=AutoTokenizer.from_pretrained(tmp_path / "tokenizer"))
    for key, value in processor(CORPUS).inputs.items():
        assert torch.equal(restored(CORPUS).inputs[key], value)


def test_hf_encoder_random_init_trains(tmp_path: Path) -> None:
    SmilesTokenizer(build_vocab(CORPUS)).save(tmp_path)
    model_config = {"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                    "intermediate_size": 64, "max_position_embeddings": 32}  # fmt: skip
    config = HFSmilesConfig(model_config=model_config, vocab_file=str(tmp_path / "vocab.txt"), max_length=32)
    encoder = HFSmilesEncoder(config)
    out = encoder(**HFSmilesProcessor(config)(CORPUS[:3]).inputs)
    (out.pooled.sum() + out.tokens.sum()).backward()
    assert all(p.grad is not None for p in encoder.parameters())  # the unused pooler is gone


def test_hf_encoder_auto_tokenizer(tmp_path: Path) -> None:
    folder = _tiny_checkpoint(tmp_path, "bert")
    SmilesTokenizer.from_file(folder).to_transformers().save_pretrained(folder)
    (folder / "vocab.txt").unlink()
    config = HFSmilesConfig(pretrained=str(folder), tokenizer="auto", max_length=16)
    batch = HFSmilesProcessor(config)(["CCO", "c1ccccc1"])
    assert batch.inputs["input_ids"][0, :5].tolist() == SmilesTokenizer(build_vocab(CORPUS)).encode("CCO")
    with pytest.raises(FileNotFoundError, match="tokenizer='auto'"):
        HFSmilesProcessor(HFSmilesConfig(pretrained=str(folder)))


def test_hf_config_and_fit_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        HFSmilesConfig()
    with pytest.raises(ValueError, match="vocab_file"):
        HFSmilesConfig(model_config={"model_type": "bert"})
    with pytest.raises(ValueError, match="pooling"):
        HFSmilesConfig(pretrained="x", pooling="max")
    folder = _tiny_checkpoint(tmp_path, "roberta")
    with pytest.raises(ValueError, match="65 positions"):  # 66 minus RoBERTa's padding offset
        HFSmilesEncoder(HFSmilesConfig(pretrained=str(folder), max_length=66))


def test_processor_rejects_bad_items(tmp_path: Path) -> None:
    processor = HFSmilesProcessor(HFSmilesConfig(pretrained=str(_tiny_checkpoint(tmp_path, "bert"))))
    for bad, message in [
        (["CCO", "C C"], "item 1"),
        (["CCO", ""], "item 1"),
        ("CCO", "list"),
        ([3], "item 0"),
    ]:
        with pytest.raises(InvalidInputError, match=message):
            processor(bad)


def test_find_rxnmapper_albert_without_rxnmapper(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> None:
        raise PackageNotFoundError(name)

    monkeypatch.setattr(hf_encoder, "distribution", not_installed)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps rxnmapper"):
        find_rxnmapper_albert()


@pytest.fixture(scope="module")
def rxnmapper_albert() -> Path:
    try:
        return find_rxnmapper_albert()
    except FileNotFoundError as error:
        pytest.skip(f"rxnmapper not installed ({error})")


def test_rxnmapper_albert_loads(rxnmapper_albert: Path) -> None:
    assert {"config.json", "pytorch_model.bin", "vocab.txt"} <= {p.name for p in rxnmapper_albert.iterdir()}
    config = HFSmilesConfig(pretrained=RXNMAPPER_ALBERT)
    encoder = HFSmilesEncoder(config).eval()
    assert encoder.hidden_size == 256 and encoder.model.config.model_type == "albert"
    reactions = ["CC(=O)Cl.OCC>>CC(=O)OCC", "[NH3+]CC(=O)[O-].C[C@@H](N)C(=O)O>>NCC(=O)N[C@@H](C)C(=O)O"]
    processor = HFSmilesProcessor(config)
    batch = processor(reactions)
    assert (batch.inputs["input_ids"] != processor.tokenizer.unk_token_id).all()
    with torch.no_grad():
        out = encoder(**batch.inputs)
    assert out.mask.sum(1).tolist() == batch.sizes and torch.isfinite(out.pooled).all()


# --- MoLFormer -------------------------------------------------------------------------------------------


def _molformer_config(**overrides: object) -> MolFormerConfig:
    sizes = {"vocab_size": len(build_vocab(CORPUS)), "hidden_size": 32, "num_layers": 2, "num_heads": 4,
             "intermediate_size": 48, "max_length": 64, "num_random_features": 12}  # fmt: skip
    return MolFormerConfig(**{**sizes, **overrides})


@pytest.mark.parametrize("feature_map", ["elu", "random_relu"])
def test_molformer_forward_backward_and_padding(tmp_path: Path, feature_map: str) -> None:
    SmilesTokenizer(build_vocab(CORPUS)).save(tmp_path)
    config = _molformer_config(vocab_file=str(tmp_path / "vocab.txt"), feature_map=feature_map)
    processor, encoder = MolFormerProcessor(config), MolFormerEncoder(config)
    batch = processor(["CCO", LONG])
    out = encoder(**batch.inputs)
    assert out.tokens.shape == (2, 63, 32) and out.mask.sum(1).tolist() == [5, 63] == batch.sizes
    out.pooled.pow(2).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in encoder.parameters())

    encoder.eval()  # padding must not change the real tokens' features
    with torch.no_grad():
        alone = encoder(**processor(["CCO"]).inputs)
        padded = encoder(**batch.inputs)
    torch.testing.assert_close(padded.tokens[0, :5], alone.tokens[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(padded.pooled[0], alone.pooled[0], rtol=1e-5, atol=1e-5)


def test_molformer_processor_vocab_and_saved_tokenizer(tmp_path: Path) -> None:
    SmilesTokenizer(build_vocab(CORPUS)).save(tmp_path)
    config = _molformer_config(vocab_file=str(tmp_path / "vocab.txt"))
    processor = MolFormerProcessor(config)
    processor.tokenizer.save_pretrained(tmp_path / "tokenizer")
    restored = MolFormerProcessor(config, tokenizer=AutoTokenizer.from_pretrained(tmp_path / "tokenizer"))
    assert torch.equal(restored(CORPUS).inputs["input_ids"], processor(CORPUS).inputs["input_ids"])
    assert MolFormerEncoder.processor_class is MolFormerProcessor
    with pytest.raises(ValueError, match="make them agree"):
        MolFormerProcessor(_molformer_config(vocab_size=99, vocab_file=str(tmp_path / "vocab.txt")))


def _ibm_state_dict(vocab: int, hidden: int, layers: int, inter: int, heads: int, features: int) -> dict:
    """Random tensors with the key layout and shapes of IBM's HF ``MolformerForMaskedLM``."""
    shapes = {"molformer.embeddings.word_embeddings.weight": (vocab, hidden)}
    for i in range(layers):
        p = f"molformer.encoder.layer.{i}."
        for name in ("query", "key", "value"):
            shapes |= {
                f"{p}attention.self.{name}.weight": (hidden, hidden),
                f"{p}attention.self.{name}.bias": (hidden,),
            }
        shapes |= {
            f"{p}attention.self.feature_map.weight": (hidden // heads, features),
            f"{p}attention.output.dense.weight": (hidden, hidden),
            f"{p}attention.output.dense.bias": (hidden,),
            f"{p}attention.output.LayerNorm.weight": (hidden,),
            f"{p}attention.output.LayerNorm.bias": (hidden,),
            f"{p}intermediate.dense.weight": (inter, hidden),
            f"{p}intermediate.dense.bias": (inter,),
            f"{p}output.dense.weight": (hidden, inter),
            f"{p}output.dense.bias": (hidden,),
            f"{p}output.LayerNorm.weight": (hidden,),
            f"{p}output.LayerNorm.bias": (hidden,),
        }
    shapes |= {
        "molformer.LayerNorm.weight": (hidden,),
        "molformer.LayerNorm.bias": (hidden,),
        "lm_head.transform.dense.weight": (hidden, hidden),
        "lm_head.transform.dense.bias": (hidden,),
        "lm_head.transform.LayerNorm.weight": (hidden,),
        "lm_head.transform.LayerNorm.bias": (hidden,),
        "lm_head.decoder.weight": (vocab, hidden),
    }
    generator = torch.Generator().manual_seed(0)
    return {key: torch.randn(shape, generator=generator) * 0.2 for key, shape in shapes.items()}


def _ibm_reference(sd: dict, ids: torch.Tensor, mask: torch.Tensor, heads: int, layers: int) -> torch.Tensor:
    """IBM's MoLFormer forward (eval mode) written directly against their keys."""

    def linear(x: torch.Tensor, name: str) -> torch.Tensor:
        return F.linear(x, sd[f"{name}.weight"], sd[f"{name}.bias"])

    def norm(x: torch.Tensor, name: str) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], sd[f"{name}.weight"], sd[f"{name}.bias"], eps=1e-12)

    x = sd["molformer.embeddings.word_embeddings.weight"][ids]
    b, n, d = x.shape
    head = d // heads
    inv_freq = 1.0 / 10000 ** (torch.arange(0, head, 2).float() / head)
    freqs = torch.einsum("i,j->ij", torch.arange(n).float(), inv_freq)
    cos, sin = torch.cat((freqs, freqs), -1).cos(), torch.cat((freqs, freqs), -1).sin()

    def rope(t: torch.Tensor) -> torch.Tensor:
        t1, t2 = t[..., : head // 2], t[..., head // 2 :]
        return t * cos + torch.cat((-t2, t1), -1) * sin

    for i in range(layers):
        p = f"molformer.encoder.layer.{i}."
        q, k, v = (
            linear(x, f"{p}attention.self.{m}").view(b, n, heads, head).transpose(1, 2)
            for m in ("query", "key", "value")
        )
        w = sd[f"{p}attention.self.feature_map.weight"]
        q, k = torch.relu(rope(q) @ w), torch.relu(rope(k) @ w) * mask[:, None, :, None]
        context = (q @ (k.transpose(-1, -2) @ v)) / (q @ k.sum(-2).unsqueeze(-1)).clamp(min=1e-6)
        context = context.transpose(1, 2).reshape(b, n, d)
        x = norm(linear(context, f"{p}attention.output.dense") + x, f"{p}attention.output.LayerNorm")
        ffn = linear(F.gelu(linear(x, f"{p}intermediate.dense")), f"{p}output.dense")
        x = norm(ffn + x, f"{p}output.LayerNorm")
    return norm(x, "molformer.LayerNorm")


def test_molformer_key_map_loads_ibm_layout() -> None:
    config = _molformer_config(feature_map="random_relu")
    sd = _ibm_state_dict(config.vocab_size, 32, 2, 48, 4, 12)
    mapped = molformer_key_map(sd)
    heads = [key for key in sd if key.startswith("lm_head")]
    assert heads and all(mapped[key] is None for key in heads)  # dropped on purpose, by name
    encoder = MolFormerEncoder(config).eval()
    load_molformer_weights(encoder, sd)
    assert torch.equal(
        encoder.layers[1].attn.feature_map.projection,
        sd["molformer.encoder.layer.1.attention.self.feature_map.weight"],
    )

    ids = torch.tensor([[2, 5, 6, 7, 8, 3], [2, 9, 5, 3, 0, 0]])
    mask = ids != 0
    with torch.no_grad():
        ours = encoder(input_ids=ids, attention_mask=mask.long()).tokens
    reference = _ibm_reference(sd, ids, mask.float(), heads=4, layers=2)
    torch.testing.assert_close(ours[mask], reference[mask], rtol=1e-4, atol=1e-4)


def test_molformer_key_map_is_strict() -> None:
    config = _molformer_config(feature_map="random_relu")
    sd = _ibm_state_dict(config.vocab_size, 32, 2, 48, 4, 12)
    with pytest.raises(ValueError, match="molformer.encoder.layer.0.attention.self.extra"):
        molformer_key_map({**sd, "molformer.encoder.layer.0.attention.self.extra": torch.zeros(1)})
    incomplete = {k: v for k, v in sd.items() if k != "molformer.encoder.layer.1.output.dense.bias"}
    with pytest.raises(ValueError, match=r"missing \['layers.1.ffn_out.bias'\]"):
        load_molformer_weights(MolFormerEncoder(config), incomplete)
    with pytest.raises(ValueError, match="feature_map='random_relu'"):
        load_molformer_weights(MolFormerEncoder(_molformer_config()), sd)  # elu has no projection buffers


# --- USPTO-50K ---------------------------------------------------------------------------------------------


def test_uspto50k_round_trip_and_dataset_spacing(shared_dir: Path) -> None:
    """Every USPTO-50K product and reactant set tokenizes back to itself.

    The dataset's own spacing is one token per character (``[ C @ @ H ]``, ``C l``), not Schwaller's
    regex: it agrees with ours exactly on the strings with no bracket atom, Cl or Br, and on the others
    differs only in splitting those tokens into characters.
    """
    strings = differ = 0
    for path in sorted((shared_dir / "data" / "uspto50k").glob("*-*.txt")):
        for line in path.read_text().splitlines():
            spaced = line.split()
            if path.name.startswith("src-"):
                assert spaced[0].startswith("<RX_") and spaced[0].endswith(">")
                spaced = spaced[1:]
            smiles = "".join(spaced)
            tokens = tokenize_smiles(smiles)
            assert "".join(tokens) == smiles
            assert spaced == list(smiles)  # the dataset splits into characters
            strings += 1
            if tokens != spaced:
                differ += 1
                assert all(len(t) == 1 or t in ("Cl", "Br") or t.startswith("[") for t in tokens)
    assert strings == 2 * (40_029 + 5_004 + 5_004)
    assert differ == 61_356  # strings with a bracket atom, Cl or Br
