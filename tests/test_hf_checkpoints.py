"""``zoo.load("hf:...")``: a transformers checkpoint of a supported family, built as the zoo model its config.json
``model_type`` names. A tiny random LlavaForConditionalGeneration (``tests.test_public_cards``' fixture, saved as
sharded safetensors) stands in for a Hub repo; nothing is downloaded."""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

import zoo
from tests.helpers import image
from tests.test_offline import FAST_S, empty_hub_cache, hf_hub_offline  # noqa: F401 (fixtures)
from tests.test_public_cards import tiny_llava  # noqa: F401 (fixture)
from zoo.cli import app
from zoo.converters.families import convert_config, supported_model_types
from zoo.errors import HubOfflineError, UnsafePathError
from zoo.spec import SpecError
from zoo.weights.checkpoint import INDEX

PROMPTS = ["USER: <image>\nWhat is this? ASSISTANT:", "USER: <image>\nAnd this one? ASSISTANT:"]

# config.json of llava-hf/llava-1.5-7b-hf as transformers 4.36 wrote it (defaults left out).
LLAVA_7B_CONFIG = {
    "architectures": ["LlavaForConditionalGeneration"], "ignore_index": -100, "image_token_index": 32000,
    "model_type": "llava", "pad_token_id": 32001, "projector_hidden_act": "gelu",
    "text_config": {"_name_or_path": "lmsys/vicuna-7b-v1.5", "architectures": ["LlamaForCausalLM"],
                    "max_position_embeddings": 4096, "model_type": "llama", "rms_norm_eps": 1e-05,
                    "torch_dtype": "float16", "vocab_size": 32064},
    "tie_word_embeddings": False, "torch_dtype": "float16", "transformers_version": "4.36.0.dev0",
    "vision_config": {"hidden_size": 1024, "image_size": 336, "intermediate_size": 4096,
                      "model_type": "clip_vision_model", "num_attention_heads": 16, "num_hidden_layers": 24,
                      "patch_size": 14, "projection_dim": 768, "vocab_size": 32000},
    "vision_feature_layer": -2, "vision_feature_select_strategy": "default", "vocab_size": 32064,
}


@pytest.fixture
def checkpoint_copy(tiny_llava, tmp_path) -> Path:  # noqa: F811 (the imported fixture)
    """A copy of the tiny checkpoint that a test may tamper with."""
    root, _, _ = tiny_llava
    return Path(shutil.copytree(root, tmp_path / "ckpt"))


def edit_json(path: Path, **changes) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_a_local_checkpoint_gives_transformers_logits_and_generations(tiny_llava):  # noqa: F811
    root, reference, _ = tiny_llava
    assert (root / INDEX).is_file()  # sharded: the index names the files
    model = zoo.load(f"hf:{root}")
    processor = model.processor
    for prompt, picture in zip(PROMPTS, [image(0), image(1)], strict=True):
        batch = processor([prompt], {"image": [[picture]]}, padding_side="left")
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
                  "pixel_values": batch["modality_inputs"]["image"]["pixel_values"]}
        with torch.no_grad():
            torch.testing.assert_close(model(**batch).logits, reference(**inputs).logits, atol=1e-4, rtol=1e-4)
            ours = model.generate(**batch, max_new_tokens=6, do_sample=False)
            theirs = reference.generate(**inputs, max_new_tokens=6, do_sample=False,
                                        pad_token_id=processor.tokenizer.pad_token_id)
        assert ours.tolist() == theirs[:, inputs["input_ids"].shape[1]:].tolist()


def test_the_llava_7b_config_resolves_to_the_cards_spec():
    card = zoo.card("llava-1.5-7b")
    revision = card.weights[0].revision
    conversion = convert_config(LLAVA_7B_CONFIG, "llava-hf/llava-1.5-7b-hf", revision, "hf:llava-hf/llava-1.5-7b-hf")
    assert conversion.spec == card.spec
    assert (conversion.key_map, conversion.placeholder_ids) == ("llava", {"image": 32000})


def test_zoo_info_shows_the_resolved_spec(tiny_llava):  # noqa: F811
    root, _, _ = tiny_llava
    result = CliRunner().invoke(app, ["info", f"hf:{root}"])
    assert result.exit_code == 0, result.output
    assert "model_type 'llava'" in result.output and "family: llava" in result.output
    spec = yaml.safe_load(result.output.split("spec:\n", 1)[1])
    assert spec["encoders"]["image"]["config"]["pretrained"] == str(root)
    assert spec["backbone"]["config"]["model_config"]["hidden_size"] == 64


def test_an_unsupported_model_type_lists_the_supported_ones(tmp_path):
    from transformers import BertConfig

    BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64).save_pretrained(tmp_path)
    listed = f"supported model types: {', '.join(supported_model_types())}. "
    assert {"llava", "llava_next", "qwen2_audio", "t5"} <= set(supported_model_types())
    with pytest.raises(SpecError, match=f"model_type 'bert'.*{re.escape(listed)}"):
        zoo.load(f"hf:{tmp_path}")
    result = CliRunner().invoke(app, ["info", f"hf:{tmp_path}"])
    assert result.exit_code != 0 and listed in str(result.exception)


