"""Bodies of the OpenAI-compatible routes (POST /v1/chat/completions, GET /v1/models): OpenAI's
chat protocol, close enough that the official ``openai`` SDK works unmodified, plus our fields.

What is ours, and where an OpenAI client finds it (the SDK keeps unknown fields: ``model_extra``,
or plain attribute access):

* **request** (the SDK's ``extra_body``): ``top_k``, ``filters``, ``mode``, ``collection``,
  ``cache``, as in POST /v1/query;
* **response**: ``references`` (the citations) and ``refused`` on the message, and ``rag`` on the
  completion (the question that was searched, how it was rewritten, why the reply is what it is);
  when streaming, the same three on the final chunk (the one with ``finish_reason``).

OpenAI parameters that cannot change a grounded answer are accepted and ignored (``user``,
``metadata``...); those that would change what the reply is (tools, JSON output, logprobs, n > 1,
penalties) are accepted only at their neutral value, anything else is a 400 that names them, so a
client is never silently given something else than it asked for. Unknown fields are a 400 too
(a typo such as ``topk``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.json_schema import SkipJsonSchema

from api.schemas import MAX_QUESTION_CHARS, MODE_DESCRIPTION, Citation, Filters, FlaggedChunk, RetrievalMode
from rag.protocols import GenerationParams

MAX_ANSWER_TOKENS = 1024  # as POST /v1/query's generation.max_tokens
MAX_STOPS = 8
# Accepted with no effect on a grounded answer (bookkeeping fields of OpenAI's API).
IGNORED = ("user", "metadata", "store", "service_tier", "prompt_cache_key", "safety_identifier")
# Accepted only at these neutral values: anything else would change what the reply is.
NEUTRAL: dict[str, tuple[Any, ...]] = {
    "tools": (None, []),
    "tool_choice": (None, "none", "auto"),
    "parallel_tool_calls": (None, True, False),
    "functions": (None, []),
    "function_call": (None, "none", "auto"),
    "response_format": (None, {"type": "text"}),
    "logprobs": (None, False),
    "top_logprobs": (None, 0),
    "logit_bias": (None, {}),
    "frequency_penalty": (None, 0, 0.0),
    "presence_penalty": (None, 0, 0.0),
    "modalities": (None, ["text"]),
    "audio": (None,),
    "prediction": (None,),
    "web_search_options": (None,),
    "reasoning_effort": (None,),
    "verbosity": (None,),
}
CONTENT_DESCRIPTION = 'Text, or a list of `{"type": "text", "text": ...}` parts (no images or audio).'


class ChatMessage(BaseModel):
    """One message as OpenAI clients send it. Other fields are ignored, because clients send back
    the assistant messages they received (with ``refusal``, ``tool_calls``, our ``references``)."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = Field(None, description=CONTENT_DESCRIPTION)

    @field_validator("content")
    @classmethod
    def _text_parts_only(cls, v: str | list[dict[str, Any]] | None) -> str | list[dict[str, Any]] | None:
        for part in v if isinstance(v, list) else []:
            if part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise ValueError(
                    f"a content part of type {part.get('type')!r} is not supported: answers come from "
                    'the indexed documents, so send text only ({"type": "text", "text": "..."})'
                )
        return v

    @property
    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(part["text"] for part in self.content)
        return self.content or ""


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = Field(
        False, description="Send one more chunk before `[DONE]` with `usage` and no choices (OpenAI's way)."
    )


