"""Run specs: one YAML file says everything a run depends on, HELM-style, so a run can be repeated
and two runs compared knowing what differed.

    name: top-k-1                     # the run's folder under --out (default: the file's stem)
    dataset: eval/examples/sample_corpus.jsonl   # relative paths: relative to the spec file
    index: ./index                    # optional: needed for rows without contexts or answers
    config: configs/default.yaml      # optional base configuration
    pipeline:                         # overrides of any setting, nested as in configs/*.yaml
      retrieval: {top_k: 1}
      generator: {temperature: 0.0}
    judge: auto                       # auto (default), support, ensemble or llm
    metrics: [faithfulness, context_recall]    # reported and gated (default: all)
    perturbations: [typos, lowercase]          # eval/perturb.py names (default: none)
    seed: 0                           # seeds the perturbations
    limit: null                       # score only the first N rows

Unknown keys are refused, as in the settings model.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from eval.perturb import PERTURBATIONS
from rag.errors import RagError


class SpecError(RagError):
    """A run spec cannot be used; the message names the file and the field."""


class RunSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field("", pattern=r"^[A-Za-z0-9._-]*$")
    dataset: Path
    index: Path | None = None
    collection: str | None = None
    config: Path | None = None
    pipeline: dict[str, Any] = Field(default_factory=dict)
    judge: str = "auto"
    metrics: list[str] | None = None
    perturbations: list[str] = Field(default_factory=list)
    seed: int = 0
    limit: int | None = Field(None, ge=1)

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, v: list[str] | None) -> list[str] | None:
        from eval.runner import METRICS

        unknown = [m for m in v or [] if m not in METRICS]
        if unknown:
            raise ValueError(f"unknown metrics {unknown}; known: {', '.join(METRICS)}")
        return v

    @field_validator("perturbations")
    @classmethod
    def _known_perturbations(cls, v: list[str]) -> list[str]:
        unknown = [p for p in v if p not in PERTURBATIONS]
        if unknown:
            raise ValueError(f"unknown perturbations {unknown}; known: {', '.join(PERTURBATIONS)}")
        return v

    def overrides(self) -> dict[str, Any]:
        """``pipeline`` as the dotted keys load_settings takes."""
        return _flatten(self.pipeline)


def load_spec(path: Path) -> RunSpec:
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SpecError(f"{path}: cannot read the run spec ({exc})") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: a run spec is a YAML mapping (dataset:, pipeline:, ...)")
    try:
        spec = RunSpec.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'spec'}: {e['msg']}" for e in exc.errors())
        raise SpecError(f"{path}: {problems}") from None
    base = Path(path).parent
    resolved = {
        k: (base / v if v is not None and not Path(v).is_absolute() else v)
        for k, v in (("dataset", spec.dataset), ("index", spec.index), ("config", spec.config))
    }
    return spec.model_copy(update={**resolved, "name": spec.name or Path(path).stem})


def versions(index_dir: Path | None) -> dict[str, Any]:
    """Package versions (as in results.json), the git commit and the live index version."""
    from eval.report import versions as package_versions

    return {**package_versions(), "git_commit": _git_commit(), "index_version": _index_version(index_dir)}


def write_spec_files(out_dir: Path, spec: RunSpec, index_dir: Path | None) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    data = json.loads(spec.model_dump_json())
    (out_dir / "spec.yaml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    (out_dir / "versions.json").write_text(json.dumps(versions(index_dir), indent=2), encoding="utf-8")


def _index_version(index_dir: Path | None) -> int | None:
    if index_dir is None:
        return None
    from rag.index import layout
    from rag.index.manifest import Manifest

    try:
        return Manifest.read(layout.current_manifest_path(Path(index_dir))).version
    except (RagError, OSError):
        return None


def _git_commit() -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out
