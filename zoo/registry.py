"""The one registry: component kind -> name -> ``"module:attr"``, resolved lazily on first use.

Built-in entries are data (below). Third-party packages add entries through the entry-point group
``modalzoo.plugins``: an entry point named ``"<kind>.<name>"`` whose value is ``"module:attr"``.
Nothing is imported until an entry is resolved, so listing names never pulls in torch.
"""

from __future__ import annotations

import difflib
import importlib
from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any

KINDS: tuple[str, ...] = ("encoder", "projector", "backbone", "task", "metric", "key_map", "family")
PLUGIN_GROUP = "modalzoo.plugins"

BUILTINS: dict[str, dict[str, str]] = {
    "encoder": {
        "timm": "encoders.image.timm_encoder:TimmImageEncoder",
        "hf-text": "encoders.text.hf_encoder:HFTextEncoder",
        "gnn": "encoders.molecule.graph_encoder:MoleculeGraphEncoder",
        "fingerprint": "encoders.molecule.fingerprint:FingerprintEncoder",
        "hf-smiles": "encoders.smiles.hf_encoder:HFSmilesEncoder",
        "reaction-components": "encoders.smiles.reaction_components:ReactionComponentsEncoder",
        "molformer": "encoders.smiles.molformer:MolFormerEncoder",
        "open-clip-vision": "encoders.image.open_clip_towers:OpenCLIPVisionEncoder",
        "open-clip-text": "encoders.image.open_clip_towers:OpenCLIPTextEncoder",
        "hf-vision": "encoders.image.hf_vision:HFVisionEncoder",
        "hf-vision-anyres": "encoders.image.hf_vision_anyres:HFVisionAnyresEncoder",
        "audio-codec": "encoders.audio.codec:CodecTokenEncoder",
        "whisper": "encoders.audio.whisper:WhisperAudioEncoder",
        "clap-audio": "encoders.audio.clap:ClapAudioEncoder",
        "clap-text": "encoders.text.clap:ClapTextEncoder",
        "spectrogram-transformer": "encoders.audio.spectrogram_transformer:SpectrogramTransformerEncoder",
        "qwen2-audio": "encoders.audio.qwen2_audio:Qwen2AudioTower",
    },
    "projector": {
        "identity": "projectors.simple:IdentityProjector",
        "linear": "projectors.simple:LinearProjector",
        "mlp": "projectors.simple:MLPProjector",
        "qformer": "projectors.qformer:QFormerProjector",
        "window-qformer": "projectors.qformer:WindowQFormerProjector",
        "perceiver": "projectors.perceiver:PerceiverResampler",
        "avgpool-linear": "projectors.pooling:AvgPoolLinearProjector",
        "star-mlp": "projectors.star:StarMLPProjector",
        "anyres-mlp": "projectors.anyres:AnyresMLPProjector",
    },
    "backbone": {
        "hf-causal-lm": "zoo.backbones:HFCausalLM",
        "hf-seq2seq-lm": "zoo.backbones:HFSeq2SeqLM",
    },
    "task": {},
    "metric": {},
    # checkpoint key maps a card may name in ``weights[].key_map`` (zoo.weights.key_maps)
    "key_map": {
        "hf-masked-lm": "encoders.smiles.hf_encoder:hf_masked_lm_key_map",
        "hf-base-model": "encoders.text.hf_encoder:hf_base_model_key_map",
        "pretrain-gnns": "encoders.molecule.pretrained:pretrain_gnns_key_map",
        "molformer": "encoders.smiles.molformer:molformer_key_map",
        "llava": "zoo.converters.llava:llava_key_map",
        "blip2": "zoo.converters.blip2:blip2_key_map",
        "t5": "zoo.converters.t5:t5_key_map",
        "bart": "zoo.converters.bart:bart_key_map",
        "llava-next": "zoo.converters.llava_next:llava_next_key_map",
        "qwen2-audio": "zoo.converters.qwen2_audio:qwen2_audio_key_map",
        "instructblip": "zoo.converters.instructblip:instructblip_key_map",
    },
    # transformers checkpoints loadable as ``hf:org/repo``: config.json ``model_type`` -> the builder that turns
    # that config into a zoo spec and a key map (zoo.converters.families)
    "family": {
        "llava": "zoo.converters.llava:llava_family",
        "blip-2": "zoo.converters.blip2:blip2_family",
        "t5": "zoo.converters.t5:t5_family",
        "bart": "zoo.converters.bart:bart_family",
        "llava_next": "zoo.converters.llava_next:llava_next_family",
        "qwen2_audio": "zoo.converters.qwen2_audio:qwen2_audio_family",
        "instructblip": "zoo.converters.instructblip:instructblip_family",
    },
}


class UnknownComponentError(KeyError):
    """A registry name that does not exist; the message lists the closest names."""

    def __str__(self) -> str:  # KeyError quotes its argument; show the message as written
        return str(self.args[0])


def suggest(name: str, candidates: list[str]) -> str:
    """A 'did you mean' phrase for ``name`` among ``candidates`` (empty when nothing is close)."""
    close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.5)
    return f" Did you mean: {', '.join(close)}?" if close else ""


@lru_cache(maxsize=1)
def _plugin_entries() -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {kind: {} for kind in KINDS}
    for ep in entry_points(group=PLUGIN_GROUP):
        kind, _, name = ep.name.partition(".")
        if kind not in found or not name:
            raise ValueError(
                f"plugin entry point {ep.name!r} in group {PLUGIN_GROUP!r} must be named '<kind>.<name>' "
                f"with kind one of {', '.join(KINDS)}"
            )
        found[kind][name] = ep.value
    return found


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown component kind {kind!r}; allowed: {', '.join(KINDS)}")


def entries(kind: str) -> dict[str, str]:
    """All ``name -> "module:attr"`` entries of one kind, built-ins first, then plugins."""
    _check_kind(kind)
    return {**BUILTINS[kind], **_plugin_entries()[kind]}


def names(kind: str) -> list[str]:
    """Sorted names of one kind."""
    return sorted(entries(kind))


def register(kind: str, name: str, target: str) -> None:
    """Add an entry at run time (tests, notebooks); ``target`` is ``"module:attr"``."""
    _check_kind(kind)
    if ":" not in target:
        raise ValueError(f"registry target must look like 'module:attr', got {target!r}")
    BUILTINS[kind][name] = target


def resolve(kind: str, name: str) -> Any:
    """Import and return the object registered as ``name`` under ``kind``."""
    table = entries(kind)
    if name not in table:
        raise UnknownComponentError(
            f"no {kind} named {name!r}.{suggest(name, list(table))} Known {kind}s: {', '.join(sorted(table))}"
        )
    module_name, _, attr = table[name].partition(":")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError as err:
        raise ImportError(f"registry entry {kind}.{name} points to {table[name]!r}, which does not exist") from err
