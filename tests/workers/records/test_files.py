"""Reading user files: one bad line is one rejection, and the lines after it are still read."""

from __future__ import annotations

from pathlib import Path

from workers.records.files import iter_rows, open_source


def test_a_huge_csv_cell_and_bad_utf8_reject_their_line_and_the_file_goes_on(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tickets.csv"
    huge = "x" * 300_000  # over the csv module's default 128 KiB field limit
    path.write_bytes(b"id,body\n" + b"a,fine\n" + f"b,{huge}\n".encode()
                     + b"c,caf\xe9 latin-1\n" + b"d,after\n")
    with open_source(str(path)) as stream:
        rows = list(iter_rows(stream, "csv"))
    assert [n for n, _ in rows] == [2, 3, 4, 5]
    assert rows[0][1] == {"id": "a", "body": "fine"}
    assert isinstance(rows[1][1], dict) and len(rows[1][1]["body"]) == 300_000  # read whole;
    # the record's own size rule rejects it with its reason when produced
    assert rows[2][1] == "not valid UTF-8"
    assert rows[3][1] == {"id": "d", "body": "after"}


def test_bad_utf8_in_jsonl_rejects_only_its_line(tmp_path: Path) -> None:
    path = tmp_path / "tickets.jsonl"
    path.write_bytes(b'{"id": "a", "body": "ok"}\n{"id": "b", "body": "caf\xe9"}\n'
                     b'{"id": "c", "body": "ok"}\n')
    with open_source(str(path)) as stream:
        rows = list(iter_rows(stream, "jsonl"))
    assert [r for _, r in rows] == [{"id": "a", "body": "ok"}, "not valid UTF-8",
                                    {"id": "c", "body": "ok"}]
