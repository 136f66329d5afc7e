"""Loading member/non-member texts, WikiMIA and MIMIR files; duplicates between the sets."""

from __future__ import annotations

import json

import pytest

from miaudit.exceptions import ValidationError
from miaudit.llm.data import (
    TextSplit,
    find_duplicates,
    load_member_split,
    load_mimir,
    load_texts,
    load_wikimia,
    remove_duplicates,
)

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron".split()


def _jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_jsonl_csv_and_folder(tmp_path):
    _jsonl(tmp_path / "m.jsonl", [{"text": "first member", "id": "a"}, {"text": "second one"}])
    texts, ids = load_texts(tmp_path / "m.jsonl")
    assert texts == ["first member", "second one"] and ids == ["m-0", "m-1"]
    (tmp_path / "n.csv").write_text('body,x\n"a, non-member",1\nanother,2\n', encoding="utf-8")
    texts, _ = load_texts(tmp_path / "n.csv", text_field="body")
    assert texts == ["a, non-member", "another"]
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "b.txt").write_text("text b", encoding="utf-8")
    (folder / "a.txt").write_text("text a", encoding="utf-8")
    texts, ids = load_texts(folder)
    assert texts == ["text a", "text b"] and ids == ["a.txt", "b.txt"]
    split = load_member_split(tmp_path / "m.jsonl", folder)
    assert split.is_member == [True, True, False, False]
    assert len(set(split.record_ids)) == 4


def test_bad_files(tmp_path):
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.txt").write_bytes("ok \xff\xfe".encode("latin-1"))
    with pytest.raises(ValidationError, match=r"x\.txt: not UTF-8 text \(invalid byte at offset 3"):
        load_texts(tmp_path / "bad")
    _jsonl(tmp_path / "nofield.jsonl", [{"body": "x"}])
    with pytest.raises(ValidationError, match="no field 'text'"):
        load_texts(tmp_path / "nofield.jsonl")
    (tmp_path / "broken.jsonl").write_text('{"text": "a"}\n{"text": \n', encoding="utf-8")
    with pytest.raises(ValidationError, match="line 2: invalid JSON"):
        load_texts(tmp_path / "broken.jsonl")
    _jsonl(tmp_path / "empty.jsonl", [{"text": "fine"}, {"text": "  "}])
    with pytest.raises(ValidationError, match=r"\[1\]: empty text"):
        load_texts(tmp_path / "empty.jsonl")
    (tmp_path / "x.xlsx").write_text("?", encoding="utf-8")
    with pytest.raises(ValidationError, match="unknown file type"):
        load_texts(tmp_path / "x.xlsx")
    with pytest.raises(ValidationError, match="no such file"):
        load_texts(tmp_path / "missing.jsonl")


def test_wikimia(tmp_path):
    rows = [
        {"input": "seen in pre-training", "label": 1},
        {"input": "an event of 2024", "label": 0},
        {"input": "another old page", "label": 1},
    ]
    split = load_wikimia(_jsonl(tmp_path / "WikiMIA_length32.jsonl", rows))
    assert split.members == ["seen in pre-training", "another old page"]
    assert split.non_members == ["an event of 2024"]
    (tmp_path / "w.json").write_text(json.dumps(rows), encoding="utf-8")
    assert load_wikimia(tmp_path / "w.json").members == split.members
    _jsonl(tmp_path / "bad.jsonl", [{"input": "x", "label": 2}])
    with pytest.raises(ValidationError, match="label: expected 1 or 0"):
        load_wikimia(tmp_path / "bad.jsonl")
    _jsonl(tmp_path / "bad2.jsonl", [{"text": "x", "label": 1}])
    with pytest.raises(ValidationError, match="WikiMIA row"):
        load_wikimia(tmp_path / "bad2.jsonl")


def test_mimir_rows_and_lists(tmp_path):
    rows = [
        {"member": "m one", "nonmember": "n one", "member_neighbors": ["x"],
         "nonmember_neighbors": ["y"]},
        {"member": "m two", "nonmember": "n two", "member_neighbors": [],
         "nonmember_neighbors": []},
    ]  # fmt: skip
    split = load_mimir(_jsonl(tmp_path / "arxiv_ngram_13_0.8.jsonl", rows))
    assert split.members == ["m one", "m two"] and split.non_members == ["n one", "n two"]
    (tmp_path / "lists.json").write_text(
        json.dumps({"member": ["a a", "b b"], "nonmember": ["c c"]}), encoding="utf-8"
    )
    split = load_mimir(tmp_path / "lists.json")
    assert split.members == ["a a", "b b"] and split.non_members == ["c c"]
    _jsonl(tmp_path / "bad.jsonl", [{"text": "x"}])
    with pytest.raises(ValidationError, match="MIMIR fields"):
        load_mimir(tmp_path / "bad.jsonl")


def test_text_split_checks():
    with pytest.raises(ValidationError, match="distinct"):
        TextSplit(["a"], ["b"], ["x"], ["x"])
    with pytest.raises(ValidationError, match="member_ids: 2 ids for 1 texts"):
        TextSplit(["a"], ["b"], ["x", "y"], ["z"])


def test_duplicates_exact_and_near():
    long_text = " ".join(WORDS)  # 15 words
    members = [long_text, "Completely unrelated member text here.", long_text + " "]
    non_members = [
        long_text.upper(),  # exact after normalisation
        " ".join(WORDS[:14]) + " changed",  # 2 of 3 13-grams shared: overlap 2/3
        " ".join(WORDS[1:]) + " omega",  # 2 of 3 13-grams shared
        "a fresh and independent non member",  # no overlap
        " ".join(reversed(WORDS)),  # same words, no shared 13-gram
    ]
    rep = find_duplicates(members, non_members)
    assert rep.exact_pairs == [(0, 0)]
    assert rep.member_exact_duplicates == [2]
    assert rep.overlap[0] == 1.0
    assert rep.overlap[1] == pytest.approx(2 / 3)
    assert rep.overlap[3] == 0.0 and rep.overlap[4] == 0.0
    assert rep.near_duplicates == [0]
    rep2 = find_duplicates(members, non_members, threshold=0.5)
    assert rep2.near_duplicates == [0, 1, 2]
    split, rep3 = remove_duplicates(TextSplit(members, non_members), threshold=0.5)
    assert split.non_members == non_members[3:]
    assert split.members == members[:2]
    assert split.non_member_ids == ["non_member-3", "non_member-4"]
    assert rep3.to_dict()["n_near_duplicate_non_members"] == 3


def test_short_texts_use_the_whole_text_as_one_gram():
    rep = find_duplicates(["a short member"], ["A short   member!", "short member"], n=13)
    assert rep.overlap == [1.0, 0.0]


def test_duplicate_options():
    with pytest.raises(ValidationError, match="threshold"):
        find_duplicates(["a"], ["b"], threshold=0)
    with pytest.raises(ValidationError, match="n: expected"):
        find_duplicates(["a"], ["b"], n=0)
