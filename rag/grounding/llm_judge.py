"""The LLM support judge: the project's Generator decides whether a statement is supported.

Two ways to read a verdict, chosen by what the generator can do:
- a local model that implements ``YesNoScorer`` gives P("yes") from the next-token logits of one
  forward pass: no generated text, no JSON, nothing to parse;
- any other generator (e.g. a remote OpenAI-compatible server) is asked for ``{"verdict": "yes"}``
  and its reply is parsed leniently (code fences, single quotes, extra prose, bare yes/no); an
  unreadable reply is retried, and after the retries a ``JudgeError`` names the reply. The caller
  reports that sample as unscored with the reason -- never as a silent NaN.

Evidence (best context sentence, missing terms) still comes from the lexical judge when one is
given, so a reader sees *why* as well as the LLM's verdict.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from rag.config import GroundingSettings
from rag.errors import RagError
from rag.protocols import GenerationParams, Generator, Message, Support, SupportJudge, YesNoScorer, judge_all

SYSTEM = (
    "You check facts. Given context passages and a statement, decide whether every claim in the "
    "statement is supported by the passages. Names, numbers, commands and paths must match exactly."
)
YES_NO_INSTRUCTION = "Is every claim in the statement supported by the context? Answer yes or no."
JSON_INSTRUCTION = (
    "Is every claim in the statement supported by the context? Reply with JSON only, exactly "
    '{"verdict": "yes"} or {"verdict": "no"}.'
)
RETRY_INSTRUCTION = 'Your reply was not valid. Reply with exactly {"verdict": "yes"} or {"verdict": "no"}.'

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)
_OBJECT = re.compile(r"\{[^{}]*\}", re.DOTALL)
_VERDICT_FIELD = re.compile(
    r"[\"']?(?:verdict|supported|answer)[\"']?\s*[:=]\s*[\"']?(yes|no|true|false|supported|unsupported)\b",
    re.IGNORECASE,
)
_BARE = re.compile(r"^\W*(yes|no)\b", re.IGNORECASE)
_TRUTHY = {"yes": True, "true": True, "supported": True, "no": False, "false": False, "unsupported": False}


class JudgeError(RagError):
    """A verdict could not be obtained (unparsable replies after retries, generator failure)."""


def parse_verdict(text: str) -> bool | None:
    """True/False from a judge's reply, or None when it states no verdict we can trust."""
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    for candidate in candidates:
        for obj in _OBJECT.findall(candidate):
            for loader in (json.loads, lambda s: json.loads(s.replace("'", '"'))):
                try:
                    data = loader(obj)
                except ValueError:
                    continue
                if isinstance(data, dict):
                    value = next((data[k] for k in ("verdict", "supported", "answer") if k in data), None)
                    if isinstance(value, bool):
                        return value
                    if isinstance(value, str) and value.strip().lower() in _TRUTHY:
                        return _TRUTHY[value.strip().lower()]
    found = {_TRUTHY[m.group(1).lower()] for m in _VERDICT_FIELD.finditer(text)}
    if len(found) == 1:
        return found.pop()
    bare = _BARE.match(text.strip())
    return _TRUTHY[bare.group(1).lower()] if bare else None


def build_prompt(statement: str, contexts: Sequence[str], instruction: str, max_chars: int) -> list[Message]:
    """At most ``max_chars`` of context (grounding.llm_max_context_chars), in the given order."""
    passages, used = [], 0
    for i, c in enumerate(contexts, 1):
        room = max_chars - used
        if room <= 0:
            break
        passages.append(f"[{i}] {c[:room]}")
        used += min(len(c), room)
    user = "Context:\n" + "\n\n".join(passages) + f"\n\nStatement: {statement}\n\n{instruction}"
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


class LLMSupportJudge:
    """Implements SupportJudge with a Generator; raises JudgeError when no verdict can be read."""

    def __init__(
        self,
        generator: Generator,
        settings: GroundingSettings,
        evidence_judge: SupportJudge | None = None,
    ) -> None:
        self.generator = generator
        self.settings = settings
        self.evidence_judge = evidence_judge

    @property
    def mode(self) -> str:
        return "yes-probability" if isinstance(self.generator, YesNoScorer) else "json"

    def judge(self, statement: str, contexts: Sequence[str]) -> Support:
        return self.judge_many([statement], contexts)[0]

    def judge_many(self, statements: Sequence[str], contexts: Sequence[str]) -> list[Support]:
        evidence = self._evidence(statements, contexts)
        out = []
        for statement, ev in zip(statements, evidence, strict=True):
            p = self.probability(statement, contexts)
            supported = p >= self.settings.llm_min_support
            reason = f"LLM judge ({self.mode}): P(supported) = {p:.2f}"
            if ev is not None and ev.missing and not supported:
                reason += "; not in the context: " + ", ".join(ev.missing[:8])
            out.append(
                Support(
                    text=statement,
                    score=p,
                    supported=supported,
                    context_index=ev.context_index if ev else None,
                    evidence=ev.evidence if ev else "",
                    missing=list(ev.missing) if ev else [],
                    reason=reason,
                )
            )
        return out

    def probability(self, statement: str, contexts: Sequence[str]) -> float:
        if isinstance(self.generator, YesNoScorer):
            try:
                return float(
                    self.generator.yes_probability(
                        build_prompt(
                            statement, contexts, YES_NO_INSTRUCTION, self.settings.llm_max_context_chars
                        )
                    )
                )
            except RagError as exc:
                raise JudgeError(f"the LLM judge failed: {exc}") from exc
        return 1.0 if self._json_verdict(statement, contexts) else 0.0

    def _json_verdict(self, statement: str, contexts: Sequence[str]) -> bool:
        messages = build_prompt(statement, contexts, JSON_INSTRUCTION, self.settings.llm_max_context_chars)
        params = GenerationParams(max_tokens=24, temperature=0.0)
        replies = []
        for _ in range(self.settings.llm_retries + 1):
            try:
                reply = self.generator.generate(messages, params).text
            except RagError as exc:
                raise JudgeError(f"the LLM judge failed: {exc}") from exc
            verdict = parse_verdict(reply)
            if verdict is not None:
                return verdict
            replies.append(reply)
            messages = [
                *messages,
                {"role": "assistant", "content": reply},
                {"role": "user", "content": RETRY_INSTRUCTION},
            ]
        excerpt = " | ".join(r.strip().replace("\n", " ")[:80] for r in replies)
        raise JudgeError(f"no verdict in {len(replies)} LLM replies: {excerpt!r}")

    def _evidence(self, statements: Sequence[str], contexts: Sequence[str]) -> list[Support | None]:
        if self.evidence_judge is None:
            return [None] * len(statements)
        return list(judge_all(self.evidence_judge, statements, contexts))
