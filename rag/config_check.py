"""Turn configuration mistakes into one readable line each, naming the key, where it came from
and, when a known key is close, the one probably meant.

pydantic reports ``('retrieval', 'topk'): Extra inputs are not permitted``; an operator needs
``unknown setting retrieval.topk (from configs/x.yaml); did you mean retrieval.top_k?``. This module
knows the settings model only through its fields, so it works for sections added later.
"""

from __future__ import annotations

import difflib
import functools
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar, get_args

import yaml
from pydantic import BaseModel, SecretStr, ValidationError
from pydantic_settings import SettingsError

from rag.errors import ConfigError

ENV_PREFIX = "RAG_"
ENV_NESTED = "__"
# Variables with the prefix that are not settings: the config file, and test/tooling switches.
NON_SETTING_ENV = frozenset({"RAG_CONFIG", "RAG_TEST_CRASH_AT", "RAG_VENV", "RAG_FUZZ_EXAMPLES"})

Loader = TypeVar("Loader", bound=Callable[..., Any])


def section_model(model: type[BaseModel], path: tuple[str, ...]) -> type[BaseModel] | None:
    """The model class holding the keys at ``path`` (() = the top level); None past a leaf."""
    for part in path:
        field = model.model_fields.get(part)
        if field is None:
            return None
        inner = _model_of(field.annotation)
        if inner is None:
            return None
        model = inner
    return model


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):  # Optional[Section] and similar unions
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def secret_paths(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Dotted paths of every SecretStr field: these may come from the environment only."""
    for name, field in model.model_fields.items():
        inner = _model_of(field.annotation)
        if inner is not None:
            yield from secret_paths(inner, (*prefix, name))
        elif SecretStr in (field.annotation, *get_args(field.annotation)):
            yield (*prefix, name)


def refuse_secrets(data: Mapping[str, Any], model: type[BaseModel], source: str) -> None:
    """Raise when a config file holds a secret: files get committed, copied and logged."""
    found = [p for p in secret_paths(model) if _lookup(data, p) is not None]
    if found:
        lines = [
            f"{'.'.join(p)} is a secret and is read from the environment only, not from {source}; "
            f"remove it from the file and set {env_name(p)}"
            for p in found
        ]
        raise ConfigError("\n".join(lines))


def _lookup(data: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(data, Mapping) or part not in data:
            return None
        data = data[part]
    return data


def env_name(path: tuple[str, ...]) -> str:
    return ENV_PREFIX + ENV_NESTED.join(path).upper()


def check_environment(model: type[BaseModel], environ: Mapping[str, str]) -> None:
    """Refuse top-level ``RAG_*`` variables that look like a misspelt setting.

    pydantic-settings ignores a prefixed variable that matches no top-level field, and the prefix
    is shared with non-settings (see NON_SETTING_ENV), so an unknown name is ignored unless it is
    clearly meant as a setting: it starts with a section name and one underscore
    (``RAG_SERVER_PORT`` for ``RAG_SERVER__PORT``), or it is close to a top-level field name."""
    fields = model.model_fields
    sections = [n for n in fields if section_model(model, (n,)) is not None]
    problems = []
    for var in sorted(environ):
        upper = var.upper()
        if not upper.startswith(ENV_PREFIX) or upper in NON_SETTING_ENV or ENV_NESTED in upper:
            continue
        name = upper.removeprefix(ENV_PREFIX).lower()
        if name in fields:
            continue
        hint = _env_hint(model, sections, name)
        if hint:
            problems.append(f"environment variable {var} names no setting; {hint}")
    if problems:
        raise ConfigError("\n".join(problems))


def _env_hint(model: type[BaseModel], sections: list[str], name: str) -> str | None:
    for section in sorted(sections, key=len, reverse=True):
        if name.startswith(section + "_"):
            rest = name[len(section) + 1 :]
            inner = section_model(model, (section,))
            keys = list(inner.model_fields) if inner else []
            key = (difflib.get_close_matches(rest, keys, n=1) or [rest])[0]
            return f"nested settings use a double underscore: did you mean {env_name((section, key))}?"
    close = difflib.get_close_matches(name, list(model.model_fields), n=1, cutoff=0.85)
    return f"did you mean {env_name((close[0],))}?" if close else None


def explain(
    exc: ValidationError, model: type[BaseModel], overrides: Mapping[str, Any], config_file: Path | None
) -> ConfigError:
    """One line per problem: the dotted key, where its value came from, what is wrong, the fix."""
    given = _flatten(overrides)
    lines = [_line(err, model, given, config_file) for err in exc.errors()]
    return ConfigError("invalid configuration:\n  " + "\n  ".join(lines) if len(lines) > 1 else lines[0])


def _line(err: Mapping[str, Any], model: type[BaseModel], given: set[str], config_file: Path | None) -> str:
    loc = tuple(str(p) for p in err["loc"])
    key = ".".join(loc) or "(top level)"
    source = _source(loc, given, config_file)
    if err["type"] == "extra_forbidden":
        return _unknown(loc, model, source)
    msg = str(err["msg"]).removeprefix("Value error, ")
    value = err.get("input")
    if isinstance(value, Mapping):  # a check across the keys of a section
        return f"{key} ({source}): {msg}"
    return f"setting {key} = {value!r} ({source}): {msg}; fix the value or remove it to use the default"


def _unknown(loc: tuple[str, ...], model: type[BaseModel], source: str) -> str:
    parent, name = loc[:-1], loc[-1]
    inner = section_model(model, parent)
    known = list(inner.model_fields) if inner else []
    where = f"section {'.'.join(parent)}" if parent else "the top level"
    line = f"unknown setting {'.'.join(loc)} ({source})"
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        meant = (*parent, close[0])
        env = f" ({env_name(meant)})" if "environment" in source else ""
        return f"{line}; did you mean {'.'.join(meant)}{env}?"
    return f"{line}; {where} has: {', '.join(known)}"


def _source(loc: tuple[str, ...], given: set[str], config_file: Path | None) -> str:
    """Where the value at ``loc`` came from, highest priority first (as pydantic-settings merges).
    A key inside ``loc`` counts too: a section-level check fails on one of its keys."""
    dotted = ".".join(loc)
    if any(k == dotted or k.startswith(dotted + ".") or dotted.startswith(k + ".") for k in given):
        return "from a command-line override"
    env = {k.upper(): k for k in os.environ}
    for n in range(len(loc), 0, -1):
        name = env_name(loc[:n])
        if name in env:
            return f"from environment variable {env[name]}"
    inside = sorted(v for k, v in env.items() if k.startswith(env_name(loc) + ENV_NESTED))
    if inside:
        return f"from environment variable {inside[0]}"
    if config_file is not None:
        return f"from {config_file}"
    return "from the defaults"


def _flatten(overrides: Mapping[str, Any], prefix: str = "") -> set[str]:
    out: set[str] = set()
    for key, value in overrides.items():
        if value is None:
            continue
        dotted = f"{prefix}{key}"
        out.add(dotted)
        if isinstance(value, Mapping):
            out |= _flatten(value, dotted + ".")
    return out


def refuse_mistakes(
    model_of: Callable[[], type[BaseModel]], file_of: Callable[[Any], Path | None]
) -> Callable[[Loader], Loader]:
    """Decorate a settings loader so every configuration mistake surfaces as one ConfigError.

    ``model_of`` gives the settings class and ``file_of(config_file)`` the YAML file in use, both
    looked up at call time (the loader's module defines them after this decorator is applied)."""

    def decorate(load: Loader) -> Loader:
        @functools.wraps(load)
        def wrapper(config_file: Any = None, **overrides: Any) -> Any:
            model = model_of()
            check_environment(model, os.environ)
            try:
                named = {} if config_file is None else {"config_file": config_file}
                return load(**named, **overrides)
            except ValidationError as exc:
                raise explain(exc, model, overrides, _safe(file_of, config_file)) from None
            except SettingsError as exc:
                raise ConfigError(
                    f"{exc}; check the RAG_* environment variables (JSON for a whole section)"
                ) from None
            except yaml.YAMLError as exc:
                raise ConfigError(
                    f"config file {_safe(file_of, config_file)} is not valid YAML: {exc}"
                ) from None

        return wrapper  # type: ignore[return-value]

    return decorate


def _safe(file_of: Callable[[Any], Path | None], config_file: Any) -> Path | None:
    try:
        return file_of(config_file)
    except Exception:  # the error being explained matters more than naming the file
        return None
