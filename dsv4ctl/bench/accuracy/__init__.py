"""Accuracy tasks (GSM8K, MMLU) scored over any OpenAI-compatible endpoint, chat or completions."""
