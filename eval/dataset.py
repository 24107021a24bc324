"""Evaluation data sets: JSONL or CSV rows of question, and optionally reference, answerable,
answer and contexts. A row with an answer is scored as given; a row without one is answered by
the pipeline. ``synthesize`` writes a data set of template questions from indexed chunks.

RAGAS's column names (``user_input``, ``response``, ``retrieved_contexts``; ``reference`` is the same)
are read too, and mapped to ours at load time, so a team's RAGAS test set runs here unchanged;
``write_jsonl(..., columns="ragas")`` writes them, so a set made here can be taken to RAGAS."""

from __future__ import annotations

import csv
import hashlib
import json
import random
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rag.errors import RagError
from rag.grounding.text import is_critical, split_sentences, tokens


class DatasetError(RagError):
    """A data set file cannot be read; the message names the file, the row and the fix."""


# RAGAS's name for a column -> ours (ragas.SingleTurnSample); `reference` is spelled the same.
RAGAS_COLUMNS: dict[str, str] = {
    "user_input": "question",
    "response": "answer",
    "retrieved_contexts": "contexts",
}
_OUR_TO_RAGAS = {ours: theirs for theirs, ours in RAGAS_COLUMNS.items()}
Columns = Literal["ours", "ragas"]


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
        samples.append(_sample(row, f"{path}:{line_no}"))
        if limit is not None and len(samples) >= limit:
            break
    if not samples:
        raise DatasetError(f"data set {path} has no rows")
    return samples


def _sample(row: Mapping[str, Any], where: str) -> Sample:
    """One row as a Sample, by our column names or RAGAS's; an error names the column as written."""
    try:
        ours, renamed = _from_ragas(row)
    except ValueError as exc:
        raise DatasetError(f"{where}: {exc}") from None
    try:
        return Sample.model_validate(ours)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = [str(p) for p in first["loc"]]
        field = ".".join([renamed.get(loc[0], loc[0]), *loc[1:]]) if loc else "row"
        raise DatasetError(f"{where}: {field}: {first['msg']}") from None


def _from_ragas(row: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The row with RAGAS's column names replaced by ours, and {our name: the name it came as}.
    A row that gives one field under both names is refused: which one to believe is a guess."""
    out, renamed = dict(row), {}
    for theirs, ours in RAGAS_COLUMNS.items():
        if theirs not in out:
            continue
        if ours in out:
            raise ValueError(
                f"both {ours!r} and {theirs!r} (RAGAS's name for {ours!r}) are given; keep one of them"
            )
        out[ours] = out.pop(theirs)
        renamed[ours] = theirs
    return out, renamed


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
        if not reader.fieldnames or not {"question", _OUR_TO_RAGAS["question"]} & set(reader.fieldnames):
            raise DatasetError(
                f"{path}: the CSV header must include 'question' or RAGAS's"
                f" {_OUR_TO_RAGAS['question']!r} (found {reader.fieldnames})"
            )
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


def write_jsonl(samples: Iterable[Sample | Mapping[str, Any]], path: Path, columns: Columns = "ours") -> None:
    """One JSON object per sample. ``columns="ragas"`` writes RAGAS's names (user_input, response,
    retrieved_contexts) so a set can be taken to RAGAS; other fields are kept (RAGAS ignores them),
    and ``load_dataset`` reads either back to the same samples. A mapping is read as a row is."""
    if columns not in ("ours", "ragas"):
        raise DatasetError(f"unknown columns {columns!r}; use 'ours' or 'ragas'")
    path = Path(path)
    lines = [_jsonl_line(s, columns, f"{path}: sample {n}") for n, s in enumerate(samples, 1)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(lines), encoding="utf-8")


def _jsonl_line(sample: Sample | Mapping[str, Any], columns: Columns, where: str) -> str:
    row = (sample if isinstance(sample, Sample) else _sample(sample, where)).model_dump(exclude_none=True)
    if columns == "ragas":
        row = _to_ragas(row, where)
    return json.dumps(row, ensure_ascii=False) + "\n"


def _to_ragas(row: dict[str, Any], where: str) -> dict[str, Any]:
    """Our names replaced by RAGAS's; an extra field already spelled like one of RAGAS's would be
    read back as a different field, so it is refused."""
    clash = sorted(set(row) & set(RAGAS_COLUMNS))
    if clash:
        raise DatasetError(
            f"{where}: extra field {clash[0]!r} is RAGAS's name for {RAGAS_COLUMNS[clash[0]]!r}; rename it"
        )
    return {_OUR_TO_RAGAS.get(k, k): v for k, v in row.items()}
