"""docs/formats.md and the command lines in README.md and docs/*.md stay true: each example file loads (task
YAML) or reads without a failed row (data), and each `zoo` command and option they name exists in the CLI."""

from __future__ import annotations

import ast
import dataclasses
import json
import re
import shlex
from pathlib import Path

import pytest
import typer.main

from tasks.config import TaskConfig, TaskConfigError, builtin_tasks, load_task, rows_in_range
from tasks.data.manifest import read_rows
from zoo.cli import _parse_overrides, app
from zoo.evaluation.fields import check_rows, template_fields

ROOT = Path(__file__).resolve().parents[1]
FORMATS = ROOT / "docs" / "formats.md"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.M | re.S)
NAMED = re.compile(r"^`([^`\n]+)`:\n```\w*\n(.*?)^```$", re.M | re.S)  # a "`path`:" line, then its block
INLINE = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.S)
SHELL = ("", "bash", "sh", "shell", "console")
PROMPTED_KINDS = ("generate", "multiple-choice")  # the kinds whose rows fill prompt_template
# Options of other programs that the docs name on their own, without the command they belong to.
FOREIGN_OPTIONS = {"--machine_rank"}  # accelerate launch, in docs/distributed.md


def _section(text: str, heading: str) -> str:
    """The text under a ``## heading`` up to the next heading of that level."""
    return text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def _table(text: str) -> list[list[str]]:
    """The body rows of the first Markdown table in ``text``, as cells."""
    lines = text[text.index("\n|") + 1 :].splitlines()
    table = lines[: next((i for i, line in enumerate(lines) if not line.startswith("|")), len(lines))]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in table[2:]]


def _ticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


@pytest.fixture(scope="module")
def formats() -> str:
    return FORMATS.read_text(encoding="utf-8")


