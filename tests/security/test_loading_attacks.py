"""Loading attacks from the hostile-input probe: each asserts that nothing was written outside the cache,
nothing was imported, and nothing was loaded."""

from __future__ import annotations

import functools
import http.server
import json
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import zoo
from zoo import registry
from zoo.cards import ModelCard, WeightSource, parse_card
from zoo.errors import UnsafePathError, WeightsError
from zoo.io import default_file_mode, load_safetensors, sha256_file
from zoo.loading import refuse_remote_code
from zoo.spec import SpecError
from zoo.weights import fetch_weights

TINY_GCN = {
    "type": "encoder",
    "modality": "molecule_graph",
    "encoder": {"type": "gnn", "config": {"gnn_type": "gcn", "num_layers": 2, "hidden_size": 8}},
}


def identity_key_map(state: dict) -> dict:
    """A key map a user registers in code (the way a card's key_map must be provided)."""
    return {key: key for key in state}


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@pytest.fixture()
def sandbox(tmp_path, monkeypatch) -> Iterator[Path]:
    """A cache inside ``tmp_path``; after the test, no file may exist outside ``tmp_path/cache`` that the
    test did not make itself (checked by the tests through ``_files``)."""
    monkeypatch.setenv("MODALZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setitem(registry.BUILTINS["key_map"], "test-identity", f"{__name__}:identity_key_map")
    yield tmp_path


@pytest.fixture(scope="module")
def tiny_state() -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in zoo.build(TINY_GCN).state_dict().items()}


def card_text(weights: list[dict], spec: dict = TINY_GCN) -> str:
    meta = {"name": "hostile", "description": "a card from the Hub", "license": "mit", "spec": spec, "weights": weights}
    return "---\n" + json.dumps(meta) + "\n---\n\nbody\n"


def hostile_card(weights: list[dict], spec: dict = TINY_GCN) -> ModelCard:
    return parse_card(card_text(weights, spec), "hostile.md")


# --- file names that leave their root ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../../escaped.safetensors", "/tmp/escaped.safetensors", "a/../../escaped.bin",
                                  "..\\..\\escaped.bin", "C:\\escaped.bin", "~/escaped.bin", ""])
def test_a_card_file_name_that_leaves_its_root_is_refused_before_anything_is_written(sandbox, name):
    before = _files(sandbox.parent)
    with pytest.raises(UnsafePathError):
        hostile_card([{"file": name, "sha256": "0" * 64, "url": "https://example.org/w.safetensors"}])
    assert _files(sandbox.parent) == before


def test_a_file_url_is_refused(sandbox):
    with pytest.raises(SpecError, match="must be https or http"):
        hostile_card([{"file": "w.safetensors", "sha256": "0" * 64, "url": f"file://{sandbox}/w.safetensors"}])


@pytest.mark.parametrize("field", ["hf_filename"])
def test_a_hub_file_name_that_leaves_the_repo_is_refused(sandbox, field):
    with pytest.raises(UnsafePathError):
        hostile_card([{"file": "w.safetensors", "sha256": "0" * 64, "hf_repo": "org/repo", field: "../../x"}])


def test_a_bundled_file_cannot_be_read_from_outside_model_cards(sandbox):
    outside = sandbox / "secret.safetensors"
    save_file({"x": torch.zeros(1)}, str(outside))
    import model_cards

    relative = os.path.relpath(outside, Path(model_cards.__file__).parent)
    with pytest.raises(UnsafePathError):
        WeightSource(file=relative, sha256=sha256_file(outside), bundled=True)


def test_a_bundled_symlink_leaving_model_cards_is_refused(sandbox):
    import model_cards

    outside = sandbox / "secret.safetensors"
    save_file({"x": torch.zeros(1)}, str(outside))
    link = Path(model_cards.__file__).parent / "weights" / "zz-test-link.safetensors"
    link.symlink_to(outside)
    try:
        source = WeightSource(file="weights/zz-test-link.safetensors", sha256=sha256_file(outside), bundled=True)
        with pytest.raises(UnsafePathError, match="outside"):
            fetch_weights(source)
    finally:
        link.unlink()


