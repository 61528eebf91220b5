"""MMLU: 5-shot from the dev split per subject, letter extraction, per-subject and weighted accuracy.

Data layouts: the original release (`data/dev/<subject>_dev.csv`, `data/test/<subject>_test.csv`,
rows `question,A,B,C,D,answer`, no header) or parquet files with question/subject/choices/answer
(cais/mmlu; needs pandas+pyarrow).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

from dsv4ctl.bench.accuracy.extract import mmlu_extract
from dsv4ctl.bench.accuracy.items import Item, load_hub
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


def load(data_path: Path | None) -> tuple[list[dict], list[dict], list[Path]]:
    """(test rows, dev rows, files read) from a CSV tree (dir with dev/ and test/) or parquet files."""
    if data_path is None:
        test, dev, files = load_hub("cais/mmlu", "all", ("test", "dev"))
        norm = [{**r, "answer": LETTERS[int(r["answer"])]} for r in test]
        return norm, [{**r, "answer": LETTERS[int(r["answer"])]} for r in dev], files
    root = Path(data_path)
    if (root / "test").is_dir():
        files = sorted((root / "test").glob("*.csv")) + sorted((root / "dev").glob("*.csv"))
        return read_csv_split(root, "test"), read_csv_split(root, "dev"), files
    tests = sorted(root.glob("test*.parquet")) if root.is_dir() else [root]
    devs = sorted(root.glob("dev*.parquet")) if root.is_dir() else []
    if not tests:
        raise UserError("no MMLU data found", where=str(root),
                        fix="pass the folder holding dev/ and test/ CSVs, or test/dev parquet files")
    return ([r for p in tests for r in read_parquet(p)], [r for p in devs for r in read_parquet(p)],
            tests + devs)


def format_q(row: dict, with_answer: bool) -> str:
    opts = "".join(f"\n{LETTERS[i]}. {c}" for i, c in enumerate(row["choices"]))
    return f"{row['question']}{opts}\nAnswer:" + (f" {row['answer']}\n\n" if with_answer else "")


def build_items(test: list[dict], dev: list[dict], shots: int, chat: bool) -> list[Item]:
    """lm-eval's MMLU prompt: subject header, the subject's first k dev questions, then the question."""
    by_subject = defaultdict(list)
    for r in dev:
        by_subject[r["subject"]].append(r)
    items = []
    for i, row in enumerate(test):
        head = f"The following are multiple choice questions (with answers) about {row['subject'].replace('_', ' ')}.\n\n"
        prompt = head + "".join(format_q(ex, True) for ex in by_subject[row["subject"]][:shots]) + format_q(row, False)
        msgs = [{"role": "user", "content": prompt}] if chat else None
        items.append(Item(i, prompt, row["answer"], messages=msgs, subject=row["subject"]))
    return items


def score(text: str, gold: str) -> tuple[str | None, bool]:
    pred = mmlu_extract(text)
    return pred, pred == gold
