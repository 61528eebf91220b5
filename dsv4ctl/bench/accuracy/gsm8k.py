"""GSM8K: few-shot exemplars from the train split, questions from test, chat or completion prompts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dsv4ctl.bench.accuracy.extract import gsm8k_extract, gsm8k_gold
from dsv4ctl.bench.accuracy.items import Item, load_hub, require_file
from dsv4ctl.errors import UserError

STOP = ["Question:", "</s>", "<|im_end|>"]
EXTRACTOR = "gsm8k: strict '#### N' else last number (lm-eval flexible); ',', '$', trailing '.' ignored"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    for n, line in enumerate(require_file(path).read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                row = json.loads(line)
                rows.append({"question": row["question"], "answer": row["answer"]})
            except (json.JSONDecodeError, KeyError, TypeError):
                raise UserError("expected {\"question\": ..., \"answer\": ...}", where=f"{path}:{n}",
                                fix="point --data-path at GSM8K JSONL (grade_school_math/data)") from None
    return rows


def load(data_path: Path | None) -> tuple[list[dict], list[dict], list[Path]]:
    """(test rows, train rows for shots, files read). A directory holds test.jsonl and train.jsonl."""
    if data_path is None:
        return load_hub("openai/gsm8k", "main", ("test", "train"))
    path = Path(data_path)
    test = path / "test.jsonl" if path.is_dir() else path
    train = (path if path.is_dir() else path.parent) / "train.jsonl"
    files = [test] + ([train] if train.is_file() else [])
    return read_jsonl(test), read_jsonl(train) if train.is_file() else [], files


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
