"""Real English text that ships with Python: standard-library docstrings and the pydoc topics.

Paragraphs are read from the triple-quoted strings of source files (docstrings, mostly; found
with a regular expression, which is 100x faster than :mod:`ast` and imports nothing, so nothing
is executed) and from :data:`pydoc_data.topics.topics`, whitespace-normalised, filtered by length
(doctest lines and code-like paragraphs dropped) and deduplicated: exact duplicates after
normalisation and near-duplicates (word n-gram overlap with the records kept so far, as in
:mod:`miaudit.llm.data`) are removed, so no text appears twice under two membership labels.
"""

from __future__ import annotations

import importlib.util
import inspect
import re
from dataclasses import dataclass
from pathlib import Path

from miaudit.llm.data import ngrams, normalise

__all__ = ["DOC_MODULES", "DocRecord", "python_docs_corpus"]

#: Standard-library modules and packages whose docstrings are read (pure Python, present in
#: every CPython 3.10+ install).
DOC_MODULES = (
    "argparse", "ast", "asyncio", "base64", "bisect", "calendar", "collections", "configparser",
    "contextlib", "copy", "csv", "dataclasses", "datetime", "decimal", "difflib", "email",
    "enum", "fractions", "ftplib", "functools", "getopt", "gettext", "glob", "gzip", "heapq",
    "http", "imaplib", "inspect", "ipaddress", "json", "logging", "mailbox", "numbers",
    "optparse", "os", "pathlib", "pickle", "pprint", "queue", "random", "re", "sched",
    "shutil", "smtplib", "socket", "statistics", "string", "subprocess", "tarfile",
    "tempfile", "textwrap", "threading", "tokenize", "traceback", "typing", "unittest",
    "urllib", "uuid", "warnings", "weakref", "xml", "zipfile",
)  # fmt: skip
#: Source label of the pydoc topics.
PYDOC_SOURCE = "pydoc_data.topics"
#: Word-count bounds of a kept paragraph.
MIN_WORDS = 8
MAX_WORDS = 60
#: Near-duplicate filter of the corpus (word n-grams; overlap at or above the threshold drops).
CORPUS_NGRAM = 8
CORPUS_OVERLAP = 0.5
_CODEISH = re.compile(r"(>>>|\.\.\. |[{}\[\]=]{2,}|^\s*[-=*]{3,})")
_TRIPLE = re.compile(r'(?s)(?<![rRbBfF])("""|\'\'\')(.*?)\1')
_WORDS = re.compile(r"[A-Za-z]+")


@dataclass(frozen=True)
class DocRecord:
    """One paragraph and where it came from (module name, or ``pydoc_data.topics``)."""

    text: str
    source: str


def _paragraphs(doc: str) -> list[str]:
    out = []
    for para in re.split(r"\n\s*\n", doc):
        if _CODEISH.search(para):
            continue
        text = " ".join(para.split())
        words = text.split()
        if not MIN_WORDS <= len(words) <= MAX_WORDS:
            continue
        if len(_WORDS.findall(text)) < 0.6 * len(words):  # mostly words, not symbols
            continue
        out.append(text)
    return out


def _module_files(name: str) -> list[Path]:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return []
    origin = Path(spec.origin)
    if origin.name == "__init__.py":
        return sorted(p for p in origin.parent.rglob("*.py") if "test" not in p.parts)
    return [origin]


def _docstrings(path: Path) -> list[str]:
    try:
        source = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return []
    return [inspect.cleandoc(m.group(2)) for m in _TRIPLE.finditer(source)]


def python_docs_corpus(modules: tuple[str, ...] = DOC_MODULES) -> list[DocRecord]:
    """Deduplicated paragraphs of the pydoc topics and of ``modules``' docstrings, in a fixed
    order (pydoc topics sorted by name, then modules in the order given)."""
    raw: list[DocRecord] = []
    topics: dict[str, str] = {}
    try:
        from pydoc_data import topics as pydoc_topics

        topics = dict(pydoc_topics.topics)
    except ImportError:  # pragma: no cover - some distributions strip pydoc_data
        pass
    for key in sorted(topics):
        raw.extend(DocRecord(p, PYDOC_SOURCE) for p in _paragraphs(topics[key]))
    for name in modules:
        for path in _module_files(name):
            for doc in _docstrings(path):
                raw.extend(DocRecord(p, name) for p in _paragraphs(doc))
    kept: list[DocRecord] = []
    seen: set[str] = set()
    pool: set[tuple[str, ...]] = set()
    for rec in raw:
        key = normalise(rec.text)
        if key in seen:
            continue
        grams = ngrams(rec.text, CORPUS_NGRAM)
        if grams and len(grams & pool) / len(grams) >= CORPUS_OVERLAP:
            continue
        seen.add(key)
        pool |= grams
        kept.append(rec)
    return kept
