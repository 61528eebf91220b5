"""The one bounded YAML reader of the project (dsv4ctl reads every file through it; the runtime's
presets too). Torch-free and dsv4ctl-free, so both packages can use it.

safe_load alone is not enough for files a user hands us: a "billion laughs" document of nested
aliases is a few hundred bytes, loads as shared references, and explodes only when something walks
it (validation, dumping the plan into a run directory). So the document is composed into nodes first,
its size counted with every alias expanded (each node counted once per use, computed in linear time
over the distinct nodes), and only then constructed. Size, expansion and nesting are bounded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

MAX_BYTES = 4 << 20  # the largest plan or data file we read: ours are under 100 KiB
MAX_EXPANDED_NODES = 200_000  # scalars + collections with aliases expanded
MAX_DEPTH = 64  # collections inside collections
# Every nested collection needs an indicator ([ { - : ?); with fewer than this many the composer's
# recursion cannot go deep enough to crash (it does near 20,000 levels), so the event pre-pass is skipped.
SAFE_INDICATORS = 2000


class YamlLimitError(ValueError):
    """The document is over one of the bounds; the message says which."""


def _loader_class():
    import yaml

    # The C loader is ~5x faster; plan cold start reads a dozen files.
    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _children(node: Any) -> list[Any]:
    value = node.value
    if isinstance(value, list):  # sequence: nodes; mapping: (key, value) node pairs
        return [n for item in value for n in (item if isinstance(item, tuple) else (item,))]
    return []


def check_bounds(root: Any) -> None:
    """Raise YamlLimitError when the composed document, aliases expanded, is too big or too deep (or
    refers to itself: `&a [*a]` composes into a cycle)."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    open_: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            open_.discard(key)
            kids = _children(node)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            depth[key] = (1 + max((depth[id(k)] for k in kids), default=0)) if isinstance(node.value, list) else 0
            if size[key] > MAX_EXPANDED_NODES:
                raise YamlLimitError(f"more than {MAX_EXPANDED_NODES} values once aliases are expanded")
            if depth[key] > MAX_DEPTH:
                raise YamlLimitError(f"nested deeper than {MAX_DEPTH} levels")
            continue
        if key in size:
            continue
        if key in open_:
            raise YamlLimitError("an alias refers to the collection that contains it")
        open_.add(key)
        stack.append((node, True))
        for kid in _children(node):
            if id(kid) in open_:
                raise YamlLimitError("an alias refers to the collection that contains it")
            if id(kid) not in size:
                stack.append((kid, False))


def _check_nesting(text: str) -> None:
    """Nesting depth from the event stream (the parser is iterative), before anything recursive
    (composing a 100,000-deep document crashes the C composer)."""
    import yaml

    loader = _loader_class()(text)
    depth = 0
    try:
        while (event := loader.get_event()) is not None:
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    raise YamlLimitError(f"nested deeper than {MAX_DEPTH} levels")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    finally:
        loader.dispose()


def loads(text: str) -> Any:
    """Parse one YAML document (safe tags only) within the bounds. Raises yaml.YAMLError for bad
    syntax or an unsafe tag, YamlLimitError over a bound."""
    if len(text) > MAX_BYTES:
        raise YamlLimitError(f"larger than {MAX_BYTES >> 20} MiB")
    if sum(text.count(c) for c in "[{-:?") > SAFE_INDICATORS:
        _check_nesting(text)
    loader = _loader_class()(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        check_bounds(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def read_text(path: str | Path) -> str:
    """A file's text, at most MAX_BYTES (read that far and no further). Raises OSError, UnicodeError
    or YamlLimitError."""
    with open(path, "rb") as fh:
        data = fh.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise YamlLimitError(f"larger than {MAX_BYTES >> 20} MiB")
    return data.decode("utf-8")


def load(path: str | Path) -> Any:
    """read_text + loads."""
    return loads(read_text(path))
