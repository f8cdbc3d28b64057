"""Reaction templates on USPTO-50K: extraction time, library size, failures, coverage, round trips, speed.

Reads the atom-mapped split (``../shared/data/uspto50k-mapped/{train,test}.tsv``) and prints one table:

- extraction time over the training reactions with ``workers=1`` and ``workers=2`` (``extract_templates``,
  uncached), then ``build_template_library`` twice with ``--cache-dir``: the first call builds and caches
  (or hits a cache an earlier run left), the second must be a cache hit;
- the library: distinct templates, those seen at least twice, failures by reason;
- test coverage: the share of test reactions whose own template is in the training library;
- the library, coverage and round trips again for each radius of ``--radii`` (default 1 then 0: rdchiral's
  radius-1 templates, then the radius-0 ones a template model may add as its general library), and the share
  of test reactions covered by one radius or the other;
- own-template round trips on test: ``apply_retro(own template, product)`` holds the recorded reactants,
  ``apply_forward(forward_template(own template), reactants)`` holds the recorded product, beside rdchiral
  run forward on the same swapped template (the alternative that ``apply_forward`` does not use);
- apply speed: the 50 most frequent templates applied to each of 100 test products (reactant sets for
  forward), with rdchiral's one-shot ``rdchiralRunText`` as the baseline row.

    .venv/bin/python benchmarks/reaction_templates.py [--limit N] [--workers 1,2] [--radii 1,0] [--cache-dir DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder would come first on sys.path and benchmarks/encoders.py would shadow the
# encoders package: put the repository root in its place.
_HERE = Path(__file__).resolve().parent
sys.path = [str(_HERE.parent) if Path(p or ".").resolve() == _HERE else p for p in sys.path]

import argparse
import time
from collections.abc import Callable, Sequence

from rdchiral.main import rdchiralRunText

from tasks.data.templates import (
    Extraction,
    MappedReaction,
    TemplateLibrary,
    apply_forward,
    apply_retro,
    build_template_library,
    extract_templates,
    forward_template,
    library_cache_path,
    read_mapped_reactions,
    template_coverage,
)
from tasks.metrics.smiles import canonicalize_smiles

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "uspto50k-mapped"
ROOT = Path(__file__).resolve().parents[1]
SPEED_TEMPLATES, SPEED_INPUTS = 50, 100


def row(label: str, value: str) -> None:
    """One line of the table, flushed so a long run shows its rows as they come."""
    print(f"{label:64s} {value}", flush=True)


def limited_copy(path: Path, limit: int | None, cache_dir: Path) -> Path:
    """``path`` itself, or its header and first ``limit`` data lines as a file in ``cache_dir`` (so the
    library cache, keyed by the file's bytes, works for smoke runs too)."""
    if limit is None:
        return path
    copy = cache_dir / f"{path.stem}-first{limit}.tsv"
    copy.parent.mkdir(parents=True, exist_ok=True)
    copy.write_bytes(b"".join(path.read_bytes().splitlines(keepends=True)[: limit + 1]))
    return copy


def timed(run: Callable[[], object]) -> tuple[object, float]:
    start = time.perf_counter()
    result = run()
    return result, time.perf_counter() - start


def round_trips(records: Sequence[MappedReaction], extractions: Sequence[Extraction]) -> dict[str, int]:
    """How many templated reactions get their recorded side back from their own template, each way."""
    counts = {"templated": 0, "retro": 0, "forward": 0, "forward rdchiral": 0, "errors": 0}
    for record, extraction in zip(records, extractions, strict=True):
        if extraction.template is None:
            continue
        counts["templated"] += 1
        reactants, product = canonicalize_smiles(record.reactants), canonicalize_smiles(record.product)
        forward = forward_template(extraction.template)
        try:
            counts["retro"] += reactants in apply_retro(extraction.template, record.product)
            counts["forward"] += product in apply_forward(forward, record.reactants)
            counts["forward rdchiral"] += product in rdchiral_forward(forward, record.reactants)
        except Exception as err:  # counted and shown: the round trip must not stop on one reaction
            counts["errors"] += 1
            print(f"  {record.where}: {type(err).__name__}: {err}", file=sys.stderr)
    return counts


def rdchiral_forward(template: str, reactants: str) -> set[str | None]:
    """rdchiral run in the forward direction, the reactant side grouped as one template (rdchiral runs a
    single reactant molecule)."""
    sides = template.split(">>")
    return {canonicalize_smiles(outcome) for outcome in rdchiralRunText(f"({sides[0]})>>{sides[1]}", reactants)}


def applications_per_second(
    apply: Callable[[str, str], object], templates: Sequence[str], inputs: Sequence[str]
) -> tuple[float, int]:
    """Templates applied per second (every template to every input) and how many applications matched."""
    matched = 0
    start = time.perf_counter()
    for text in inputs:
        for template in templates:
            matched += bool(apply(template, text))
    return len(templates) * len(inputs) / (time.perf_counter() - start), matched


def print_library(library: TemplateLibrary) -> None:
    stats = library.stats
    row("train rows / templated / failed", f"{stats.rows:,} / {stats.templated:,} / {stats.failed:,}")
    row("distinct templates (all)", f"{len(library):,}")
    row("distinct templates seen >= 2 times", f"{len(library.with_min_count(2)):,}")
    for reason, count in stats.reasons.items():
        row(f"  failed: {reason}", f"{count:,}")
    for where, failure in stats.failures[:5]:
        row(f"    e.g. {where}", str(failure)[:80])


def print_speed(library: TemplateLibrary, records: Sequence[MappedReaction]) -> None:
    templates = library.templates[:SPEED_TEMPLATES]
    forwards = [forward_template(t) for t in templates]
    sample = [r for r in records if r.error is None][:SPEED_INPUTS]
    products, reactants = [r.product for r in sample], [r.reactants for r in sample]
    label = f"{len(templates)} templates x {len(sample)} test"
    for name, apply, chosen, inputs in (
        (f"apply_retro, {label} products", apply_retro, templates, products),
        (f"rdchiralRunText (baseline), {label} products", rdchiralRunText, templates, products),
        (f"apply_forward, {label} reactant sets", apply_forward, forwards, reactants),
    ):
        rate, matched = applications_per_second(apply, chosen, inputs)
        row(name, f"{rate:,.0f} templates/s ({matched:,} of {len(chosen) * len(inputs):,} matched)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="use the first N train and test rows only")
    parser.add_argument(
        "--workers", default="1,2", help="worker counts to time extraction with (comma-separated)"
    )
    parser.add_argument("--radii", default="1,0", help="template radii to build libraries for (comma-separated)")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "runs" / "template-cache")
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"{DATA} not found: this benchmark needs ../shared/data/uspto50k-mapped")

    train = limited_copy(DATA / "train.tsv", args.limit, args.cache_dir)
    train_records = list(read_mapped_reactions(train))
    test_records = list(read_mapped_reactions(DATA / "test.tsv"))[: args.limit]
    print(
        f"USPTO-50K mapped: {len(train_records):,} train and {len(test_records):,} test reactions", flush=True
    )
    for workers in (int(w) for w in args.workers.split(",")):
        _, seconds = timed(lambda w=workers: extract_templates(train_records, workers=w))
        row(
            f"extract_templates train, workers={workers}",
            f"{seconds:8.1f} s ({len(train_records) / seconds:,.0f} rxn/s)",
        )
    covered_by_any: set[int] = set()
    for radius in (int(r) for r in args.radii.split(",")):
        print(f"radius {radius}", flush=True)
        for attempt in ("first", "second"):
            cached = library_cache_path(train, args.cache_dir, radius=radius).is_file()
            library, seconds = timed(lambda r=radius: build_template_library(train, args.cache_dir, workers=2, radius=r))
            row(
                f"build_template_library, {attempt} call",
                f"{seconds:8.1f} s ({'cache present' if cached else 'cold'} before)",
            )
        print_library(library)
        test_extractions, seconds = timed(lambda r=radius: extract_templates(test_records, workers=2, radius=r))
        coverage = template_coverage(library, test_extractions)
        row("test reactions templated", f"{coverage.templated:,} of {coverage.total:,} ({seconds:.1f} s)")
        row(
            "test coverage: own template in train library",
            f"{coverage.covered:,} of {coverage.total:,} ({100 * coverage.share:.1f} %)",
        )
        covered_by_any |= {i for i, e in enumerate(test_extractions) if e.template and library.index(e.template) is not None}
        counts = round_trips(test_records, test_extractions)
        for key, name in (("retro", "apply_retro"), ("forward", "apply_forward (RDKit)"),
                          ("forward rdchiral", "rdchiral forward (not used)")):  # fmt: skip
            share = 100 * counts[key] / max(counts["templated"], 1)
            row(
                f"test own-template round trip, {name}",
                f"{counts[key]:,} of {counts['templated']:,} ({share:.1f} %)",
            )
        row("test round-trip errors (raised)", f"{counts['errors']:,}")
        if radius == 1:
            print_speed(library, test_records)
    share = 100 * len(covered_by_any) / max(len(test_records), 1)
    row(f"test coverage by any radius of {args.radii}", f"{len(covered_by_any):,} of {len(test_records):,} ({share:.1f} %)")


if __name__ == "__main__":
    main()
