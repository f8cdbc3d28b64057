"""Reaction templates for template-based retrosynthesis and forward prediction, as a cached data step.

Templates come from atom-mapped reactions (``reactants>>product``; map your own with rxnmapper) through
rdchiral's extractor (Coley et al. 2019), whose settings are fixed in its code, not options: on the reactant
side the changed atoms, their radius-1 neighbours, rdchiral's special groups (acyl groups, Boc, tosyl,
boronic acids, alkenes...) and every unmapped reactant atom (leaving groups in full); on the product side the
changed atoms plus those the reactant side added; stereochemistry kept; at most 5 unmapped product atoms. A
retro template reads ``product_pattern>>reactant_patterns``. Reactions that cannot be templated are counted
and listed with their ``file:line`` and reason, never dropped silently.

    library = build_template_library(["train.tsv"], "runs/template-cache", workers=2)
    library.index(template)               # its class index, or None
    apply_retro(library.templates[0], "CC(=O)Nc1ccccc1")
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import io
import json
import os
import secrets
import signal
import threading
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from multiprocessing import Pool
from pathlib import Path

import rdkit
from rdkit import Chem
from rdkit.Chem import AllChem
from tqdm.auto import tqdm

from tasks.data.text import decode_line, split_lines
from tasks.metrics.smiles import canonicalize_smiles

# rdchiral 1.1.0 writes regexes such as '\:[0-9]+' without raw strings, so Python warns (invalid escape
# sequence) when it compiles rdchiral; the warning is about rdchiral's source, nothing a user can act on.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    warnings.simplefilter("ignore", SyntaxWarning)
    from rdchiral import template_extractor
    from rdchiral.initialization import rdchiralReactants, rdchiralReaction
    from rdchiral.main import rdchiralRun

LIBRARY_FORMAT = "modalzoo-template-library"
LIBRARY_VERSION = 1
REQUIRED_COLUMNS = ("class", "reaction", "mapped_reaction")
DEFAULT_TIMEOUT_S = 30.0

# Failure reasons, the keys of ExtractionStats.reasons.
MALFORMED_ROW = "malformed row"
NOT_MAPPED = "not atom-mapped"
UNPARSABLE = "unparsable molecule"
UNMAPPED_PRODUCT_ATOMS = "too many unmapped product atoms"
INCONSISTENT_MAPPING = "inconsistent atom mapping"
NO_REACTION_CENTRE = "no reaction centre"
RDCHIRAL_ERROR = "rdchiral error"
TIMEOUT = "timeout"


@dataclass(frozen=True)
class Failure:
    """Why one reaction gave no template: a fixed ``reason`` (tallied in the stats) and a ``detail``."""

    reason: str
    detail: str

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


class TemplateError(ValueError):
    """A reaction that cannot be templated, or a template that cannot be applied; ``failure`` says why."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(str(failure))
        self.failure = failure


@dataclass(frozen=True)
class MappedReaction:
    """One data line of a mapped-reaction TSV: where it is, its class, the unmapped and the mapped reaction.

    ``error`` is set (and the other fields may be empty) when the line cannot be used, so a bad line is a
    counted failure instead of a silent gap.
    """

    where: str
    reaction_class: int | None
    reaction: str
    mapped_reaction: str
    error: Failure | None = None

    @property
    def reactants(self) -> str:
        """The unmapped reactants, ``.``-separated."""
        return self.reaction.split(">")[0]

    @property
    def product(self) -> str:
        """The unmapped product."""
        return self.reaction.split(">")[-1]


@dataclass(frozen=True)
class Extraction:
    """The retro template of the reaction at ``where``, or the ``error`` that kept it from having one."""

    where: str
    template: str | None
    error: Failure | None = None


# --- reading -------------------------------------------------------------------------------------------


