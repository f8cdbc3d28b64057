"""Specs round-trip exactly, unknown keys and names fail with helpful messages, plugins register by entry point."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from zoo import registry
from zoo.cards import card, list_models, parse_card
from zoo.registry import UnknownComponentError
from zoo.spec import (
    DualEncoderSpec,
    MultimodalLMSpec,
    SpecError,
    make_config,
    spec_from_dict,
    spec_from_json,
    spec_from_yaml,
    spec_to_dict,
    spec_to_json,
    spec_to_yaml,
)

SPEC = card("tiny-test-vlm").spec


def test_spec_round_trips_exactly_through_json_and_yaml():
    spec = spec_from_dict(SPEC)
    assert isinstance(spec, MultimodalLMSpec)
    assert spec_from_json(spec_to_json(spec)) == spec
    assert spec_from_yaml(spec_to_yaml(spec)) == spec
    assert spec_to_dict(spec_from_dict(spec_to_dict(spec))) == spec_to_dict(spec)
    assert spec.encoders["image"].config["model_kwargs"]["patch_size"] == 8


def test_spec_type_dispatch_is_explicit():
    dual = {
        "type": "dual-encoder",
        "towers": {"image": {"type": "timm", "config": {"model_name": "x"}}},
        "text_tower": {"type": "hf-text", "config": {}},
        "embed_dim": 8,
    }
    assert isinstance(spec_from_dict(dual), DualEncoderSpec)
    with pytest.raises(SpecError, match="missing required key 'type'"):
        spec_from_dict({k: v for k, v in dual.items() if k != "type"})
    with pytest.raises(SpecError, match="unknown spec type 'dual'.*multimodal-lm, dual-encoder"):
        spec_from_dict({**dual, "type": "dual"})
    # keys of the other family are not a way to pick it: they are simply unknown here
    with pytest.raises(SpecError, match="unknown key 'backbone' in spec"):
        spec_from_dict({**dual, "backbone": {"type": "hf-causal-lm"}})


@pytest.mark.parametrize(
    "path, key",
    [((), "encoderz"), (("encoders", "image"), "cfg"), (("tokenizer",), "branch")],
)
def test_unknown_spec_key_names_key_and_allowed(path, key):
    data = json.loads(json.dumps(SPEC))
    target = data
    for part in path:
        target = target[part]
    target[key] = 1
    with pytest.raises(SpecError) as err:
        spec_from_dict(data)
    assert repr(key) in str(err.value) and "allowed keys:" in str(err.value)


def test_unknown_component_config_key_names_allowed_fields():
    from projectors.simple import MLPConfig

    with pytest.raises(SpecError, match=r"unknown key 'dept' in spec.projectors.image.config; allowed keys: depth, activation"):
        make_config(MLPConfig, {"dept": 2}, "spec.projectors.image.config")
    with pytest.raises(SpecError, match="depth must be >= 1"):
        make_config(MLPConfig, {"depth": 0}, "spec.projectors.image.config")


def test_encoder_and_projector_sets_must_match():
    data = json.loads(json.dumps(SPEC))
    data["projectors"] = {"audio": {"type": "mlp"}}
    with pytest.raises(SpecError, match="every encoder needs a projector"):
        spec_from_dict(data)


def test_unknown_model_name_suggests_closest():
    with pytest.raises(UnknownComponentError) as err:
        card("tiny-vlm")
    assert "tiny-test-vlm" in str(err.value)


def test_unknown_component_suggests_closest():
    with pytest.raises(UnknownComponentError, match="Did you mean: mlp"):
        registry.resolve("projector", "mpl")
    with pytest.raises(ValueError, match="unknown component kind"):
        registry.resolve("head", "x")


def test_list_models_filters_by_glob():
    assert "tiny-test-vlm" in list_models()
    assert list_models("tiny-*") == [n for n in list_models() if n.startswith("tiny-")]
    assert list_models("no-such-*") == []


def test_card_front_matter_is_strict():
    text = "---\nname: x\ndescription: d\nlicense: mit\nspec: {}\nweigths: []\n---\nbody"
    with pytest.raises(SpecError, match="unknown key 'weigths'"):
        parse_card(text, "x.md")


def test_plugins_register_through_entry_points(tmp_path):
    dist = tmp_path / "modalzoo_fakeplugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: modalzoo-fakeplugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[modalzoo.plugins]\nprojector.fake-proj = projectors.simple:LinearProjector\n"
    )
    code = textwrap.dedent(
        f"""
        import sys; sys.path.insert(0, {str(tmp_path)!r})
        from zoo import registry
        assert "fake-proj" in registry.names("projector"), registry.names("projector")
        assert registry.resolve("projector", "fake-proj").__name__ == "LinearProjector"
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_import_zoo_and_listing_leave_torch_unloaded():
    code = (
        "import sys, zoo; names = zoo.list_models(); zoo.card(names[0]);"
        "from typer.testing import CliRunner; from zoo.cli import app;"
        "r = CliRunner().invoke(app, ['list']); assert r.exit_code == 0 and 'tiny-test-vlm' in r.output, r.output;"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
