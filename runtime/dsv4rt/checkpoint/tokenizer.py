"""A small byte-level BPE tokenizer with the V4 special tokens, for random checkpoints.

It has no learned merges (every byte is one token); the rest of the vocabulary is reserved filler so
ids line up with the model's vocab_size. Special-token spellings: v4-architecture.md §5.
"""

from __future__ import annotations

import json
from pathlib import Path

BOS, EOS, PAD = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>"
SPECIAL_TOKENS = [
    BOS, EOS, PAD, "<｜User｜>", "<｜Assistant｜>", "<｜latest_reminder｜>", "<think>", "</think>",
    "｜DSML｜", "<｜action｜>", "<｜query｜>", "<｜authority｜>", "<｜domain｜>", "<｜title｜>", "<｜read_url｜>",
]


def build_tokenizer(vocab_size: int):
    """-> tokenizers.Tokenizer with ids: specials first (BOS 0, EOS 1), then 256 bytes, then filler."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    need = len(SPECIAL_TOKENS) + len(alphabet)
    if vocab_size < need:
        raise ValueError(f"vocab_size {vocab_size} is too small for the tokenizer (need ≥ {need})")
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for ch in sorted(alphabet):
        vocab[ch] = len(vocab)
    for i in range(vocab_size - len(vocab)):
        vocab[f"<｜reserved_{i}｜>"] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(SPECIAL_TOKENS)
    return tok


def write_tokenizer(out: Path, vocab_size: int) -> None:
    """tokenizer.json + tokenizer_config.json (BOS/EOS names as in the HF repos)."""
    build_tokenizer(vocab_size).save(str(out / "tokenizer.json"))
    cfg = {"bos_token": BOS, "eos_token": EOS, "pad_token": PAD, "add_bos_token": False,
           "model_max_length": 1048576, "tokenizer_class": "PreTrainedTokenizerFast"}
    (out / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