def read_mapped_reactions(path: str | Path) -> Iterator[MappedReaction]:
    """One record per data line of a mapped-reaction TSV (header ``index class reaction mapped_reaction
    confidence``; only ``class``, ``reaction`` and ``mapped_reaction`` are needed).

    A line with the wrong column count, bytes that are not UTF-8, a bad class or reaction, or an empty
    ``mapped_reaction`` becomes a record with an ``error``; a file without the needed header is an error.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found; expected a TSV with columns {', '.join(REQUIRED_COLUMNS)} (rxnmapper output)"
        )
    lines = [line.removesuffix(b"\r") for line in split_lines(path.read_bytes())]
    columns = _header(path, lines[0] if lines else b"")
    for number, raw in enumerate(lines[1:], 2):
        yield _parse_row(f"{path.name}:{number}", raw, columns)


def _header(path: Path, raw: bytes) -> list[str]:
    """The column names of the header line, or a ``ValueError`` saying which required ones are missing."""
    columns = decode_line(raw, f"{path}:1").split("\t")
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing:
        raise ValueError(
            f"{path}:1: header lacks column(s) {', '.join(missing)}; expected a tab-separated header with "
            f"{', '.join(REQUIRED_COLUMNS)} (as ../shared/data/uspto50k-mapped/*.tsv have)"
        )
    return columns


def _parse_row(where: str, raw: bytes, columns: list[str]) -> MappedReaction:
    """A data line as a record; anything wrong with it becomes the record's ``error``."""
    try:
        text = decode_line(raw, where)
    except ValueError as err:
        return _bad_row(where, MALFORMED_ROW, str(err).removeprefix(f"{where}: "))
    values = text.split("\t")
    if len(values) != len(columns):
        return _bad_row(
            where, MALFORMED_ROW, f"expected {len(columns)} tab-separated columns, got {len(values)}"
        )
    row = dict(zip(columns, values, strict=True))
    class_text, reaction, mapped = (
        row["class"].strip(),
        row["reaction"].strip(),
        row["mapped_reaction"].strip(),
    )
    if class_text and not (class_text.isascii() and class_text.isdigit()):
        return _bad_row(where, MALFORMED_ROW, f"class {class_text!r} is not a non-negative integer")
    for name, value in (("reaction", reaction), ("mapped_reaction", mapped)):
        if value and not _is_reaction(value):
            return _bad_row(where, MALFORMED_ROW, f"{name} {value[:80]!r} is not 'reactants>>product'")
    if not reaction:
        return _bad_row(where, MALFORMED_ROW, "empty reaction column")
    reaction_class = int(class_text) if class_text else None
    if not mapped:
        failure = Failure(NOT_MAPPED, "empty mapped_reaction; atom-map the reaction with rxnmapper first")
        return MappedReaction(where, reaction_class, reaction, "", failure)
    return MappedReaction(where, reaction_class, reaction, mapped)


def _bad_row(where: str, reason: str, detail: str) -> MappedReaction:
    return MappedReaction(where, None, "", "", Failure(reason, detail))


def _is_reaction(text: str) -> bool:
    """``reactants>agents>product`` with reactants and product present (agents may be empty)."""
    parts = text.split(">")
    return len(parts) == 3 and bool(parts[0]) and bool(parts[2])


# --- extraction ----------------------------------------------------------------------------------------


RADII = (0, 1)


def extraction_settings(timeout_s: float | None = DEFAULT_TIMEOUT_S, radius: int = 1) -> dict[str, object]:
    """What decides the templates: the extractor and its conventions, the library versions and the timeout.

    Radius 1 is rdchiral's ``extract_from_reaction`` as it stands (it takes no options; radius 1 and special
    groups are hard-coded). Radius 0 is :func:`_extract_local`: rdchiral's own steps with the reactant side cut
    to the changed atoms and the leaving groups, no neighbours and no special groups, so one template serves
    every product that has the same reaction centre (LocalRetro's local templates are of this kind)."""
    if radius not in RADII:
        raise ValueError(f"template radius must be one of {RADII}, got {radius!r}")
    extractor = "rdchiral.template_extractor.extract_from_reaction" if radius == 1 else "tasks.data.templates._extract_local"
    return {
        "extractor": extractor,
        "rdchiral": version("rdchiral"),
        "rdkit": rdkit.__version__,
        "radius": radius,
        "special_groups": radius == 1,
        "stereochemistry": template_extractor.USE_STEREOCHEMISTRY,
        "include_all_unmapped_reactant_atoms": template_extractor.INCLUDE_ALL_UNMAPPED_REACTANT_ATOMS,
        "max_unmapped_product_atoms": template_extractor.MAXIMUM_NUMBER_UNMAPPED_PRODUCT_ATOMS,
        "timeout_s": timeout_s,
    }


