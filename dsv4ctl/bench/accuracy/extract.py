"""Answer extractors; their names are stored in every score's setup.

GSM8K follows lm-eval's gsm8k v3: strict `#### N`, else flexible = the last number in the text.
Both read the text with special-token names (`<｜reserved_1547｜>`) cut out.
MMLU takes `Answer: X` (simple-evals' regex), else the first standalone letter A–D.
"""

from __future__ import annotations

import re

STRICT = re.compile(r"####\s*(-?[0-9.,$]+)")
NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?")
ANSWER_LETTER = re.compile(r"(?i)answer[ \t]*(?:is)?[ \t]*:?[ \t]*\(?\$?([A-D])\b")
LONE_LETTER = re.compile(r"\b([A-D])\b")
# Special tokens a model may emit as text (`<｜reserved_1547｜>`, `<|im_end|>`): their names hold digits
# and letters that are not answers, so they are cut out before any extractor reads the text.
SPECIAL_TOKEN = re.compile(r"<[｜|][^<>｜|]*[｜|]>")


def strip_special(text: str) -> str:
    return SPECIAL_TOKEN.sub(" ", text)


def normalize_number(s: str) -> str:
    """'1,234.00' → '1234', '$5.' → '5': lm-eval's exact-match ignores ',', '$' and a trailing '.'."""
    s = s.replace(",", "").replace("$", "").strip().rstrip(".")
    if re.fullmatch(r"-?\d+\.0+", s):
        s = s.split(".")[0]
    return s


def gsm8k_gold(answer: str) -> str:
    """The reference answer's final number (after '#### ')."""
    return normalize_number(answer.split("####")[-1])


def gsm8k_extract(text: str) -> str | None:
    """'#### N' if the model wrote it (strict), else the last number in the text (flexible)."""
    text = strip_special(text)
    m = STRICT.search(text)
    if m:
        return normalize_number(m.group(1))
    nums = NUMBER.findall(text)
    return normalize_number(nums[-1]) if nums else None


def mmlu_extract(text: str) -> str | None:
    """'Answer: X' anywhere, else the first lone capital A–D (the model answered with the letter)."""
    text = strip_special(text)
    m = ANSWER_LETTER.search(text)
    if m:
        return m.group(1).upper()
    m = LONE_LETTER.search(text)
    return m.group(1) if m else None
