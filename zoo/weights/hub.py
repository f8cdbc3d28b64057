"""Files from the Hugging Face Hub, the local cache first.

A model reads Hub files two ways: a card's weight entry (``hf_repo``), or a component whose spec names a Hub
checkpoint (``pretrained: org/repo``, an open_clip tag, a ``pretrained`` tokenizer), which transformers or
open_clip then fetch themselves. When a file is not cached and the network is down, huggingface_hub retries
it for tens of seconds (also each optional file a library merely probes for) and the library then raises its
own error. So before a model is built,
:func:`hub_access` looks every such file up in the cache and, if one is missing, fails at once with a
:class:`~zoo.errors.HubOfflineError` naming the files and the ``hf download`` command that fetches them when
``HF_HUB_OFFLINE`` is set or the Hub does not answer one quick request. When the cache has them all and the
Hub does not answer, the build runs in huggingface_hub's offline mode, so no library waits on the network.

Nothing here imports torch; :func:`spec_hub_references` reads plain spec data only (``zoo list`` uses it).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
import re
import shlex
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.paths import check_relative_name
from zoo.errors import HubOfflineError, ModelNotFoundError

# Component types whose ``pretrained`` is an open_clip tag (resolved to a Hub file by open_clip's registry).
OPEN_CLIP_TYPES = ("open-clip-vision", "open-clip-text")
# What transformers reads from a checkpoint repo whose exact file list only the Hub knows: configs, processor
# and tokenizer files, and, when a component loads the checkpoint's weights, the weight files. Both weight
# formats are named because a repo may have only one of them (transformers takes safetensors when both exist).
CONFIG_PATTERNS = ("*.json", "*.txt", "*.model")
WEIGHT_PATTERNS = ("*.safetensors", "*.bin")
# The weight files transformers looks for, in its order; one of them must be cached to load a checkpoint.
CHECKPOINT_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                      "pytorch_model.bin.index.json")
# A Hub repo id (``name`` or ``org/name``), as opposed to a local path or a ``package:name`` reference.
_REPO_ID = re.compile(r"[\w.-]+(/[\w.-]+)?")


@dataclass(frozen=True)
class HubReference:
    """One place in a spec that makes a component read the Hub: a checkpoint ``repo`` (``pretrained``), a
    tokenizer repo (``tokenizer_only``), or an open_clip ``tag`` of ``model_name``."""

    where: str
    repo: str | None = None
    revision: str | None = None
    tokenizer_only: bool = False
    model_name: str | None = None
    tag: str | None = None


@dataclass(frozen=True)
class HubFiles:
    """Files a model needs from one Hub repo at one revision. ``files`` must all be cached, one of ``any_of``
    must be (the first is the one to fetch); ``patterns`` stand for further files whose exact names only the
    Hub knows (a checkpoint repo as transformers reads it). ``needed_by`` names the parts of the model that
    read them; ``card_weights`` marks a card's weight files, which may come from a ``weights_dir`` instead."""

    repo: str
    revision: str | None
    files: tuple[str, ...] = ()
    any_of: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    needed_by: tuple[str, ...] = ()
    card_weights: bool = False

    @property
    def where(self) -> str:
        return f"hf-hub:{self.repo}" + (f"@{self.revision}" if self.revision else "")

    def wanted(self) -> tuple[str, ...]:
        """The files by name; ``any_of`` as one entry, ``one of (a, b)``."""
        if not self.any_of:
            return self.files
        return (*self.files, self.any_of[0] if len(self.any_of) == 1 else f"one of ({', '.join(self.any_of)})")

    def missing(self) -> tuple[str, ...]:
        """What of :meth:`wanted` the Hugging Face cache lacks."""
        lacking = tuple(name for name in self.files if cached_path(self.repo, name, self.revision) is None)
        if self.any_of and all(cached_path(self.repo, name, self.revision) is None for name in self.any_of):
            lacking += self.wanted()[-1:]
        return lacking

    def command(self) -> str:
        """The ``hf download`` command that puts these files in the Hugging Face cache: the named ones, or the
        ``patterns`` plus any named file they do not match."""
        names = [*self.files, *self.any_of[:1]]
        if self.patterns:
            extra = [name for name in names if not any(fnmatch.fnmatch(name, p) for p in self.patterns)]
            names = [arg for name in (*self.patterns, *extra) for arg in ("--include", name)]
        return shlex.join(["hf", "download", self.repo, *names, *(["--revision", self.revision] if self.revision else [])])


def hub_offline() -> bool:
    """Whether Hub access is switched off: ``HF_HUB_OFFLINE`` as huggingface_hub read it at import, or as the
    environment says now (a process may set it after importing huggingface_hub)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in (
        "1", "true", "yes", "on"
    )


def cached_path(repo: str, filename: str, revision: str | None) -> Path | None:
    """The file in the Hugging Face cache (a branch revision as the cache last saw it), or None."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, filename, revision=revision)
    return Path(found) if isinstance(found, str) else None