def extract_template(mapped_reaction: str, *, radius: int = 1, timeout_s: float | None = DEFAULT_TIMEOUT_S) -> str:
    """The retro template (``product_pattern>>reactant_patterns``) of one atom-mapped reaction, at ``radius``
    (1: rdchiral's convention; 0: the reaction centre and leaving groups only, see :func:`extraction_settings`).

    Raises ``TemplateError`` with the reason when none can be made. ``timeout_s`` bounds the time spent
    (enforced with SIGALRM, so only in a main thread on POSIX; elsewhere it is not enforced).
    """
    if radius not in RADII:
        raise ValueError(f"template radius must be one of {RADII}, got {radius!r}")
    if not _is_reaction(mapped_reaction):
        raise TemplateError(Failure(MALFORMED_ROW, f"{mapped_reaction[:80]!r} is not 'reactants>>product'"))
    parts = mapped_reaction.split(">")
    reactants, products = parts[0], parts[2]
    extract = template_extractor.extract_from_reaction if radius == 1 else _extract_local
    captured = io.StringIO()  # rdchiral prints its complaints; they become the failure's detail instead
    try:
        with _time_limit(timeout_s), contextlib.redirect_stdout(captured):
            result = extract({"reactants": reactants, "products": products, "_id": 0})
    except _Timeout:
        raise TemplateError(Failure(TIMEOUT, f"rdchiral took longer than {timeout_s} s")) from None
    except Exception as err:  # rdchiral and RDKit raise many kinds; each is this reaction's failure
        raise TemplateError(Failure(RDCHIRAL_ERROR, f"{type(err).__name__}: {err}")) from err
    if result and result.get("reaction_smarts"):
        return result["reaction_smarts"]
    raise TemplateError(_diagnose(reactants, products, result, captured.getvalue()))


def _extract_local(reaction: dict[str, str]) -> dict[str, object] | None:
    """A radius-0 retro template, returned the way ``extract_from_reaction`` returns one (``reaction_smarts``;
    no key when there is no reaction centre; None for too many unmapped product atoms or an inconsistent
    mapping), built from rdchiral's steps: changed atoms, fragments, canonical transform."""
    te = template_extractor
    reactants = te.mols_from_smiles_list(te.replace_deuterated(reaction["reactants"]).split("."))
    products = te.mols_from_smiles_list(te.replace_deuterated(reaction["products"]).split("."))
    if None in reactants or None in products:
        return {}
    reactants = [AllChem.RemoveHs(mol) for mol in reactants]
    products = [AllChem.RemoveHs(mol) for mol in products]
    for mol in reactants + products:
        Chem.SanitizeMol(mol)
        mol.UpdatePropertyCache()
    for product in products:
        if sum(not atom.HasProp("molAtomMapNumber") for atom in product.GetAtoms()) > te.MAXIMUM_NUMBER_UNMAPPED_PRODUCT_ATOMS:
            return None
    _, changed_tags, err = te.get_changed_atoms(reactants, products)
    if err:
        return None
    if not changed_tags:
        return {}
    reactant_side, _, _ = te.get_fragments_for_changed_atoms(reactants, changed_tags, radius=0, category="reactants")
    expansion = te.expand_changed_atom_tags(changed_tags, reactant_side)
    product_side, _, _ = te.get_fragments_for_changed_atoms(products, changed_tags, radius=0, expansion=expansion,
                                                           category="products")
    reactant_part, _, product_part = te.canonicalize_transform(f"{reactant_side}>>{product_side}").partition(">>")
    template = product_part[1:-1].replace(").(", ".") + ">>" + reactant_part[1:-1].replace(").(", ".")
    if AllChem.ReactionFromSmarts(template).Validate()[1] != 0:
        print(f"RDKit cannot validate the radius-0 template {template}")  # captured: the failure's detail
        return {}
    return {"reaction_smarts": template}


