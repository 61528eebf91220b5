"""MMLU: 5-shot from the dev split per subject, letter extraction, per-subject and weighted accuracy.

Data layouts: the test split shipped in the package (default, JSONL), the original release
(`data/dev/<subject>_dev.csv`, `data/test/<subject>_test.csv`, rows `question,A,B,C,D,answer`, no
header), JSONL (a file, or a folder with test.jsonl[.gz] and dev.jsonl[.gz]) or parquet files with
question/subject/choices/answer (cais/mmlu; needs pandas+pyarrow).
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

from dsv4ctl.bench.accuracy.extract import mmlu_extract
from dsv4ctl.bench.accuracy.items import Item, TaskData, first_existing, packaged, read_lines
from dsv4ctl.errors import UserError

LETTERS = "ABCD"
EXTRACTOR = "mmlu: 'Answer: X' else first lone letter A-D"


def read_csv_split(root: Path, split: str) -> list[dict]:
    rows = []
    for f in sorted((root / split).glob(f"*_{split}.csv")):
        subject = f.name[: -len(f"_{split}.csv")]
        with open(f, newline="", encoding="utf-8") as fh:
            for n, r in enumerate(csv.reader(fh), 1):
                if len(r) != 6 or r[5].strip() not in LETTERS:
                    raise UserError("expected question,A,B,C,D,answer", where=f"{f}:{n}",
                                    fix="use the original MMLU CSV layout")
                rows.append({"subject": subject, "question": r[0], "choices": r[1:5], "answer": r[5].strip()})
    return rows


def read_parquet(path: Path) -> list[dict]:
    try:
        import pandas as pd
    except ImportError:
        raise UserError("reading parquet needs pandas and pyarrow", where=str(path),
                        fix="pip install pandas pyarrow, or use the CSV layout") from None
    df = pd.read_parquet(path)
    return [{"subject": r["subject"], "question": r["question"], "choices": list(r["choices"]),
             "answer": LETTERS[int(r["answer"])]} for _, r in df.iterrows()]


def jsonl_row(row: dict) -> dict:
    """One JSONL question in either common shape: answer_a..d + correct_answer + topic (the copy
    shipped here), or subject + choices + answer (index or letter, as cais/mmlu)."""
    if "choices" in row:
        answer = row["answer"]
        answer = LETTERS[answer] if isinstance(answer, int) else str(answer).strip()
        return {"subject": str(row["subject"]).replace(" ", "_"), "question": row["question"],
                "choices": list(row["choices"]), "answer": answer}
    return {"subject": str(row["topic"]).replace(" ", "_"), "question": row["question"],
            "choices": [row[f"answer_{c}"] for c in "abcd"], "answer": row["correct_answer"].strip()}


def read_jsonl(path: Path) -> list[dict]:
    rows = []
    for n, line in enumerate(read_lines(path), 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            if raw.get("question") == "question":  # a CSV header row carried into the JSONL: not a question
                continue
            row = jsonl_row(raw)
        except (json.JSONDecodeError, KeyError, TypeError, IndexError, AttributeError):
            raise UserError("expected question, answer_a..answer_d, correct_answer, topic (or subject, choices, "
                            "answer)", where=f"{path}:{n}", fix="use MMLU JSONL or the original CSV layout") from None
        if row["answer"] not in LETTERS or len(row["choices"]) != 4:
            raise UserError("the answer must be A-D with four choices", where=f"{path}:{n}", fix="correct the row")
        rows.append(row)
    return rows


def load(data_path: Path | None) -> TaskData:
    """Test rows and dev rows for shots: the test split shipped in the package (no dev split: shots
    are other test questions of the same subject), or a user's CSV tree, JSONL or parquet."""
    root = Path(data_path) if data_path is not None else packaged("mmlu", "test.jsonl.gz")
    if (root / "test").is_dir():
        files = sorted((root / "test").glob("*.csv")) + sorted((root / "dev").glob("*.csv"))
        return _with_pool(read_csv_split(root, "test"), read_csv_split(root, "dev"), files)
    jsonl = (".jsonl", ".gz")
    test = first_existing(root, ("test.jsonl", "test.jsonl.gz")) if root.is_dir() else root
    if test is not None and test.suffix in jsonl:
        dev = first_existing(test.parent, ("dev.jsonl", "dev.jsonl.gz"))
        return _with_pool(read_jsonl(test), read_jsonl(dev) if dev else [], [test] + ([dev] if dev else []))
    tests = sorted(root.glob("test*.parquet")) if root.is_dir() else [root]
    devs = sorted(root.glob("dev*.parquet")) if root.is_dir() else []
    if not tests:
        raise UserError("no MMLU data found", where=str(root),
                        fix="pass the folder holding dev/ and test/ CSVs, a JSONL file, or test/dev parquet files")
    return _with_pool([r for p in tests for r in read_parquet(p)], [r for p in devs for r in read_parquet(p)],
                      tests + devs)


def _with_pool(test: list[dict], dev: list[dict], files: list[Path]) -> TaskData:
    """Shots from dev when there is one; else from the test split itself (build_items skips the question asked)."""
    return TaskData(test, dev, files, "dev") if dev else TaskData(test, test, files, "test")


def format_q(row: dict, with_answer: bool) -> str:
    opts = "".join(f"\n{LETTERS[i]}. {c}" for i, c in enumerate(row["choices"]))
    return f"{row['question']}{opts}\nAnswer:" + (f" {row['answer']}\n\n" if with_answer else "")


def build_items(test: list[dict], pool: list[dict], shots: int, chat: bool) -> list[Item]:
    """lm-eval's MMLU prompt: subject header, the subject's first k exemplars from the pool (never the
    question being asked, when the pool is the test split itself), then the question."""
    by_subject = defaultdict(list)
    for r in pool:
        by_subject[r["subject"]].append(r)
    items = []
    for i, row in enumerate(test):
        shots_of = [ex for ex in by_subject[row["subject"]] if ex is not row and ex["question"] != row["question"]]
        subject = row["subject"].replace("_", " ")
        head = f"The following are multiple choice questions (with answers) about {subject}.\n\n"
        prompt = head + "".join(format_q(ex, True) for ex in shots_of[:shots]) + format_q(row, False)
        msgs = [{"role": "user", "content": prompt}] if chat else None
        items.append(Item(i, prompt, row["answer"], messages=msgs, subject=row["subject"]))
    return items


def score(text: str, gold: str) -> tuple[str | None, bool]:
    pred = mmlu_extract(text)
    return pred, pred == gold