def is_hub_id(value: Any) -> bool:
    """Whether a spec's ``pretrained``/``path`` value names a Hub repo rather than a local path."""
    return isinstance(value, str) and bool(_REPO_ID.fullmatch(value)) and not Path(value).exists()


def spec_hub_references(spec: Any, where: str = "spec") -> list[HubReference]:
    """Every component of ``spec`` (plain data) that reads a Hub checkpoint, tokenizer or open_clip tag."""
    found: list[HubReference] = []
    if isinstance(spec, Mapping):
        config = spec.get("config")
        if spec.get("type") in OPEN_CLIP_TYPES and isinstance(config, Mapping):
            tag = config.get("pretrained")
            if isinstance(tag, str) and not Path(tag).exists():
                found.append(HubReference(where, model_name=str(config.get("model_name")), tag=tag))
            return found
        if spec.get("type") == "pretrained" and is_hub_id(spec.get("path")):
            found.append(HubReference(where, spec["path"], spec.get("revision"), tokenizer_only=True))
        elif is_hub_id(spec.get("pretrained")):  # a component's config: name the component
            found.append(HubReference(where.removesuffix(".config"), spec["pretrained"], spec.get("revision")))
        for key, value in spec.items():
            found += spec_hub_references(value, f"{where}.{key}")
    elif isinstance(spec, list):
        for i, value in enumerate(spec):
            found += spec_hub_references(value, f"{where}[{i}]")
    return found


def spec_hub_files(spec: Any, weights: bool, tokenizers: bool = True) -> list[HubFiles]:
    """The Hub files building ``spec`` (plain data or a parsed spec) reads, one entry per repo and revision.
    ``weights``: the components load their checkpoints' weights (a card that lists its own weight files
    builds them without); ``tokenizers``: tokenizers come from their repos (not from a saved model)."""
    spec = spec if isinstance(spec, Mapping) else dataclasses.asdict(spec)
    needs: list[HubFiles] = []
    for ref in spec_hub_references(spec):
        if ref.tag is not None:
            need = _open_clip_files(ref) if weights else None
        elif ref.tokenizer_only:
            need = HubFiles(ref.repo, ref.revision, ("tokenizer_config.json",), patterns=CONFIG_PATTERNS,
                            needed_by=(ref.where,)) if tokenizers else None
        else:
            need = HubFiles(ref.repo, ref.revision, ("config.json",), CHECKPOINT_WEIGHTS if weights else (),
                            CONFIG_PATTERNS + (WEIGHT_PATTERNS if weights else ()), (ref.where,))
        if need is not None:
            needs.append(need)
    return merge_by_repo(needs)


def _open_clip_files(ref: HubReference) -> HubFiles | None:
    """The Hub file open_clip downloads for a tag (its safetensors copy first, as open_clip tries), or None
    when the tag is not on the Hub (open_clip then downloads it from a URL, or reports an unknown tag)."""
    import open_clip
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    location = open_clip.get_pretrained_cfg(ref.model_name, ref.tag).get("hf_hub", "")
    if not location:
        return None
    repo, filename = os.path.split(location)
    filename = filename or HF_WEIGHTS_NAME
    safe = HF_SAFE_WEIGHTS_NAME if filename == HF_WEIGHTS_NAME else None
    if safe is None and filename.endswith((".bin", ".pth")):
        safe = filename[:-4] + ".safetensors"
    return HubFiles(repo, None, any_of=(safe, filename) if safe else (filename,), needed_by=(ref.where,))


def merge_by_repo(needs: Sequence[HubFiles]) -> list[HubFiles]:
    """``needs`` with the entries of one repo and revision merged (one command fetches them)."""
    def union(x: tuple[str, ...], y: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(x + y))

    merged: dict[tuple[str, str | None], HubFiles] = {}
    for need in needs:
        key = (need.repo, need.revision)
        if (a := merged.get(key)) is not None:
            need = dataclasses.replace(a, files=union(a.files, need.files), any_of=a.any_of or need.any_of,
                                       patterns=union(a.patterns, need.patterns),
                                       needed_by=union(a.needed_by, need.needed_by))
        merged[key] = need
    return list(merged.values())