def test_config_fields_that_look_like_code_are_never_used(checkpoint_copy, monkeypatch):
    (checkpoint_copy / "evil_code.py").write_text("import pathlib\npathlib.Path(__file__).with_suffix('.ran').touch()\n")
    edit_json(checkpoint_copy / "config.json", _target_="os.system",
              auto_map={"AutoConfig": "evil_code.Config", "AutoModel": "evil_code.Model"})
    edit_json(checkpoint_copy / "tokenizer_config.json", auto_map={"AutoTokenizer": ["evil_code.Tokenizer", None]})
    monkeypatch.setattr("os.system", lambda *a: pytest.fail("os.system was called"))
    model = zoo.load(f"hf:{checkpoint_copy}")
    assert not (checkpoint_copy / "evil_code.ran").exists() and "evil_code" not in sys.modules
    assert model.spec.encoders["image"].type == "hf-vision"
    edit_json(checkpoint_copy / "config.json", model_type="os:system")
    with pytest.raises(SpecError, match="supported model types"):
        zoo.load(f"hf:{checkpoint_copy}")


@pytest.mark.parametrize("name", ["../outside.safetensors", "/tmp/outside.safetensors", "link.safetensors"])
def test_an_index_naming_a_file_outside_the_checkpoint_is_refused(checkpoint_copy, name):
    outside = checkpoint_copy.parent / "outside.safetensors"
    shutil.copy(next(checkpoint_copy.glob("model-*.safetensors")), outside)
    (checkpoint_copy / "link.safetensors").symlink_to(outside)
    index = json.loads((checkpoint_copy / INDEX).read_text())
    first = next(iter(index["weight_map"]))
    index["weight_map"][first] = name
    (checkpoint_copy / INDEX).write_text(json.dumps(index))
    with pytest.raises(UnsafePathError):
        zoo.load(f"hf:{checkpoint_copy}")


def test_a_missing_or_unmapped_tensor_fails_the_load(checkpoint_copy):
    shard = sorted(checkpoint_copy.glob("model-*.safetensors"))[-1]
    from safetensors.torch import load_file, save_file

    state = load_file(str(shard))
    save_file({**state, "image_newline": torch.zeros(2)}, str(shard))
    with pytest.raises(ValueError, match="image_newline"):
        zoo.load(f"hf:{checkpoint_copy}")
    save_file(dict(list(state.items())[1:]), str(shard))
    with pytest.raises(ValueError, match="missing key"):
        zoo.load(f"hf:{checkpoint_copy}")


def test_offline_a_hub_id_not_in_the_cache_fails_at_once_naming_files_and_command(hf_hub_offline):  # noqa: F811
    started = time.perf_counter()
    with pytest.raises(HubOfflineError) as raised:
        zoo.load("hf:some-org/llava-13b@main")
    assert time.perf_counter() - started < FAST_S
    message = str(raised.value)
    assert "cannot load hf:some-org/llava-13b@main: HF_HUB_OFFLINE is set" in message
    assert "config.json, one of (model.safetensors.index.json, model.safetensors)" in message
    assert "`hf download some-org/llava-13b --include '*.json' " in message and "--include '*.safetensors'" in message


COMMIT = "0123456789abcdef0123456789abcdef01234567"


def cache_as_hub_repo(checkpoint: Path, cache: Path) -> Path:
    """``checkpoint`` put in the Hugging Face cache as ``some-org/tiny-llava`` at ``COMMIT`` (main), laid out as
    huggingface_hub lays it out: snapshot files linking into ``blobs/``. Returns the snapshot folder."""
    repo = cache / "models--some-org--tiny-llava"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    (repo / "blobs").mkdir()
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    for i, path in enumerate(sorted(checkpoint.iterdir())):
        shutil.copy(path, repo / "blobs" / f"blob{i}")
        (snapshot / path.name).symlink_to(Path("../../blobs") / f"blob{i}")
    return snapshot


def test_offline_a_cached_hub_snapshot_loads_through_the_same_path(tiny_llava, hf_hub_offline):  # noqa: F811
    """A Hub repo in the cache's layout loads offline, its components pinned to the commit it is at."""
    root, reference, _ = tiny_llava
    cache_as_hub_repo(root, hf_hub_offline)
    model = zoo.load("hf:some-org/tiny-llava")
    assert model.spec.encoders["image"].config["pretrained"] == "some-org/tiny-llava"
    assert model.spec.encoders["image"].config["revision"] == COMMIT
    batch = model.processor([PROMPTS[0]], {"image": [[image(0)]]})
    with torch.no_grad():
        theirs = reference(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                           pixel_values=batch["modality_inputs"]["image"]["pixel_values"]).logits
        torch.testing.assert_close(model(**batch).logits, theirs, atol=1e-4, rtol=1e-4)


def test_offline_a_shard_missing_from_the_cache_fails_naming_the_command(tiny_llava, hf_hub_offline):  # noqa: F811
    root, _, _ = tiny_llava
    snapshot = cache_as_hub_repo(root, hf_hub_offline)
    sorted(snapshot.glob("model-*.safetensors"))[-1].unlink()
    with pytest.raises(HubOfflineError, match="`hf download some-org/tiny-llava --include '\\*.json'"):
        zoo.load("hf:some-org/tiny-llava")


def test_a_reference_that_is_neither_a_repo_nor_a_directory_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="no directory"):
        zoo.load(f"hf:{tmp_path / 'absent'}")
    with pytest.raises(FileNotFoundError, match="neither a Hub repo"):
        zoo.load("hf:org/repo/extra")