def test_a_weights_dir_symlink_leaving_the_folder_is_refused(sandbox, tiny_state):
    outside = sandbox / "elsewhere" / "w.safetensors"
    outside.parent.mkdir()
    save_file(tiny_state, str(outside))
    folder = sandbox / "weights"
    folder.mkdir()
    (folder / "w.safetensors").symlink_to(outside)
    card = hostile_card([{"file": "w.safetensors", "sha256": sha256_file(outside), "url": "https://example.org/w"}])
    with pytest.raises(UnsafePathError, match="outside"):
        zoo.load(card, weights_dir=folder)


@pytest.mark.parametrize("name", ["../outside.safetensors", "/etc/hostname"])
def test_config_json_weights_file_cannot_leave_the_model_directory(sandbox, tiny_state, name):
    outside = sandbox / "outside.safetensors"
    save_file(tiny_state, str(outside))
    model_dir = sandbox / "model"
    zoo.build(TINY_GCN).save_pretrained(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    config["weights"]["file"] = name
    (model_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsafePathError):
        zoo.load(model_dir)


def test_config_json_files_list_cannot_name_a_path_outside_the_repo(sandbox, monkeypatch, tiny_state):
    """``hf-hub:`` fetches every file config.json lists: a listed ``../`` is refused before any fetch."""
    model_dir = sandbox / "model"
    zoo.build(TINY_GCN).save_pretrained(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    config["files"].append("../../.bashrc")
    (model_dir / "config.json").write_text(json.dumps(config))
    fetched = []

    def fake_hub_file(repo, filename, revision, local_only=False):
        fetched.append(filename)
        return model_dir / filename

    monkeypatch.setattr("zoo.loading.hub_file", fake_hub_file)
    with pytest.raises(UnsafePathError, match=r"\.\./\.\./\.bashrc"):
        zoo.load("hf-hub:org/model")
    assert "../../.bashrc" not in fetched


# --- downloads: temporary file, sha256, then rename ---------------------------------------------------------


@pytest.fixture()
def http_root(tmp_path) -> Iterator[tuple[Path, str]]:
    """A loopback HTTP server over a folder (the only network a test may use)."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_download_with_the_wrong_sha256_leaves_nothing_behind(sandbox, http_root, monkeypatch, tiny_state):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    root, base = http_root
    save_file(tiny_state, str(root / "w.safetensors"))
    card = hostile_card([{"file": "w.safetensors", "sha256": "1" * 64, "url": f"{base}/w.safetensors"}])
    with pytest.raises(WeightsError, match="nothing was kept"):
        zoo.load(card)
    assert not (sandbox / "cache").exists() or _files(sandbox / "cache") == set()


def test_a_good_download_is_kept_readable_and_reverified(sandbox, http_root, monkeypatch, tiny_state):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    root, base = http_root
    served = root / "w.safetensors"
    save_file(tiny_state, str(served))
    card = hostile_card([{"file": "w.safetensors", "sha256": sha256_file(served), "url": f"{base}/w.safetensors"}])
    model = zoo.load(card)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in tiny_state.items())
    (cached,) = (sandbox / "cache" / "downloads").rglob("*.safetensors")
    assert cached.stat().st_mode & 0o777 == default_file_mode()  # not mkstemp's 0600
    cached.write_bytes(cached.read_bytes()[:-10])  # truncated in the cache: fetched again, with a warning
    with pytest.warns(UserWarning, match="cached download failed its check"):
        zoo.load(card)
    assert sha256_file(cached) == sha256_file(served)


# --- no card field imports code -----------------------------------------------------------------------------


@pytest.mark.parametrize("key_map", ["evilmod:km", "builtins:print", "os:system", "evilmod.km", "../evilmod"])
def test_a_card_key_map_never_imports_a_module(sandbox, monkeypatch, key_map):
    evil = sandbox / "evilmod.py"
    marker = sandbox / "imported"
    evil.write_text(f"open({str(marker)!r}, 'w').write('ran')\ndef km(state):\n    return {{k: k for k in state}}\n")
    torch.save({"w": torch.ones(1)}, sandbox / "w.pth")
    monkeypatch.syspath_prepend(str(sandbox))
    monkeypatch.chdir(sandbox)
    with pytest.raises((SpecError, registry.UnknownComponentError)) as err:
        card = hostile_card([{"file": "w.pth", "sha256": sha256_file(sandbox / "w.pth"), "format": "torch-pickle",
                              "key_map": key_map, "url": "https://example.org/w.pth"}])
        fetch_weights(card.weights[0], sandbox)
    assert "registered key map" in str(err.value) or "no key_map named" in str(err.value)
    assert not marker.exists() and "evilmod" not in sys.modules
    assert not (sandbox / "cache").exists()  # nothing converted, nothing loaded


def test_an_unknown_key_map_name_lists_the_registered_ones(sandbox):
    from zoo.weights.key_maps import resolve_key_map

    with pytest.raises(registry.UnknownComponentError, match="hf-masked-lm"):
        resolve_key_map("hf-masked-lmm", "a card")


def test_a_spec_that_asks_for_remote_code_is_refused_unless_the_caller_allows_it(sandbox):
    spec = {
        "type": "encoder",
        "modality": "text",
        "encoder": {"type": "hf-text", "config": {"pretrained": "org/model", "trust_remote_code": True}},
    }
    card = hostile_card([], spec)
    with pytest.raises(SpecError, match=r"spec\.encoder\.config\.trust_remote_code"):
        zoo.load(card)
    refuse_remote_code(card.spec, "hostile.md", trust_remote_code=True)  # the caller's own choice


def test_config_json_asking_for_remote_code_is_refused(sandbox):
    model_dir = sandbox / "model"
    zoo.build(TINY_GCN).save_pretrained(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    config["spec"]["encoder"]["config"]["trust_remote_code"] = True
    (model_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(SpecError, match=r"spec\.encoder\.config\.trust_remote_code"):
        zoo.load(model_dir)


def test_yaml_tags_in_a_card_are_refused(sandbox):
    import yaml

    text = "---\nname: !!python/object/apply:os.system ['touch pwned']\ndescription: x\nlicense: mit\nspec: {}\n---\n"
    with pytest.raises(yaml.YAMLError):
        parse_card(text, "hostile.md")
    assert not (Path.cwd() / "pwned").exists()


# --- field types --------------------------------------------------------------------------------------------


def test_a_sha256_that_yaml_reads_as_a_number_says_to_quote_it(sandbox):
    text = ("---\nname: hostile\ndescription: x\nlicense: mit\nspec: {}\nweights:\n  - file: w.safetensors\n"
            "    url: https://example.org/w\n    sha256: 1234567890123456789012345678901234567890123456789012345678901234\n"
            "---\n")
    with pytest.raises(WeightsError, match="quoted string .* write it in quotes"):
        parse_card(text, "hostile.md")


@pytest.mark.parametrize("field, value", [("bundled", "yes"), ("prefix", 3), ("url", 7), ("dtype", "int8"),
                                          ("format", "pickle")])
def test_ill_typed_weight_fields_are_errors_naming_the_field(sandbox, field, value):
    with pytest.raises(SpecError, match=field):
        hostile_card([{"file": "w.safetensors", "sha256": "0" * 64, "url": "https://example.org/w", field: value}])


# --- the conversion cache is verified on every load ---------------------------------------------------------


@pytest.fixture()
def pickled_card(sandbox, tiny_state) -> tuple[ModelCard, Path]:
    folder = sandbox / "weights"
    folder.mkdir()
    torch.save(tiny_state, folder / "w.pth")
    card = hostile_card([{"file": "w.pth", "sha256": sha256_file(folder / "w.pth"), "format": "torch-pickle",
                          "key_map": "test-identity", "url": "https://example.org/w.pth"}])
    return card, folder


def _converted(sandbox: Path) -> Path:
    (path,) = (sandbox / "cache" / "converted").glob("*.safetensors")
    return path


def test_a_tampered_conversion_is_detected_and_reconverted(sandbox, pickled_card, tiny_state):
    card, folder = pickled_card
    zoo.load(card, weights_dir=folder)
    converted = _converted(sandbox)
    state = load_file(str(converted))
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key] = state[key] + 1000
    save_file(state, str(converted))
    with pytest.warns(UserWarning, match="not the one recorded"):
        model = zoo.load(card, weights_dir=folder)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in tiny_state.items())


def test_a_truncated_conversion_is_reconverted_with_a_warning(sandbox, pickled_card, tiny_state):
    card, folder = pickled_card
    zoo.load(card, weights_dir=folder)
    converted = _converted(sandbox)
    converted.write_bytes(converted.read_bytes()[:100])
    with pytest.warns(UserWarning, match="truncated"):
        model = zoo.load(card, weights_dir=folder)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in tiny_state.items())


def test_a_conversion_without_its_record_is_not_trusted(sandbox, pickled_card):
    card, folder = pickled_card
    zoo.load(card, weights_dir=folder)
    (sandbox / "cache" / "converted" / f"{card.weights[0].sha256}.json").unlink()
    with pytest.warns(UserWarning, match="record .* unreadable"):
        zoo.load(card, weights_dir=folder)


def test_a_truncated_safetensors_file_is_an_error_naming_it(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({"x": torch.zeros(100)}, str(path))
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(WeightsError, match="w.safetensors is not a readable safetensors file"):
        load_safetensors(path)


# --- strict dtypes and finite values ------------------------------------------------------------------------


def _card_with(sandbox: Path, state: dict[str, torch.Tensor], **extra: str) -> tuple[ModelCard, Path]:
    folder = sandbox / "weights"
    folder.mkdir(exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "w.safetensors"))
    entry = {"file": "w.safetensors", "sha256": sha256_file(folder / "w.safetensors"),
             "url": "https://example.org/w", **extra}
    return hostile_card([entry]), folder


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.int64, torch.bool])
def test_a_tensor_of_another_dtype_is_an_error_listing_the_keys(sandbox, tiny_state, dtype):
    key = next(k for k, v in tiny_state.items() if v.is_floating_point())
    card, folder = _card_with(sandbox, {**tiny_state, key: tiny_state[key].to(dtype)})
    with pytest.raises(WeightsError, match=rf"{key} \({str(dtype)[6:]}, the model needs float32\)"):
        zoo.load(card, weights_dir=folder)


def test_a_cast_happens_when_the_caller_asks_or_the_card_declares_the_dtype(sandbox, tiny_state):
    half = {k: v.half() if v.is_floating_point() else v for k, v in tiny_state.items()}
    card, folder = _card_with(sandbox, half)
    assert zoo.load(card, weights_dir=folder, allow_dtype_cast=True).dtype == torch.float32
    declared, folder = _card_with(sandbox, half, dtype="float16")
    model = zoo.load(declared, weights_dir=folder)
    assert all(torch.equal(model.state_dict()[k], v.float() if v.is_floating_point() else v)
               for k, v in half.items())
    key = next(k for k, v in tiny_state.items() if not v.is_floating_point())
    ints, folder = _card_with(sandbox, {**half, key: tiny_state[key].float()}, dtype="float16")
    with pytest.raises(WeightsError, match=rf"{key} \(float32"):  # a declared dtype casts floats only
        zoo.load(ints, weights_dir=folder, allow_dtype_cast=True)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_are_refused_and_named(sandbox, tiny_state, bad):
    key = next(k for k, v in tiny_state.items() if v.is_floating_point() and v.numel() > 1)
    poisoned = tiny_state[key].clone()
    poisoned.view(-1)[0] = bad
    card, folder = _card_with(sandbox, {**tiny_state, key: poisoned})
    with pytest.raises(WeightsError, match=rf"NaN or infinite values: {key} \(1 of"):
        zoo.load(card, weights_dir=folder)


def test_a_saved_bfloat16_model_loads_back_through_its_declared_dtype(sandbox):
    model = zoo.build(TINY_GCN).to(torch.bfloat16)
    model.save_pretrained(sandbox / "model")
    assert json.loads((sandbox / "model" / "config.json").read_text())["weights"]["dtypes"] == ["bfloat16"]
    loaded = zoo.load(sandbox / "model", dtype=torch.bfloat16)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())
    assert (sandbox / "model" / "model.safetensors").stat().st_mode & 0o777 == default_file_mode()


# --- recipes: a card names neither a task file nor data outside the data root --------------------------------


@pytest.mark.parametrize("field, value, match", [
    ("task", "/tmp/evil.yaml", "not a built-in task"),
    ("data", "../../etc/passwd", r"contains '\.\.'"),
    ("validation_data", "/etc/passwd", "absolute"),
])
def test_a_recipe_cannot_leave_its_data_root_or_name_a_task_file(field, value, match):
    from zoo.recipes import Recipe

    recipe = Recipe(task="retro-uspto50k", data="uspto50k/train.txt", stage="full", export=["x"])
    with pytest.raises((SpecError, UnsafePathError), match=match):
        Recipe(**{**recipe.__dict__, field: value}).check("hostile")
    recipe.check("hostile")  # the same recipe with its own values passes


def test_files_written_atomically_get_the_umask_permissions_not_0600(tmp_path):
    from zoo.io import atomic_write

    atomic_write(tmp_path / "results.json", lambda tmp: tmp.write_text("{}"))
    assert (tmp_path / "results.json").stat().st_mode & 0o777 == default_file_mode() != 0o600


def test_config_json_assets_cannot_leave_the_model_directory(sandbox):
    model_dir = sandbox / "model"
    zoo.build(TINY_GCN).save_pretrained(model_dir)
    (sandbox / "outside.json").write_text("{}")
    config = json.loads((model_dir / "config.json").read_text())
    config["assets"] = {"../outside.json": sha256_file(sandbox / "outside.json")}
    (model_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsafePathError, match="outside.json"):
        zoo.load(model_dir)


@pytest.mark.parametrize("entry, match", [
    ({"format": "asset"}, "both or neither"),
    ({"asset": "templates.json"}, "both or neither"),
    ({"format": "asset", "asset": "../templates.json"}, r"contains '\.\.'"),
    ({"format": "asset", "asset": "templates.json", "key_map": "llava"}, "takes no key_map"),
])
def test_a_card_asset_entry_is_checked(sandbox, entry, match):
    with pytest.raises((SpecError, UnsafePathError), match=match):
        hostile_card([{"file": "t.json", "sha256": "0" * 64, "url": "https://example.org/t.json", **entry}])


@pytest.mark.parametrize("modality", ["../../outside", "a/b", ".hidden", ""])
def test_a_modality_name_that_is_not_one_plain_folder_name_is_refused(modality):
    from zoo.spec import spec_from_dict

    spec = dict(zoo.card("tiny-test-vlm").spec)
    spec["encoders"] = {modality: spec["encoders"]["image"]}
    spec["projectors"] = {modality: spec["projectors"]["image"]}
    with pytest.raises(SpecError, match="modality name .* must be letters, digits"):
        spec_from_dict(spec)


@pytest.mark.parametrize("subfolder", ["../outside", "/etc", "a/../../b", "a\\..\\b"])
def test_a_projector_tokenizer_subfolder_that_leaves_its_repo_is_refused(subfolder):
    from zoo.spec import spec_from_dict

    spec = {**zoo.card("tiny-test-vlm").spec, "projector_tokenizers": {"image": {"path": "org/repo", "subfolder": subfolder}}}
    with pytest.raises(SpecError, match="subfolder .* must be a relative path"):
        spec_from_dict(spec)
    spec["projector_tokenizers"]["image"]["subfolder"] = "qformer_tokenizer"
    spec_from_dict(spec)  # a plain subfolder is fine
