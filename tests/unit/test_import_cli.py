"""The import CLI's file handling (no network)."""

import io

from infra.tools.import_directory import Totals, batches, main


def test_rows_carry_their_file_line_and_in_file_duplicates_are_caught_case_insensitively():
    text = "userid,name\nA1,x\n\"b2\",\"multi\nline\"\na1,dup\nc3,\n"
    totals = Totals()
    chunks = list(batches(io.StringIO(text), totals, size=2))
    assert [[(r["userid"], r["line"]) for r in chunk] for chunk in chunks] == [[("A1", 2), ("b2", 4)], [("c3", 6)]]
    assert totals.errors == [{"line": 5, "userid": "a1", "reason": "duplicate userid (first on line 2)"}]
    assert "name" not in chunks[1][0]  # an empty cell is left out: the stored value is kept


def test_url_and_token_go_together(tmp_path, capsys):
    people = tmp_path / "p.csv"
    people.write_text("userid,name\n")
    assert main([str(people), "--url", "https://campus.example"]) == 2
    assert "both --url and --token" in capsys.readouterr().err
