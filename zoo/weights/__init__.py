"""Where weights come from, and proof that they are the right ones.

One entry point, :func:`fetch_weights`, turns a card's :class:`WeightSource` into a verified local safetensors
file: the source's file names are confined to their roots, its copy is found (a user's ``weights_dir``, the
committed ``model_cards/`` files, an installed package, the Hugging Face cache or Hub, a URL), its sha256 is
checked, and a pickle is converted through a registered key map into a cache that is re-verified on every
load. :func:`source_state` reads that file under the model's keys. :func:`hub_weight_files` lists the files
only the Hub can provide, so that loading checks them all before anything is built (``zoo.weights.hub``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zoo.errors import ModelNotFoundError
from zoo.io import load_safetensors
from zoo.weights.convert import cached_conversion
from zoo.weights.hub import HubFiles, merge_by_repo
from zoo.weights.key_maps import rename_state, resolve_key_map
from zoo.weights.sources import WeightSource, cache_dir, first_available, in_weights_dir, package_file
from zoo.weights.verify import verify_sha256

__all__ = ["WeightSource", "fetch_weights", "hub_weight_files", "source_state"]


def fetch_weights(source: WeightSource, weights_dir: Path | None = None) -> Path:
    """A verified local file for ``source`` (safetensors, or an asset as it is): from ``weights_dir`` when the file is there, else from the
    first of its sources that has it. Every copy must have the card's sha256; a pickle is converted (once, and
    the converted copy checked on every call)."""
    path = in_weights_dir(source, weights_dir) if weights_dir is not None else None
    if path is None:
        try:
            path = first_available(source)
        except ModelNotFoundError as err:
            if weights_dir is None:
                raise
            raise type(err)(
                f"{source.basename} is not in {weights_dir}, and its card's sources failed too ({err}); "
                "put the file there"
            ) from err
    verify_sha256(path, source.sha256)
    if source.format in ("safetensors", "asset"):
        return path
    assert source.key_map is not None  # a pickle source without one is refused when it is made
    return cached_conversion(path, source.sha256, source.key_map, cache_dir() / "converted")


def source_state(source: WeightSource, weights_dir: Path | None = None) -> dict[str, Any]:
    """The tensors of ``source``'s verified file under the model's keys: renamed by its ``key_map`` when a
    safetensors file has one (a pickle was renamed when it was converted), then ``prefix``ed."""
    path = fetch_weights(source, weights_dir)
    tensors = load_safetensors(path)
    if source.format == "safetensors" and source.key_map:
        tensors = rename_state(tensors, resolve_key_map(source.key_map, source.file), source.file)
    return {source.prefix + key: value for key, value in tensors.items()}


def hub_weight_files(sources: Sequence[WeightSource], weights_dir: Path | None = None) -> list[HubFiles]:
    """The weight files that only the Hub can provide here (not in ``weights_dir``, not bundled, not in an
    installed package, no URL to fall back on), one entry per repo, for :func:`~zoo.weights.hub.hub_access`
    to check before a model is built, so that all of them are named in one error."""
    needs = []
    for source in sources:
        if not source.hf_repo or source.bundled or source.url:
            continue
        if weights_dir is not None and in_weights_dir(source, weights_dir) is not None:
            continue
        if source.package:
            try:
                package_file(source)
                continue
            except ModelNotFoundError:
                pass
        needs.append(HubFiles(source.hf_repo, source.revision, (source.hf_filename or source.file,), card_weights=True))
    return merge_by_repo(needs)