@pytest.fixture()
def examples(formats: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every named example file of docs/formats.md, written under a working directory of its own."""
    for name, body in NAMED.findall(formats):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(body, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_every_example_file_is_named_and_every_task_example_loads(formats: str, examples: Path) -> None:
    files = sum(lang not in ("bash", "json") for lang, _ in FENCE.findall(formats))  # json: results.json, not input
    assert len(NAMED.findall(formats)) == files, "an example block lacks the `path`: line that names its file"
    for name in (name for name, _ in NAMED.findall(formats) if name.endswith(".yaml")):
        task = load_task(examples / name)
        assert task.name == Path(name).stem


def test_every_eval_command_reads_its_example_without_a_failed_row(formats: str, examples: Path) -> None:
    """Each `zoo eval` line is parsed by the CLI itself; its task and data then go through the same reader,
    row range and row checks as ``zoo.evaluate``, before any model is needed."""
    eval_cmd = typer.main.get_command(app).commands["eval"]  # type: ignore[attr-defined]
    lines = [line for lang, body in FENCE.findall(formats) if lang == "bash" for line in body.splitlines()]
    data_paths = []
    for line in (line for line in lines if line.startswith("zoo eval ")):
        params = eval_cmd.make_context("eval", shlex.split(line)[2:]).params
        task = load_task(params["task"], **_parse_overrides(params["overrides"]))
        rows = rows_in_range(read_rows(task.reader, params["data"], task.column("item"), task.modality), task.row_range)
        problems = [r.error for r in rows if not r.ok] + list(check_rows(task, rows).values())
        assert rows and not problems, f"{line}: {problems}"
        data_paths.append(Path(params["data"]))
    for name, _ in NAMED.findall(formats):
        if not name.endswith(".yaml"):
            assert any(p == Path(name) or p in Path(name).parents for p in data_paths), (
                f"no `zoo eval` command in docs/formats.md reads the example {name}"
            )


def test_builtin_task_table_matches_the_task_files(formats: str) -> None:
    table = {_ticked(row[0])[0]: row[1:] for row in _table(formats.split("### Built-in tasks", 1)[1])}
    assert sorted(table) == builtin_tasks()
    for name, (kind, reader, modality, columns) in table.items():
        task = load_task(name)
        assert (kind, reader, None if modality == "none" else modality) == (task.kind, task.reader, task.modality), name
        prompted = template_fields(task.prompt_template) if task.kind in PROMPTED_KINDS else set()
        named = set(task.fields.values()) | prompted
        # a property task's many label columns may be abridged ("the 12 assay columns (`NR-AR` ... `SR-p53`)")
        assert named <= set(_ticked(columns)) <= named | set(task.targets), name
        assert task.kind != "property" or set(_ticked(columns)) & set(task.targets) or "columns" in columns, name


def test_task_key_table_covers_every_task_key(formats: str) -> None:
    keys = [_ticked(row[0])[0] for row in _table(_section(formats, "Task YAML"))]
    assert sorted(keys) == sorted(["include", *(f.name for f in dataclasses.fields(TaskConfig))])


def _result_keys_written() -> set[str]:
    """The keys of the dictionaries that ``evaluate`` builds as ``results`` (read from its source)."""
    tree = ast.parse((ROOT / "zoo" / "evaluation" / "evaluate.py").read_text(encoding="utf-8"))
    results = next(
        node.value for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "results" for t in node.targets)
    )
    return {k.value for d in ast.walk(results) if isinstance(d, ast.Dict) for k in d.keys if isinstance(k, ast.Constant)}


def _keys(value: object, opaque: tuple[str, ...]) -> set[str]:
    """Every key in a JSON value, not looking inside the mappings named ``opaque``."""
    if isinstance(value, list):
        return set().union(*(_keys(v, opaque) for v in value))
    if not isinstance(value, dict):
        return set()
    return set(value).union(*(_keys(v, opaque) for k, v in value.items() if k not in opaque))


def test_results_json_example_has_the_keys_evaluate_writes(formats: str) -> None:
    example = json.loads(next(body for lang, body in FENCE.findall(_section(formats, "results.json")) if lang == "json"))
    assert _keys(example, ("task", "metrics", "spec", "processor", "generation", "packages")) == _result_keys_written()
    assert list(example["task"]) == [f.name for f in dataclasses.fields(TaskConfig)]


def _cli_options() -> dict[str, set[str]]:
    """``{command: its options}``, from the CLI's own app object."""
    group = typer.main.get_command(app)
    return {
        name: {opt for param in command.params for opt in (*param.opts, *param.secondary_opts) if opt.startswith("-")}
        | {"--help"}
        for name, command in group.commands.items()  # type: ignore[attr-defined]
    }


def _shell_snippets(text: str) -> list[str]:
    """Shell command lines in Markdown: lines of shell code blocks (``\\`` continuations joined) and inline code."""
    snippets = [line for lang, body in FENCE.findall(text) if lang in SHELL for line in body.replace("\\\n", " ").splitlines()]
    return snippets + [span.replace("\n", " ") for _, span in INLINE.findall(FENCE.sub("", text))]


def cli_mistakes(text: str, commands: dict[str, set[str]]) -> tuple[list[str], set[str]]:
    """The `zoo` commands and options named in ``text`` that the CLI lacks, and the commands it names."""
    every_option = set().union(*commands.values())
    mistakes, named = [], set()
    for snippet in _shell_snippets(text):
        for segment in re.split(r"&&|\|\||;|\|", snippet):
            words = segment.split()
            starts = [i for i, w in enumerate(words[:-1]) if w in ("zoo", "zoo.cli") and re.fullmatch(r"[a-z][a-z-]*", words[i + 1])]
            if starts:
                command, rest, known = words[starts[0] + 1], words[starts[0] + 2 :], commands.get(words[starts[0] + 1])
                named.add(command)
                if known is None:
                    mistakes.append(f"zoo {command} (in {segment.strip()!r})")
                    continue
            elif words and words[0].startswith("-"):
                rest, known = words, every_option | FOREIGN_OPTIONS
            else:
                continue
            options = (re.match(r"[\[(]*(--?[A-Za-z][\w-]*)", w) for w in rest)
            mistakes += [f"{m.group(1)} (in {segment.strip()!r})" for m in options if m and m.group(1) not in known]
    return mistakes, named


def test_cli_mistakes_finds_unknown_commands_and_options() -> None:
    mistakes, named = cli_mistakes("Run `zoo eval M --tsak vqa` or `zoo evaluate M`, then `--nope`.", _cli_options())
    assert mistakes == ["--tsak (in 'zoo eval M --tsak vqa')", "zoo evaluate (in 'zoo evaluate M')", "--nope (in '--nope')"]
    assert named == {"eval", "evaluate"}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_docs_name_only_commands_and_options_the_cli_has(doc: Path) -> None:
    mistakes, _ = cli_mistakes(doc.read_text(encoding="utf-8"), _cli_options())
    assert not mistakes, f"{doc.name} names what `zoo --help` lacks: {mistakes}"


def test_readme_names_every_cli_command() -> None:
    _, named = cli_mistakes((ROOT / "README.md").read_text(encoding="utf-8"), _cli_options())
    assert named == set(_cli_options())


# `include:` as docs/formats.md describes it: a built-in task from a user's file in any folder, with a file
# beside the including one taking precedence over a built-in of the same name, whatever the working directory.


def test_a_user_task_includes_a_builtin_by_name_or_file_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "vqa.yaml").write_text("kind: generate\nmetric: exact_match\n")  # in the working directory only
    mine = tmp_path / "elsewhere" / "mine.yaml"
    mine.parent.mkdir()
    for parent in ("vqa", "vqa.yaml", "vqa.yml"):
        mine.write_text(f"include: {parent}\ngeneration: {{max_new_tokens: 4}}\n")
        task = load_task(mine)
        assert (task.name, task.metric, task.generation) == ("mine", "vqa", {"max_new_tokens": 4}), parent
        assert task.prompt_template == load_task("vqa").prompt_template


