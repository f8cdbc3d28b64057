"""What ``import zoo`` and ``zoo.load(<tiny card>)`` cost, against named baselines, each in a fresh process.

Rows (wall time of a whole fresh ``python -c ...`` process, median of ``--repeats`` rounds; the rounds alternate
the rows so machine noise hits all of them alike):

- ``python -c pass``: the interpreter alone;
- baselines: bare ``import torch``; ``import transformers`` (lazy: it loads little until a model class is
  touched);
- ``import zoo``;
- per card: ``import zoo; zoo.load(card)``, and its third-party floor: a process that first imports exactly
  the non-modalzoo modules that loading the card ends up importing (found by a probe process), then times
  ``import zoo; zoo.load(card)`` from inside. That inner time is what modalzoo itself adds (its own modules,
  building the model, reading and checking its weights) with no third-party import left to pay; the floor
  row is the process's wall time less it.

Each time is also given as a ratio to ``import torch`` and to ``import transformers``. With ``--breakdown``
(default) a ``python -X importtime`` run per card lists the packages whose imports take the most time (self
time summed per top-level package, so the numbers add up; -X importtime itself inflates them).

    .venv/bin/python benchmarks/load_cost.py [--cards tiny-test-vlm scene-clip-tiny scene-vlm-tiny]
        [--repeats 3] [--no-breakdown]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OURS = ("zoo", "encoders", "projectors", "tasks", "model_cards", "benchmarks")
TINY_CARDS = ("tiny-test-vlm", "scene-clip-tiny", "scene-vlm-tiny")

PROBE = """
import json, sys
ours = {ours!r}
import zoo
zoo.load({card!r})
print(json.dumps([m for m in sys.modules if m.split(".")[0] not in ours and m != "__main__"]))
"""

FLOOR = """
import importlib, json, sys, time
failed = 0
for name in json.load(open({path!r})):
    if name in sys.modules:
        continue
    try:
        importlib.import_module(name)
    except BaseException:
        failed += 1
started = time.perf_counter()
import zoo
zoo.load({card!r})
print(json.dumps({{"own": time.perf_counter() - started, "failed": failed}}))
"""


def run(code: str, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *flags, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)


def wall(code: str) -> tuple[float, str]:
    """Seconds the fresh process took, and its last line of output."""
    started = time.perf_counter()
    out = run(code)
    elapsed = time.perf_counter() - started
    if out.returncode != 0:
        raise SystemExit(f"{code!r} failed:\n{out.stderr[-2000:]}")
    return elapsed, (out.stdout.strip().splitlines() or [""])[-1]


def floor_code(card: str, scratch: Path) -> tuple[str, int]:
    """The floor process's code for ``card`` and how many modules it imports."""
    out = run(PROBE.format(ours=OURS, card=card))
    if out.returncode != 0:
        raise SystemExit(f"zoo.load({card!r}) failed:\n{out.stderr[-2000:]}")
    modules = json.loads(out.stdout.strip().splitlines()[-1])
    path = scratch / f"{card}.modules.json"
    path.write_text(json.dumps(modules))
    return FLOOR.format(path=str(path), card=card), len(modules)


def importtime_by_package(card: str, top: int) -> list[tuple[str, float]]:
    """Seconds of import self time per top-level package while loading ``card`` (largest first), with the
    modalzoo packages summed into one 'modalzoo (...)' entry."""
    out = run(f"import zoo; zoo.load({card!r})", "-X", "importtime")
    per_package: dict[str, float] = defaultdict(float)
    for line in out.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _, name = line.removeprefix("import time:").split("|")
        package = name.strip().split(".")[0]
        per_package["modalzoo (" + "+".join(OURS[:4]) + ")" if package in OURS else package] += int(self_us) / 1e6
    ranked = sorted(per_package.items(), key=lambda kv: -kv[1])
    ours = [kv for kv in ranked if kv[0].startswith("modalzoo")]
    return ranked[:top] + [kv for kv in ours if kv not in ranked[:top]] + [("total", sum(per_package.values()))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cards", nargs="+", default=list(TINY_CARDS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--breakdown", action=argparse.BooleanOptionalAction, default=True,
                        help="a -X importtime breakdown per card (one more process per card)")
    parser.add_argument("--top", type=int, default=12, help="packages listed per card in the breakdown")
    args = parser.parse_args()

    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        rows: dict[str, str] = {
            "python -c pass": "pass",
            "import torch (baseline)": "import torch",
            "import transformers (baseline)": "import transformers",
            "import zoo": "import zoo",
        }
        sizes = {}
        for card in args.cards:
            rows[f"zoo.load({card!r})"] = f"import zoo; zoo.load({card!r})"
            code, sizes[card] = floor_code(card, Path(scratch))
            rows[f"  third-party floor of {card}"] = code
        times: dict[str, list[float]] = {name: [] for name in rows}
        own: dict[str, list[float]] = {card: [] for card in args.cards}
        for _ in range(args.repeats):
            for name, code in rows.items():
                seconds, last = wall(code)
                card = name.removeprefix("  third-party floor of ")
                if card in own:
                    inner = json.loads(last)["own"]
                    own[card].append(inner)
                    seconds -= inner
                times[name].append(seconds)

    median = {name: statistics.median(values) for name, values in times.items()}
    torch_s, transformers_s = median["import torch (baseline)"], median["import transformers (baseline)"]
    width = max(map(len, rows))
    print(f"fresh processes, median of {args.repeats}; python {sys.version.split()[0]}")
    print(f"{'':{width}}  {'seconds':>8}  {'x torch':>8}  {'x transformers':>14}")
    for name, seconds in median.items():
        print(f"{name:{width}}  {seconds:8.2f}  {seconds / torch_s:8.2f}  {seconds / transformers_s:14.2f}")
    for card in args.cards:
        inner, load = statistics.median(own[card]), median[f"zoo.load({card!r})"]
        print(f"{card}: modalzoo's own part (its modules, the build, the weights) {inner:.2f} s with the "
              f"{sizes[card]} third-party modules already imported: {inner / load:.0%} of the fresh load")
    if args.breakdown:
        for card in args.cards:
            print(f"\nimport self time per package while loading {card} (python -X importtime):")
            for package, seconds in importtime_by_package(card, args.top):
                print(f"  {package:40s} {seconds:6.2f} s")


if __name__ == "__main__":
    main()
