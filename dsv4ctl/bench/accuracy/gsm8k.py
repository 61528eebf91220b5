"""GSM8K: few-shot exemplars from the train split, questions from test, chat or completion prompts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dsv4ctl.bench.accuracy.extract import gsm8k_extract, gsm8k_gold
from dsv4ctl.bench.accuracy.items import Item, TaskData, first_existing, packaged, read_lines
from dsv4ctl.errors import UserError

STOP = ["Question:", "</s>", "<|im_end|>"]
EXTRACTOR = ("gsm8k: strict '#### N' else last number (lm-eval flexible); ',', '$', trailing '.' and "
             "special-token names ignored")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    for n, line in enumerate(read_lines(path), 1):
        if line.strip():
            try:
                row = json.loads(line)
                rows.append({"question": row["question"], "answer": row["answer"]})
            except (json.JSONDecodeError, KeyError, TypeError):
                raise UserError("expected {\"question\": ..., \"answer\": ...}", where=f"{path}:{n}",
                                fix="point --data-path at GSM8K JSONL (grade_school_math/data)") from None
    return rows


def load(data_path: Path | None) -> TaskData:
    """Test rows and train rows for shots: the copy inside the package, or a user's JSONL (a folder
    holding test.jsonl[.gz] and train.jsonl[.gz], or one test file with train.jsonl beside it)."""
    path = Path(data_path) if data_path is not None else packaged("gsm8k", "")
    folder = path if path.is_dir() else path.parent
    test = first_existing(path, ("test.jsonl", "test.jsonl.gz")) if path.is_dir() else path
    if test is None:
        raise UserError("no test.jsonl in this folder", where=str(path), fix="pass a GSM8K JSONL file or folder")
    train = first_existing(folder, ("train.jsonl", "train.jsonl.gz"))
    files = [test] + ([train] if train else [])
    return TaskData(read_jsonl(test), read_jsonl(train) if train else [], files, "train")


def shot_text(row: dict) -> str:
    return f"Question: {row['question']}\nAnswer: {row['answer']}\n\n"


def build_items(test: list[dict], train: list[dict], shots: int, chat: bool) -> list[Item]:
    """lm-eval's format: k train exemplars (the first k, fixed), then 'Question: …\\nAnswer:'."""
    if shots > len(train):
        raise UserError(f"--shots {shots} but only {len(train)} train exemplars were found",
                        fix="put train.jsonl beside test.jsonl or lower --shots")
    exemplars = train[:shots]
    items = []
    for i, row in enumerate(test):
        q = f"Question: {row['question']}\nAnswer:"
        if chat:
            msgs = []
            for ex in exemplars:
                msgs += [{"role": "user", "content": f"Question: {ex['question']}\nAnswer:"},
                         {"role": "assistant", "content": ex["answer"]}]
            items.append(Item(i, q, gsm8k_gold(row["answer"]), messages=msgs + [{"role": "user", "content": q}]))
        else:
            items.append(Item(i, "".join(shot_text(ex) for ex in exemplars) + q, gsm8k_gold(row["answer"])))
    return items


def score(text: str, gold: str) -> tuple[str | None, bool]:
    pred = gsm8k_extract(text)
    return pred, pred == gold