class ChatCompletionRequest(BaseModel):
    """OpenAI's chat request. The answer is grounded in the indexed documents: the last message
    must be the user's question; earlier user and assistant messages are the conversation a
    follow-up is rewritten from (system messages are accepted and not used: the service's own
    prompt governs the answer)."""

    model_config = ConfigDict(strict=True, extra="forbid")

    model: str = Field(min_length=1, description="One of GET /v1/models.")
    messages: list[ChatMessage] = Field(
        description="The conversation, oldest first; the last one is the user's question.",
        json_schema_extra={"minItems": 1},
    )
    stream: bool = Field(False, description="Server-sent `chat.completion.chunk` events, then `[DONE]`.")
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1, le=MAX_ANSWER_TOKENS, description="Most tokens of the answer.")
    max_completion_tokens: int | None = Field(
        None, ge=1, le=MAX_ANSWER_TOKENS, description="The same as `max_tokens` (OpenAI's newer name)."
    )
    temperature: float | None = Field(None, ge=0.0, le=2.0, description="0 = greedy (the default).")
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    seed: int | None = Field(None, ge=0, le=2**32 - 1)
    stop: str | list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(
        None, description=f"Stop sequences (at most {MAX_STOPS})."
    )
    n: int | None = Field(None, description="Only 1: one grounded answer per request.")
    # Ours (the SDK's extra_body), as in POST /v1/query.
    top_k: int | None = Field(None, ge=1, le=50, description="Chunks to retrieve (default from config).")
    filters: Filters | None = Field(None, description="Restrict retrieval to matching documents.")
    mode: RetrievalMode | None = Field(None, description=MODE_DESCRIPTION)
    collection: str | None = Field(None, description="The document collection to search; `default`.")
    cache: bool = Field(True, description="Use the answer cache (see POST /v1/query).")
    # OpenAI's other parameters: see IGNORED and NEUTRAL (not in the schema: they do nothing here).
    user: SkipJsonSchema[Any] = None
    metadata: SkipJsonSchema[Any] = None
    store: SkipJsonSchema[Any] = None
    service_tier: SkipJsonSchema[Any] = None
    prompt_cache_key: SkipJsonSchema[Any] = None
    safety_identifier: SkipJsonSchema[Any] = None
    tools: SkipJsonSchema[Any] = None
    tool_choice: SkipJsonSchema[Any] = None
    parallel_tool_calls: SkipJsonSchema[Any] = None
    functions: SkipJsonSchema[Any] = None
    function_call: SkipJsonSchema[Any] = None
    response_format: SkipJsonSchema[Any] = None
    logprobs: SkipJsonSchema[Any] = None
    top_logprobs: SkipJsonSchema[Any] = None
    logit_bias: SkipJsonSchema[Any] = None
    frequency_penalty: SkipJsonSchema[Any] = None
    presence_penalty: SkipJsonSchema[Any] = None
    modalities: SkipJsonSchema[Any] = None
    audio: SkipJsonSchema[Any] = None
    prediction: SkipJsonSchema[Any] = None
    web_search_options: SkipJsonSchema[Any] = None
    reasoning_effort: SkipJsonSchema[Any] = None
    verbosity: SkipJsonSchema[Any] = None

    @field_validator(*NEUTRAL)
    @classmethod
    def _neutral(cls, v: Any, info: Any) -> Any:
        allowed = NEUTRAL[info.field_name]
        if not any(v == a and type(v) is type(a) for a in allowed):
            shown = ", ".join("null" if a is None else repr(a) for a in allowed)
            raise ValueError(
                f"is not supported by this server (grounded text answers with citations); send "
                f"{shown} or leave it out"
            )
        return v

    @field_validator("n")
    @classmethod
    def _one_choice(cls, v: int | None) -> int | None:
        if v not in (None, 1):
            raise ValueError(
                f"is {v}; this server gives one grounded answer per request: send n=1 or leave it out"
            )
        return v

    @field_validator("stop")
    @classmethod
    def _few_stops(cls, v: str | list[str] | None) -> str | list[str] | None:
        if isinstance(v, list) and len(v) > MAX_STOPS:
            raise ValueError(f"has {len(v)} stop sequences; at most {MAX_STOPS}")
        if isinstance(v, str) and not 1 <= len(v) <= 64:
            raise ValueError("a stop sequence has 1 to 64 characters")
        return v

    @field_validator("messages")
    @classmethod
    def _ends_with_a_question(cls, v: list[ChatMessage]) -> list[ChatMessage]:
        if not v:
            raise ValueError("is empty; send the conversation, oldest first, with the user's question last")
        last = v[-1]
        if last.role != "user":
            raise ValueError(
                f'the last message is from "{last.role}"; it must be the user\'s question (role "user"): '
                "answers are grounded in the documents, one per question"
            )
        text = last.text
        if not text.strip():
            raise ValueError("the last message (the question) is blank; send the text of a question")
        if len(text) > MAX_QUESTION_CHARS:
            raise ValueError(
                f"the last message (the question) is {len(text)} characters; at most {MAX_QUESTION_CHARS}"
            )
        return v

    def params(self, defaults: GenerationParams) -> GenerationParams:
        """The sampling settings: the configured ones, overridden by those given."""
        given: dict[str, Any] = {
            "max_tokens": self.max_completion_tokens or self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
            "stop": (self.stop,) if isinstance(self.stop, str) else tuple(self.stop) if self.stop else None,
        }
        return replace(defaults, **{k: v for k, v in given.items() if v is not None})


# ------------------------------------------------------------------------------- responses


class RagInfo(BaseModel):
    """What the service did for this reply (our extension: ``completion.rag``)."""

    question: str = Field(description="The standalone question that was searched and answered.")
    rewrite: Literal["none", "concat", "generator"] = Field(
        description="How the last message became that question: as it is, put after the previous user "
        "message, or rewritten from the conversation by the generator."
    )
    rewrite_reason: str
    refused: bool = Field(description="True when the documents do not support an answer.")
    reason: str = Field(description="Why the answer was given or refused, for people debugging.")
    cached: str | None = Field(None, description="`exact` or `similar` when served from the answer cache.")
    index_version: int | None = None
    timings: dict[str, float] = Field(description="`condense_ms`, `retrieve_ms`, `generate_ms`, `ground_ms`.")
    flagged: list[FlaggedChunk] = Field(
        default_factory=list,
        description="Retrieved chunks that read as prompt injection, and what was done with each.",
    )


class CompletionUsage(BaseModel):
    """Tokens of this request: the answer and, for a follow-up, its rewrite (0 for what was not
    generated: a refusal before generation, a cached answer)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str = Field(description="The grounded answer with its [n] markers, or the refusal message.")
    refusal: None = Field(None, description="Always null: a refusal here is a normal reply, see `refused`.")
    references: list[Citation] = Field(description="The chunks the answer's [n] markers refer to (ours).")
    refused: bool = Field(description="True when the documents do not support an answer (ours).")


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: CompletionUsage
    system_fingerprint: str | None = None
    rag: RagInfo


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: Literal["stop", "length"] | None = None


class ChatCompletionChunk(BaseModel):
    """One streamed event. The final one (with ``finish_reason``) also carries ``references``,
    ``refused`` and ``rag``, and ``usage`` unless ``stream_options.include_usage`` asked for the
    separate usage chunk."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: CompletionUsage | None = None
    references: list[Citation] | None = None
    refused: bool | None = None
    rag: RagInfo | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(description="When the server started (Unix seconds).")
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class OpenAIError(BaseModel):
    message: str
    type: str = Field(
        description="invalid_request_error, not_found_error, rate_limit_error, server_error, ..."
    )
    param: str | None = Field(None, description="The request field at fault, when there is one.")
    code: str | None = None


class OpenAIErrorBody(BaseModel):
    """Every error of the OpenAI-compatible routes, in OpenAI's shape."""

    error: OpenAIError