def test_a_file_beside_the_user_task_wins_over_a_builtin(tmp_path: Path) -> None:
    (tmp_path / "vqa.yaml").write_text("include: vqa\nmetric: exact_match\n")  # its own include: the built-in
    (tmp_path / "common").mkdir()
    (tmp_path / "common" / "base.yaml").write_text("include: ../vqa.yaml\ndescription: shared\n")
    (tmp_path / "mine.yaml").write_text("include: vqa.yaml\n")
    assert load_task(tmp_path / "mine.yaml").metric == "exact_match"
    (tmp_path / "mine.yaml").write_text("include: common/base.yaml\n")
    assert (load_task(tmp_path / "mine.yaml").metric, load_task(tmp_path / "mine.yaml").description) == ("exact_match", "shared")
    (tmp_path / "mine.yaml").write_text("include: vqa\n")  # a bare name is always the built-in
    assert load_task(tmp_path / "mine.yaml").metric == "vqa"


def test_include_mistakes_say_what_to_write(tmp_path: Path) -> None:
    folder = tmp_path.name  # "../<folder>/b.yaml" is b.yaml however it is spelled
    (tmp_path / "a.yaml").write_text(f"include: ../{folder}/b.yaml\n")
    (tmp_path / "b.yaml").write_text(f"include: ../{folder}/a.yaml\n")
    with pytest.raises(TaskConfigError, match="include cycle"):
        load_task(tmp_path / "a.yaml")
    (tmp_path / "a.yaml").write_text("include: vqa-typo.yaml\n")
    with pytest.raises(TaskConfigError, match=r"no file .*vqa-typo\.yaml and no built-in task of that name.*: .*\bcaptioning, "):
        load_task(tmp_path / "a.yaml")
    (tmp_path / "a.yaml").write_text("include: [vqa]\n")
    with pytest.raises(TaskConfigError, match="include must be a built-in task name or a YAML file path"):
        load_task(tmp_path / "a.yaml")
