"""Evaluation data sets: JSONL or CSV rows of question, and optionally reference, answerable,
answer and contexts. A row with an answer is scored as given; a row without one is answered by
the pipeline. ``synthesize`` writes a data set of template questions from indexed chunks."""

from __future__ import annotations

import csv
import hashlib
import json
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rag.errors import RagError
from rag.grounding.text import is_critical, split_sentences, tokens


class DatasetError(RagError):
    """A data set file cannot be read; the message names the file, the row and the fix."""


class Sample(BaseModel):
    model_config = ConfigDict(extra="allow")

    question: str = Field(min_length=1)
    reference: str | None = None
    answerable: bool | None = None
    answer: str | None = None
    contexts: list[str] | None = None
    synthetic: bool = False
    id: str | None = None

    @field_validator("reference", "answer", mode="before")
    @classmethod
    def _blank_is_none(cls, v: Any) -> Any:
        return None if isinstance(v, str) and not v.strip() else v

    @field_validator("answerable", mode="before")
    @classmethod
    def _boolish(cls, v: Any) -> Any:
        if isinstance(v, str):
            low = v.strip().lower()
            if low in ("", "none", "null"):
                return None
            if low in ("1", "true", "yes", "y"):
                return True
            if low in ("0", "false", "no", "n"):
                return False
        return v

    @field_validator("contexts", mode="before")
    @classmethod
    def _contexts_json(cls, v: Any) -> Any:
        """CSV cells carry contexts as a JSON list."""
        if isinstance(v, str):
            if not v.strip():
                return None
            try:
                v = json.loads(v)
            except ValueError as exc:
                raise ValueError(
                    f'contexts must be a JSON list of strings, e.g. ["passage one"], ({exc})'
                ) from exc
        return v


def sample_key(question: str, answer: str | None, contexts: list[str] | None) -> str:
    """Identity of a sample for resuming: a hash of what is scored."""
    blob = json.dumps([question, answer or "", contexts or []], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def load_dataset(path: Path, limit: int | None = None) -> list[Sample]:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(
            f"data set {path} does not exist; give a .jsonl or .csv file with a 'question' field"
        )
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        rows = _jsonl_rows(path)
    elif suffix == ".csv":
        rows = _csv_rows(path)
    else:
        raise DatasetError(f"data set {path}: unknown format {suffix!r}; use .jsonl or .csv")
    samples = []
    for line_no, row in rows:
        try:
            samples.append(Sample.model_validate(row))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "row"
            raise DatasetError(f"{path}:{line_no}: {where}: {first['msg']}") from None
        if limit is not None and len(samples) >= limit:
            break
    if not samples:
        raise DatasetError(f"data set {path} has no rows")
    return samples


def _jsonl_rows(path: Path) -> Iterable[tuple[int, dict]]:
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise DatasetError(f"{path}:{n}: not valid JSON ({exc})") from None
        if not isinstance(row, dict):
            raise DatasetError(f"{path}:{n}: each line must be a JSON object with a 'question' field")
        yield n, row


def _csv_rows(path: Path) -> Iterable[tuple[int, dict]]:
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "question" not in reader.fieldnames:
            raise DatasetError(f"{path}: the CSV header must include 'question' (found {reader.fieldnames})")
        for n, row in enumerate(reader, 2):
            yield n, {k: v for k, v in row.items() if k is not None}


# ---------------------------------------------------------------- synthetic data sets
_TEMPLATE = 'According to the documentation, what goes in the blank: "{cloze}"?'


def synthesize(chunks: list[tuple[str, str]], n: int, seed: int = 0) -> list[Sample]:
    """Cloze questions from sampled chunk sentences; the sentence is the reference answer.

    ``chunks`` are (source, text). A sentence qualifies when it has 8-40 words and a critical term
    (a number, path, command or name, preferring numbers and paths); that term is blanked out:
    "The relay listens on TCP port ____ for transfers." No LLM is involved: the questions are
    plain, good enough to exercise retrieval, grounding and refusals, not to measure fluent QA.
    """
    rng = random.Random(seed)
    candidates = []
    for source, text in chunks:
        for sentence in split_sentences(text):
            if 8 <= len(sentence.split()) <= 40 and sentence[-1:] in ".!":
                blank = _blank(sentence)
                if blank:
                    candidates.append((source, sentence, blank))
    rng.shuffle(candidates)
    out: list[Sample] = []
    seen: set[str] = set()
    for source, sentence, blank in candidates:
        if sentence in seen:
            continue
        seen.add(sentence)
        cloze = sentence.replace(blank, "____", 1)
        out.append(
            Sample(
                question=_TEMPLATE.format(cloze=cloze),
                reference=sentence,
                answerable=True,
                synthetic=True,
                id=f"synthetic-{len(out) + 1}",
                source=source,
            )
        )
        if len(out) >= n:
            break
    return out


def _blank(sentence: str) -> str:
    """The critical token to blank out: a number or path first, else a flag or name."""
    toks = [t for i, t in enumerate(tokens(sentence)) if is_critical(t, sentence_initial=i == 0)]
    ranked = sorted(toks, key=lambda t: 0 if any(c.isdigit() for c in t) or "/" in t else 1)
    return ranked[0] if ranked else ""


def write_jsonl(samples: list[Sample], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for s in samples:
            f.write(json.dumps(s.model_dump(exclude_none=True), ensure_ascii=False) + "\n")