def _diagnose(reactants: str, products: str, result: dict | None, printed: str) -> Failure:
    """Why rdchiral returned no template, from what it returned and printed."""
    if any(Chem.MolFromSmiles(smiles) is None for smiles in f"{reactants}.{products}".split(".")):
        return Failure(UNPARSABLE, "RDKit cannot read a molecule of the mapped reaction")
    if result is None:
        limit = template_extractor.MAXIMUM_NUMBER_UNMAPPED_PRODUCT_ATOMS
        unmapped = sum(not atom.GetAtomMapNum() for atom in Chem.MolFromSmiles(products).GetAtoms())
        if unmapped > limit:
            return Failure(
                UNMAPPED_PRODUCT_ATOMS, f"{unmapped} product atoms have no map number (limit {limit})"
            )
        return Failure(INCONSISTENT_MAPPING, "reactant and product atom maps do not correspond")
    if printed.strip():
        return Failure(RDCHIRAL_ERROR, " ".join(printed.split())[:200])
    return Failure(
        NO_REACTION_CENTRE, "no atom changes between reactants and product (is the product a reactant?)"
    )


class _Timeout(BaseException):
    """Raised by the SIGALRM handler of :func:`_time_limit`; a BaseException, so rdchiral's own
    ``except Exception`` blocks cannot swallow it."""


