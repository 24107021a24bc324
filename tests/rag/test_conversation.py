"""The standalone-question rewrite (rag.conversation).

Fast tests use a declared fake generator (``ScriptedGenerator``: returns a fixed text and records
the prompt) because what they check is the plumbing around the model call: which method is chosen,
the history bounds, the fallbacks, the cleaning of the model's reply. The slow test runs the real
default generator on an elliptic follow-up over the test corpus.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rag.config import Settings, load_settings
from rag.context import approximate_tokens
from rag.conversation import bounded_history, clean, standalone_question
from rag.prompt import CONDENSE_INSTRUCTION, SYSTEM
from rag.protocols import Generation, GenerationParams, Generator, Message

HISTORY: list[Message] = [
    {"role": "user", "content": "Where does Zephyr store its snapshots?"},
    {"role": "assistant", "content": "Zephyr stores snapshots in /var/lib/zephyr/snapshots [1]."},
]


class ScriptedGenerator:
    """A fake Generator: replies ``reply`` (finish_reason ``finish``), records every prompt."""

    name = "scripted"

    def __init__(self, reply: str, finish: str = "stop") -> None:
        self.reply, self.finish = reply, finish
        self.prompts: list[list[Message]] = []
        self.params: list[GenerationParams] = []

    def generate(self, messages: list[Message], params: GenerationParams) -> Generation:
        self.prompts.append(messages)
        self.params.append(params)
        return Generation(self.reply, 100, 9, self.finish)

    def stream(self, messages: list[Message], params: GenerationParams) -> Iterator[str]:
        yield self.generate(messages, params).text


def settings(**conversation: object) -> Settings:
    return load_settings(**{f"conversation.{k}": v for k, v in conversation.items()})


def test_no_history_leaves_the_question_alone() -> None:
    fake = ScriptedGenerator("unused")
    r = standalone_question("What is Zephyr?", [], fake, settings())
    assert (r.question, r.method, r.rewritten) == ("What is Zephyr?", "none", False)
    assert fake.prompts == []


def test_the_generator_rewrites_a_follow_up_under_the_answer_system_prompt() -> None:
    fake = ScriptedGenerator('Rewritten question: "Where does Zephyr write its log?"\nThe log is ...')
    r = standalone_question("and its log?", HISTORY, fake, settings())
    assert r.question == "Where does Zephyr write its log?"
    assert (r.method, r.original, r.rewritten) == ("generator", "and its log?", True)
    assert r.usage == {"prompt_tokens": 100, "completion_tokens": 9}
    (prompt,) = fake.prompts
    assert prompt[0] == {"role": "system", "content": SYSTEM}  # the prefix llama.cpp keeps
    user = prompt[1]["content"]
    assert "User: Where does Zephyr store its snapshots?" in user
    assert "[1]" not in user  # citation markers are noise to the rewrite
    assert user.endswith(f"Follow-up question: and its log?\n\n{CONDENSE_INSTRUCTION}")
    params = fake.params[0]
    assert params.max_tokens == settings().conversation.condense_max_tokens
    assert params.temperature == 0.0 and params.stop == ("\n",)


def test_a_history_of_one_message_is_concatenated_without_a_model_call() -> None:
    fake = ScriptedGenerator("unused")
    r = standalone_question("and its log?", HISTORY[:1], fake, settings())
    assert r.question == "Where does Zephyr store its snapshots? and its log?"
    assert r.method == "concat" and "one message" in r.reason
    assert fake.prompts == []


@pytest.mark.parametrize(
    ("reply", "finish"),
    [
        ("  ", "stop"),
        ("Where does Zephyr", "length"),
        ("where does Zephyr store its snapshots", "stop"),
        ("Where is the log?", "stop"),  # "its" dropped, nothing named: seen from the real model
    ],
    ids=["empty", "cut", "the earlier question again", "names nothing"],
)
def test_an_unusable_rewrite_falls_back_to_concatenation(reply: str, finish: str) -> None:
    r = standalone_question("and its log?", HISTORY, ScriptedGenerator(reply, finish), settings())
    assert r.method == "concat" and r.question.startswith("Where does Zephyr store")
    assert r.usage  # the model call was paid and is reported


def test_configured_methods_and_no_generator() -> None:
    assert standalone_question("and its log?", HISTORY, None, settings()).method == "concat"
    r = standalone_question("and its log?", HISTORY, None, settings(condense="none"))
    assert (r.method, r.question) == ("none", "and its log?")
    fake = ScriptedGenerator("unused")
    r = standalone_question("and its log?", HISTORY, fake, settings(condense="concat"))
    assert r.method == "concat" and fake.prompts == []


def test_concatenation_uses_the_previous_user_message_or_else_the_last_one() -> None:
    only_answer: list[Message] = [{"role": "assistant", "content": "Zephyr is a backup tool."}]
    r = standalone_question("where is its log?", only_answer, None, settings())
    assert r.question == "Zephyr is a backup tool. where is its log?"


def test_history_is_bounded_in_messages_and_tokens() -> None:
    long_answer = "word " * 2000
    history: list[Message] = [
        {"role": "system", "content": "ignored: not part of the conversation"},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": ""},  # e.g. a tool call: nothing to read
        *HISTORY,
        {"role": "assistant", "content": long_answer},
    ]
    config = settings(max_history_messages=3, max_history_tokens=100).conversation
    kept = bounded_history(history, config, approximate_tokens)
    assert [m["role"] for m in kept] == ["user", "assistant", "assistant"]
    assert kept[0]["content"] == HISTORY[0]["content"]
    assert approximate_tokens(kept[-1]["content"]) <= 50  # half the budget at most
    assert sum(approximate_tokens(m["content"]) for m in kept) <= 100
    assert bounded_history(history, settings(max_history_messages=0).conversation, approximate_tokens) == []


def test_clean_strips_lead_ins_quotes_and_later_lines() -> None:
    assert clean("**Standalone question:** Where is X?") == "Where is X?"
    assert clean("“Where is X?”\nBecause...") == "Where is X?"
    assert clean("Where is the question: field?") == "Where is the question: field?"


@pytest.mark.slow
def test_the_real_generator_names_the_subject_of_an_elliptic_follow_up(generator: Generator) -> None:
    r = standalone_question("And where does it write its log?", HISTORY, generator, settings())
    assert r.method == "generator", r
    assert "zephyr" in r.question.lower(), r
    assert r.seconds > 0 and r.usage["completion_tokens"] > 0