@contextmanager
def hub_access(needs: Sequence[HubFiles], subject: str) -> Iterator[None]:
    """Run the block that reads ``needs`` (builds a model, downloads a file) only if it can succeed without
    waiting on a dead network: with ``HF_HUB_OFFLINE`` or a Hub that does not answer, any file missing from
    the cache is a :class:`HubOfflineError` before the block starts, and the block runs in huggingface_hub's
    offline mode; a library's own offline failure inside it becomes the same error. ``subject`` names what is
    being loaded. The offline switch is process-wide for the block's duration."""
    if not needs:
        yield
        return
    missing = [(need, lacking) for need in needs if (lacking := need.missing())]
    reason = "HF_HUB_OFFLINE is set" if hub_offline() else _unreachable(needs[0])
    if reason and missing:
        raise HubOfflineError(offline_message(subject, f"{reason}, and the Hugging Face cache ({_cache()}) lacks "
                                                       "these files", missing))
    try:
        with _offline_mode(reason is not None):
            yield
    except Exception as err:
        if not is_offline_failure(err):
            raise
        why = (f"{reason or 'the Hub stopped answering'}, and a file it asked for is not in the Hugging Face "
               f"cache ({_cache()}): {type(err).__name__}: {err}. It reads these files")
        raise HubOfflineError(offline_message(subject, why, [(need, need.wanted()) for need in needs])) from err


def is_offline_failure(err: BaseException) -> bool:
    """Whether huggingface_hub failed for want of the network (or its offline mode), here or in the causes of
    another library's error."""
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    seen: set[int] = set()
    link: BaseException | None = err
    while link is not None and id(link) not in seen:
        if isinstance(link, (LocalEntryNotFoundError, OfflineModeIsEnabled)):
            return True
        seen.add(id(link))
        link = link.__cause__ or link.__context__
    return False


def _unreachable(need: HubFiles) -> str | None:
    """None when the Hub answers one request (any HTTP status: the network works), else why it did not.
    No retries and huggingface_hub's metadata timeout, so a dead network costs seconds, not minutes."""
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import HfHubHTTPError

    probe = (need.files + need.any_of)[0]
    try:
        get_hf_file_metadata(hf_hub_url(need.repo, probe, revision=need.revision), timeout=constants.HF_HUB_ETAG_TIMEOUT)
    except HfHubHTTPError:
        return None
    except Exception as err:  # connection, DNS, proxy, TLS, timeout: each transport names its own types
        return f"the Hugging Face Hub cannot be reached ({type(err).__name__}: {err})"
    return None


@contextmanager
def _offline_mode(on: bool) -> Iterator[None]:
    """huggingface_hub's offline switch (which transformers and open_clip read on every call), for a block."""
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = before or on
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def _cache() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def offline_message(subject: str, reason: str, files: Sequence[tuple[HubFiles, tuple[str, ...]]]) -> str:
    """``subject: reason``, then each repo's files with the command that fetches them, and how to bring them
    to this machine (``--weights-dir`` where a card's weight files are among them)."""
    lines = [f"{subject}: {reason}:"]
    for need, names in files:
        listed = ", ".join(names) + (" and the other files the command fetches" if need.patterns else "")
        by = f" (read by {', '.join(need.needed_by)})" if need.needed_by else ""
        lines.append(f"- could not get {listed} from {need.where}{by}: fetch with `{need.command()}`")
    lines.append("Run the command(s) on a machine that can reach the Hub, then copy its Hugging Face cache "
                 "(HF_HOME, by default ~/.cache/huggingface) to this machine's.")
    if any(need.card_weights for need, _ in files):
        lines.append("A card's weight files may instead be put in one folder (add `--local-dir DIR` to the "
                     "command) and passed as `--weights-dir DIR` on the command line or `weights_dir=DIR` to "
                     "zoo.load; they are checked by sha256 either way.")
    return "\n".join(lines)


def hub_file(repo: str, filename: str, revision: str | None, local_only: bool = False,
             card_weights: bool = False) -> Path:
    """One file of a Hub repo: from the Hugging Face cache, else (unless ``local_only``) downloaded through
    huggingface_hub, with :func:`hub_access` deciding first whether the Hub can serve it. ``card_weights``:
    the file is a card's weight file (so its error mentions ``weights_dir``)."""
    from huggingface_hub import hf_hub_download

    check_relative_name(filename, f"file of hf-hub:{repo}")
    need = HubFiles(repo, revision, (filename,), card_weights=card_weights)
    if local_only:
        path = cached_path(repo, filename, revision)
        if path is None:
            raise ModelNotFoundError(f"{filename} of {need.where} is not in the Hugging Face cache")
        return path
    with hub_access([need], f"cannot load {filename}"):
        try:
            return Path(hf_hub_download(repo, filename, revision=revision))
        except Exception as err:  # huggingface_hub raises many types: missing repo/file/revision, HTTP errors
            if is_offline_failure(err):
                raise
            raise ModelNotFoundError(
                f"could not get {filename} from {need.where} ({type(err).__name__}: {err}); check the repo, "
                f"file name and revision (`{need.command()}` fetches it)"
            ) from err