@contextlib.contextmanager
def _time_limit(seconds: float | None) -> Iterator[None]:
    """Raise ``_Timeout`` in the block after ``seconds``; a no-op off the main thread or without SIGALRM."""
    if (
        not seconds
        or not hasattr(signal, "SIGALRM")
        or threading.current_thread() is not threading.main_thread()
    ):
        yield
        return

    def _expire(signum: int, frame: object) -> None:
        raise _Timeout

    previous = signal.signal(signal.SIGALRM, _expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _extract_one(mapped_reaction: str, radius: int, timeout_s: float | None) -> tuple[str | None, Failure | None]:
    """``extract_template`` as a (template, failure) pair, for pool workers."""
    try:
        return extract_template(mapped_reaction, radius=radius, timeout_s=timeout_s), None
    except TemplateError as err:
        return None, err.failure


def extract_templates(
    records: Iterable[MappedReaction],
    *,
    workers: int = 1,
    chunksize: int = 64,
    progress: bool = True,
    radius: int = 1,
    timeout_s: float | None = DEFAULT_TIMEOUT_S,
) -> list[Extraction]:
    """The template (at ``radius``) of every record, in order; a bad record or a failed extraction is an ``Extraction``
    with its ``error``. ``workers > 1`` extracts in a process pool, ``chunksize`` reactions per task.

    rdchiral is not fully deterministic: for 3 of the 40,029 USPTO-50K training reactions it spells the
    stereocentres of the template differently from one run to the next (also with a fixed PYTHONHASHSEED),
    so two extractions of that set differ in those templates."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    records = list(records)
    usable = [record.mapped_reaction for record in records if record.error is None]
    extract = functools.partial(_extract_one, radius=radius, timeout_s=timeout_s)
    with tqdm(total=len(usable), desc=f"extracting radius-{radius} templates", unit="rxn", disable=not progress) as bar:
        outcomes = iter(_map_in_order(extract, usable, workers, chunksize, bar))
    return [
        Extraction(record.where, None, record.error)
        if record.error
        else Extraction(record.where, *next(outcomes))
        for record in records
    ]


def _map_in_order(
    extract: Callable[[str], tuple[str | None, Failure | None]],
    items: list[str],
    workers: int,
    chunksize: int,
    bar: tqdm,
) -> list[tuple[str | None, Failure | None]]:
    """``extract`` over ``items`` in order, in this process or a pool of ``workers``, ticking ``bar``."""
    if workers == 1:
        return [_tick(bar, extract(item)) for item in items]
    with Pool(workers) as pool:
        return [_tick(bar, outcome) for outcome in pool.imap(extract, items, chunksize=chunksize)]


def _tick(bar: tqdm, outcome: tuple[str | None, Failure | None]) -> tuple[str | None, Failure | None]:
    bar.update()
    return outcome


# --- the library ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExtractionStats:
    """How extraction went: rows read, rows templated, distinct templates, and every failure with where."""

    rows: int
    templated: int
    distinct_templates: int
    failures: tuple[tuple[str, Failure], ...] = ()

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def reasons(self) -> dict[str, int]:
        """Failures tallied by reason, most common first."""
        return dict(Counter(failure.reason for _, failure in self.failures).most_common())


@dataclass(frozen=True)
class TemplateLibrary:
    """Distinct retro templates in class-index order (descending training count, then the string), their
    counts, the extraction stats and settings, and the input files' sha256 (``sources``)."""

    templates: tuple[str, ...]
    counts: tuple[int, ...]
    stats: ExtractionStats
    settings: dict[str, object] = field(default_factory=dict)
    sources: tuple[tuple[str, str], ...] = ()
    min_count: int = 1
    classes: tuple[tuple[int, ...], ...] = ()  # per template, the reaction classes it was seen with (() = unknown)
    _positions: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.templates) != len(self.counts):
            raise ValueError(
                f"{len(self.templates)} templates but {len(self.counts)} counts; they must pair up"
            )
        if self.classes and len(self.classes) != len(self.templates):
            raise ValueError(f"{len(self.templates)} templates but {len(self.classes)} class lists; they must pair up")
        positions = {template: i for i, template in enumerate(self.templates)}
        if len(positions) != len(self.templates):
            raise ValueError("the template library holds a template twice; each must appear once")
        object.__setattr__(self, "_positions", positions)

    @classmethod
    def from_extractions(
        cls,
        extractions: Sequence[Extraction],
        *,
        settings: dict[str, object] | None = None,
        sources: Sequence[tuple[str, str]] = (),
        min_count: int = 1,
    ) -> TemplateLibrary:
        """The library of ``extractions``: each distinct template once with its count, seen ``min_count``+
        times."""
        counts = Counter(e.template for e in extractions if e.template is not None)
        stats = ExtractionStats(
            rows=len(extractions),
            templated=sum(counts.values()),
            distinct_templates=len(counts),
            failures=tuple((e.where, e.error) for e in extractions if e.error is not None),
        )
        ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        library = cls(
            tuple(t for t, _ in ordered),
            tuple(c for _, c in ordered),
            stats,
            dict(settings or {}),
            tuple(sources),
        )
        return library.with_min_count(min_count)

    def __len__(self) -> int:
        return len(self.templates)

    def index(self, template: str) -> int | None:
        """The class index of ``template``, or None when it is not in the library."""
        return self._positions.get(template)

    def with_min_count(self, min_count: int) -> TemplateLibrary:
        """This library keeping only templates seen at least ``min_count`` times (order kept)."""
        if min_count < 1:
            raise ValueError(f"min_count must be at least 1, got {min_count}")
        kept = [i for i, c in enumerate(self.counts) if c >= min_count]
        return TemplateLibrary(
            tuple(self.templates[i] for i in kept), tuple(self.counts[i] for i in kept), self.stats, self.settings,
            self.sources, max(min_count, self.min_count), tuple(self.classes[i] for i in kept) if self.classes else (),
        )  # fmt: skip

    def with_classes(self, row_templates: Sequence[str | None], row_classes: Sequence[int | None]) -> TemplateLibrary:
        """This library recording, for each template, the reaction classes of the training rows that gave it
        (``row_templates[i]`` came from a row of class ``row_classes[i]``; None is skipped): what
        :meth:`allows` needs to predict with the class given."""
        if len(row_templates) != len(row_classes):
            raise ValueError(f"{len(row_templates)} row templates but {len(row_classes)} row classes")
        seen: list[set[int]] = [set() for _ in self.templates]
        for template, reaction_class in zip(row_templates, row_classes, strict=True):
            position = self.index(template) if template is not None else None
            if position is not None and reaction_class is not None:
                seen[position].add(int(reaction_class))
        return dataclasses.replace(self, classes=tuple(tuple(sorted(s)) for s in seen))

    def allows(self, reaction_class: int) -> list[bool]:
        """Per template, whether it may serve a product of ``reaction_class``: it was seen with that class, or
        with no known class at all (nothing restricts it). An error if the library records no classes or no
        template has that class."""
        if not self.classes:
            raise ValueError("this template library records no reaction classes; rebuild it with with_classes(...) "
                             "from the training rows' classes to predict with the class given")
        if not any(reaction_class in seen for seen in self.classes):
            known = sorted({c for seen in self.classes for c in seen})
            raise ValueError(f"no template of the library was seen with reaction class {reaction_class!r}; known: {known}")
        return [reaction_class in seen or not seen for seen in self.classes]

    def to_json(self) -> str:
        """The library as JSON text (one template per line), the form :meth:`from_json` reads back."""
        head = {
            "format": LIBRARY_FORMAT,
            "version": LIBRARY_VERSION,
            "settings": self.settings,
            "sources": [list(source) for source in self.sources],
            "min_count": self.min_count,
            "stats": {
                "rows": self.stats.rows,
                "templated": self.stats.templated,
                "distinct_templates": self.stats.distinct_templates,
                "failures": [[where, f.reason, f.detail] for where, f in self.stats.failures],
            },
        }
        rows = zip(self.templates, self.counts, self.classes or [None] * len(self.templates), strict=True)
        body = ",\n".join(json.dumps([t, c] if k is None else [t, c, list(k)]) for t, c, k in rows)
        return json.dumps(head)[:-1] + ', "templates": [\n' + body + "\n]}\n"

    @classmethod
    def from_json(cls, text: str) -> TemplateLibrary:
        """A library from :meth:`to_json` text; a ``ValueError`` names what is wrong with anything else."""
        try:
            data = json.loads(text)
            if data.get("format") != LIBRARY_FORMAT or data.get("version") != LIBRARY_VERSION:
                raise ValueError(f"not a {LIBRARY_FORMAT} version {LIBRARY_VERSION} file")
            stats = data["stats"]
            failures = tuple((where, Failure(reason, detail)) for where, reason, detail in stats["failures"])
            entries = data["templates"]
            if any(len(entry) not in (2, 3) for entry in entries) or len({len(entry) for entry in entries}) > 1:
                raise ValueError("each template entry must be [template, count] or [template, count, classes], all alike")
            classes = tuple(tuple(int(k) for k in entry[2]) for entry in entries if len(entry) == 3)
            return cls(
                tuple(str(entry[0]) for entry in entries),
                tuple(int(entry[1]) for entry in entries),
                ExtractionStats(
                    int(stats["rows"]), int(stats["templated"]), int(stats["distinct_templates"]), failures
                ),
                dict(data["settings"]),
                tuple((str(name), str(digest)) for name, digest in data["sources"]),
                int(data["min_count"]),
                classes,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ValueError(
                f"not a valid template library ({type(err).__name__}: {err}); "
                "rebuild it with build_template_library"
            ) from err

    def save(self, path: str | Path) -> None:
        """Write :meth:`to_json` to ``path`` atomically (a temporary file, then a rename)."""
        _atomic_write(Path(path), self.to_json().encode())

    @classmethod
    def load(cls, path: str | Path) -> TemplateLibrary:
        """Read a library written by :meth:`save`."""
        return cls.from_json(Path(path).read_text(encoding="utf-8"))


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it into place: no half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# --- the cache -----------------------------------------------------------------------------------------


def build_template_library(
    paths: str | Path | Sequence[str | Path],
    cache_dir: str | Path,
    *,
    min_count: int = 1,
    workers: int = 1,
    progress: bool = True,
    radius: int = 1,
    timeout_s: float | None = DEFAULT_TIMEOUT_S,
) -> TemplateLibrary:
    """The template library of the mapped-reaction TSV(s) ``paths``, from ``cache_dir`` when it holds one.

    The cache key is the sha256 of the files' bytes and the extraction settings; the cached file holds every
    template (``min_count`` is applied after loading, so another threshold reuses it) and its own sha256 is
    stored beside it: a file that fails the check is rebuilt with a warning.
    """
    library, _ = templated_rows(paths, cache_dir, workers=workers, progress=progress, radius=radius, timeout_s=timeout_s)
    return library.with_min_count(min_count)


def templated_rows(
    paths: str | Path | Sequence[str | Path],
    cache_dir: str | Path,
    *,
    workers: int = 1,
    progress: bool = True,
    radius: int = 1,
    timeout_s: float | None = DEFAULT_TIMEOUT_S,
) -> tuple[TemplateLibrary, list[str | None]]:
    """The full library of ``paths`` and each data row's own template (None where it has none), in the order
    :func:`read_mapped_reactions` gives the rows: the labels a template model trains on. Both are cached
    under the same key, each with its sha256 beside it."""
    paths = _as_paths(paths)
    settings = extraction_settings(timeout_s, radius)
    sources = _sources(paths)
    cached = _cache_path(sources, settings, cache_dir)
    library = _load_cached(cached, sources, settings)
    rows = _load_rows(_rows_path(cached)) if library is not None else None
    if library is None or rows is None:
        records = [record for path in paths for record in read_mapped_reactions(path)]
        extractions = extract_templates(records, workers=workers, progress=progress, radius=radius, timeout_s=timeout_s)
        library = TemplateLibrary.from_extractions(extractions, settings=settings, sources=sources)
        rows = [extraction.template for extraction in extractions]
        _write_cached(cached, library.to_json().encode())
        _write_cached(_rows_path(cached), json.dumps(rows).encode())
    return library, rows


def _write_cached(path: Path, data: bytes) -> None:
    """``data`` at ``path`` with its sha256 in a file beside it (written last)."""
    _atomic_write(path, data)
    _atomic_write(_digest_path(path), f"{_sha256(data)}  {path.name}\n".encode())


def _rows_path(library_path: Path) -> Path:
    return library_path.with_name(library_path.stem + ".rows.json")


def _load_rows(path: Path) -> list[str | None] | None:
    """The cached per-row templates if intact; None (with a warning when present but corrupt)."""
    if not path.is_file():
        return None
    data = path.read_bytes()
    problem = _digest_problem(path, data)
    if problem is None:
        rows = json.loads(data)
        if isinstance(rows, list) and all(r is None or isinstance(r, str) for r in rows):
            return rows
        problem = "it is not a list of templates"
    warnings.warn(f"cached row templates {path} are corrupt ({problem}); extracting again", stacklevel=3)
    return None


def _digest_problem(path: Path, data: bytes) -> str | None:
    """Why ``data`` (read from ``path``) does not match the sha256 recorded beside it, or None."""
    digest_file = _digest_path(path)
    recorded = (digest_file.read_text(errors="replace").split() or [""])[0] if digest_file.is_file() else ""
    if recorded != _sha256(data):
        return f"its sha256 {_sha256(data)} is not the one recorded in {digest_file.name}: {recorded or 'none'}"
    return None


def library_cache_path(
    paths: str | Path | Sequence[str | Path],
    cache_dir: str | Path,
    *,
    radius: int = 1,
    timeout_s: float | None = DEFAULT_TIMEOUT_S,
) -> Path:
    """Where :func:`build_template_library` caches the library of ``paths`` (it exists once built)."""
    paths = _as_paths(paths)
    return _cache_path(_sources(paths), extraction_settings(timeout_s, radius), cache_dir)


def _as_paths(paths: str | Path | Sequence[str | Path]) -> list[Path]:
    return [Path(paths)] if isinstance(paths, str | Path) else [Path(p) for p in paths]


def _sources(paths: Sequence[Path]) -> tuple[tuple[str, str], ...]:
    """Each input file's name and the sha256 of its bytes."""
    return tuple((path.name, _sha256(path.read_bytes())) for path in paths)


def _cache_path(
    sources: tuple[tuple[str, str], ...], settings: dict[str, object], cache_dir: str | Path
) -> Path:
    """The cache file named by the sha256 of the inputs' digests, the extraction settings and the library
    format version (bumped when this module's output changes, so old caches are not reused)."""
    recipe = {"sources": sources, "settings": settings, "version": LIBRARY_VERSION}
    key = _sha256(json.dumps(recipe, sort_keys=True).encode())
    return Path(cache_dir) / f"templates-{key[:24]}.json"


def _load_cached(
    path: Path, sources: tuple[tuple[str, str], ...], settings: dict[str, object]
) -> TemplateLibrary | None:
    """The library cached at ``path`` if it is there and intact; None (with a warning when it was corrupt)."""
    if not path.is_file():
        return None
    data = path.read_bytes()
    problem = _digest_problem(path, data)
    if problem is None:
        try:
            library = TemplateLibrary.from_json(data.decode("utf-8", errors="replace"))
        except ValueError as err:
            problem = str(err)
        else:
            if library.sources != sources or library.settings != settings:
                problem = "it was built from other inputs or settings than its name says"
    if problem is None:
        return library
    warnings.warn(f"cached template library {path} is corrupt ({problem}); rebuilding it", stacklevel=3)
    return None


def _digest_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- applying templates --------------------------------------------------------------------------------


def apply_retro(template: str, product_smiles: str) -> list[str]:
    """The reactant sets a retro template gives for a product (rdchiral, stereo-aware): canonical, distinct,
    sorted; empty when the template does not match. Prepared templates and products are cached, so applying
    the top-k templates to one product parses it once (not thread-safe: rdchiral reuses the objects).

    A ``TemplateError`` with reason ``rdchiral error`` says rdchiral failed while building an outcome (RDKit
    refuses some double-bond stereo it copies, e.g. for a few radius-0 templates): this template gives this
    product nothing, which a caller trying many templates may treat as no match."""
    reaction, product = _retro_reaction(template), _retro_product(product_smiles)
    try:
        outcomes = rdchiralRun(reaction, product)
    except RuntimeError as err:  # RDKit pre-condition violations surface as RuntimeError
        raise TemplateError(Failure(RDCHIRAL_ERROR, f"applying {template!r}: {' '.join(str(err).split())[:200]}")) from err
    return sorted({c for c in map(canonicalize_smiles, outcomes) if c is not None})


@functools.lru_cache(maxsize=16384)
def _retro_reaction(template: str) -> rdchiralReaction:
    """The prepared rdchiral reaction, its product side grouped as one pattern: a product pattern in several
    pieces (``A.B``, 71 of the USPTO-50K training templates) would otherwise ask for several molecules."""
    product, _, reactants = template.partition(">>")
    try:
        return rdchiralReaction(f"({product})>>{reactants}" if "." in product else template)
    except Exception as err:
        raise TemplateError(
            Failure("invalid template", f"rdchiral cannot load {template!r} ({err})")
        ) from err


@functools.lru_cache(maxsize=64)
def _retro_product(smiles: str) -> rdchiralReactants:
    if not smiles or Chem.MolFromSmiles(smiles) is None:
        raise ValueError(f"RDKit cannot parse the SMILES {smiles!r}; pass a valid molecule")
    return rdchiralReactants(smiles)


def forward_template(retro_template: str) -> str:
    """The forward template (``reactant_patterns>>product_pattern``) of a retro template: sides swapped."""
    sides = retro_template.split(">>")
    if len(sides) != 2 or not all(sides):
        raise ValueError(f"{retro_template!r} is not a template 'product_pattern>>reactant_patterns'")
    return f"{sides[1]}>>{sides[0]}"


def apply_forward(template: str, reactants_smiles: str) -> list[str]:
    """The products a forward template (see :func:`forward_template`) gives for a set of reactants: canonical,
    distinct, sorted; empty when it does not match.

    Runs RDKit's ``RunReactants`` with each side grouped as one template, so the reactant patterns may match
    any of the ``.``-separated molecules; on USPTO-50K test reactions it gives back the recorded product a
    little more often than rdchiral, which is built for the retro direction.
    """
    mol = Chem.MolFromSmiles(reactants_smiles) if reactants_smiles else None
    if mol is None:
        raise ValueError(f"RDKit cannot parse the SMILES {reactants_smiles!r}; pass valid reactants")
    products = set()
    for (outcome,) in _forward_reaction(template).RunReactants((mol,)):
        with contextlib.suppress(Chem.rdchem.MolSanitizeException):  # chemically impossible outcome
            Chem.SanitizeMol(outcome)
            products.add(canonicalize_smiles(Chem.MolToSmiles(outcome)))
    return sorted(products - {None})


@functools.lru_cache(maxsize=16384)
def _forward_reaction(template: str) -> AllChem.ChemicalReaction:
    sides = template.split(">>")
    reaction = AllChem.ReactionFromSmarts(f"({sides[0]})>>({sides[-1]})") if len(sides) == 2 else None
    if reaction is None or reaction.Validate()[1] != 0:
        raise TemplateError(
            Failure("invalid template", f"RDKit cannot load {template!r} as reactants>>product")
        )
    reaction.Initialize()
    return reaction


# --- coverage ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TemplateCoverage:
    """Of ``total`` reactions, ``templated`` gave a template and ``covered`` gave one in the library."""

    total: int
    templated: int
    covered: int

    @property
    def share(self) -> float:
        """Covered share of all reactions (an untemplated reaction counts as not covered)."""
        return self.covered / self.total if self.total else 0.0


def template_coverage(library: TemplateLibrary, extractions: Sequence[Extraction]) -> TemplateCoverage:
    """How many of the (test) reactions behind ``extractions`` have their own template in ``library``: the
    ceiling on top-k accuracy of a classifier over that library."""
    templates = [e.template for e in extractions if e.template is not None]
    return TemplateCoverage(
        len(extractions), len(templates), sum(library.index(t) is not None for t in templates)
    )
