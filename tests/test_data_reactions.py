"""USPTO-50K reader on the shared split, and clear errors for malformed rows in both readers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.data import ReactionRecord, read_reaction_file, read_uspto50k
from tasks.data.reactions import scan_uspto50k


def test_uspto50k_test_split(shared_dir: Path) -> None:
    records = read_uspto50k(shared_dir / "data" / "uspto50k", "test")
    assert len(records) == 5004
    assert records[0] == ReactionRecord(
        reactants="C1=COCCC1.COC(=O)CCC(=O)c1ccc(O)cc1O",
        product="COC(=O)CCC(=O)c1ccc(OC2CCCCO2)cc1O",
        reaction_class=1,
    )
    assert {r.reaction_class for r in records} == set(range(1, 11))
    assert all(" " not in r.product and " " not in r.reactants for r in records)


def _write_split(root: Path, src: list[str], tgt: list[str]) -> Path:
    (root / "src-test.txt").write_text("\n".join(src) + "\n")
    (root / "tgt-test.txt").write_text("\n".join(tgt) + "\n")
    return root


def test_uspto50k_malformed_rows_name_file_and_line(tmp_path: Path) -> None:
    root = _write_split(tmp_path, ["<RX_1> C C O", "<RX_11> C C"], ["C C . O", "C"])
    with pytest.raises(ValueError, match=r"src-test\.txt:2: expected a <RX_n> class token \(n = 1\.\.10\)"):
        read_uspto50k(root, "test")
    root = _write_split(tmp_path, ["<RX_1> C C O", "C C"], ["C C . O", "C"])
    with pytest.raises(ValueError, match=r"src-test\.txt:2"):
        read_uspto50k(root, "test")
    root = _write_split(tmp_path, ["<RX_1> C C O", "<RX_2> C C"], ["C C . O", "  "])
    with pytest.raises(ValueError, match=r"tgt-test\.txt:2: empty reactants"):
        read_uspto50k(root, "test")
    root = _write_split(tmp_path, ["<RX_1> C C O"], ["C C . O", "C"])
    with pytest.raises(ValueError, match="has 1 lines but .* has 2"):
        read_uspto50k(root, "test")
    with pytest.raises(ValueError, match="unknown split 'val'"):
        read_uspto50k(root, "val")


def test_reaction_csv_and_jsonl(tmp_path: Path) -> None:
    csv_path = tmp_path / "r.csv"
    csv_path.write_text("id,reaction,label\n1,CC.O>>CCO,3\n2,CC>[Pt]>C=C,4\n")
    assert read_reaction_file(csv_path, reaction_column="reaction", class_column="label") == [
        ReactionRecord("CC.O", "CCO", 3),
        ReactionRecord("CC", "C=C", 4),
    ]
    jsonl_path = tmp_path / "r.jsonl"
    jsonl_path.write_text(json.dumps({"rxn": "CC.O>>CCO"}) + "\n\n" + json.dumps({"rxn": "CCO"}) + "\n")
    with pytest.raises(ValueError, match=r"r\.jsonl:3: expected reaction SMILES 'reactants>>products'"):
        read_reaction_file(jsonl_path)
    with pytest.raises(
        ValueError, match=r"r\.csv:2: no column 'rxn'; columns are \['id', 'label', 'reaction'\]"
    ):
        read_reaction_file(csv_path)


def test_non_utf8_bytes_name_file_line_and_byte(tmp_path: Path) -> None:
    (tmp_path / "src-test.txt").write_bytes(b"<RX_1> C C O\n<RX_2> C \xff C\n")
    (tmp_path / "tgt-test.txt").write_bytes(b"C C . O\nC . C\n")
    with pytest.raises(ValueError, match=r"src-test\.txt:2: byte 0xff at column 10 is not valid UTF-8"):
        read_uspto50k(tmp_path, "test")
    (tmp_path / "r.jsonl").write_bytes(b'{"rxn": "CC.O>>CCO"}\n{"rxn": "C\xfe>>C"}\n')
    with pytest.raises(ValueError, match=r"r\.jsonl:2: byte 0xfe at column 11 is not valid UTF-8"):
        read_reaction_file(tmp_path / "r.jsonl")
    (tmp_path / "r.csv").write_bytes(b"rxn\nCC.O>>CCO\nC\xfe>>C\n")
    with pytest.raises(ValueError, match=r"r\.csv:3: byte 0xfe is not valid UTF-8"):
        read_reaction_file(tmp_path / "r.csv")


def test_scan_keeps_every_line_with_its_record_or_error(tmp_path: Path) -> None:
    """What evaluation reads: a bad line is reported in place and the lines after it still pair up."""
    (tmp_path / "src-test.txt").write_bytes(b"<RX_1> C C O\n<RX_2> C \xff C\nC C\n<RX_3> C N\n<RX_4> C S\n")
    (tmp_path / "tgt-test.txt").write_bytes(b"C C . O\nC . C\nC\nC . N\n")
    scanned = scan_uspto50k(tmp_path, "test")
    assert [source for source, _ in scanned] == [f"src-test.txt:{n}" for n in range(1, 6)]
    assert scanned[0][1] == ReactionRecord("CC.O", "CCO", 1) and scanned[3][1] == ReactionRecord("C.N", "CN", 3)
    assert "src-test.txt:2: byte 0xff" in scanned[1][1]
    assert "src-test.txt:3: expected a <RX_n> class token" in scanned[2][1]
    assert "src-test.txt:5: tgt-test.txt has no line 5" in scanned[4][1]
