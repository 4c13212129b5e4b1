"""Config problems as one line each, naming the file and the key; the Snakefile stops on them.

Snakemake's own ``validate`` reports only the first schema error, buried under the schema and the
config, and a YAML syntax error without file or line. These functions find every problem of the
merged config and say which file set the key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import yaml

__all__ = ["config_problems", "config_sources", "yaml_problem"]


def yaml_problem(path: str | Path) -> str | None:
    """``file:line:column: what is wrong`` for a YAML file that does not parse, else None."""
    try:
        yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        return f"{where}: invalid YAML: {err.problem or err.context}; fix the syntax there"
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        return f"{path}: cannot be read as YAML ({err})"
    return None


def _defines(data: Any, keys: Sequence[str | int]) -> bool:
    for key in keys:
        if not isinstance(data, Mapping) or key not in data:
            return False
        data = data[key]
    return True


def _source(keys: Sequence[str | int], sources: Sequence[tuple[str, Mapping]]) -> str:
    """The last source that sets ``keys`` (or the longest part of it), as Snakemake merges them."""
    for depth in range(len(keys), 0, -1):
        for name, data in reversed(sources):
            if _defines(data, keys[:depth]):
                return name
    return sources[-1][0] if sources else "config"


def _messages(error: jsonschema.ValidationError) -> list[tuple[list[str | int], str]]:
    """``(key path, what is wrong)`` for each problem one schema error stands for."""
    keys = list(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
        known = sorted(error.schema.get("properties", {}))
        hint = f"known keys here: {', '.join(known)}" if known else "no keys are allowed here"
        unknown = sorted(set(error.instance) - set(known))
        return [([*keys, key], f"unknown key; check its spelling ({hint})") for key in unknown]
    if error.validator == "required":
        return [(keys, f"{error.message}; add it")]
    return [(keys, error.message)]


def config_problems(
    config: Mapping[str, Any], schema_path: str | Path, sources: Sequence[tuple[str, Mapping]]
) -> list[str]:
    """Every schema violation of ``config``: ``{file}: {dotted.key}: {what is wrong}``.

    Args:
        config: the merged config, before defaults are filled in.
        schema_path: the JSON Schema (YAML).
        sources: ``(name, content)`` of each config source in merge order (config files, then
            ``--config`` values), to name the one that set a bad key.
    """
    schema = yaml.safe_load(Path(schema_path).read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    problems = []
    for error in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.path))):
        for keys, message in _messages(error):
            dotted = ".".join(map(str, keys)) or "(top level)"
            problems.append(f"{_source(keys, sources)}: {dotted}: {message}")
    return problems


def config_sources(
    directive_files: Sequence[str | Path],
    cli_files: Sequence[str | Path],
    cli_values: Mapping[str, Any],
) -> list[tuple[str, Mapping]]:
    """``(name, content)`` of each config source in the order Snakemake merges them: the
    Snakefile's ``configfile:``, then ``--configfile`` files, then ``--config`` values."""
    sources = []
    for path in [*directive_files, *cli_files]:
        content = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        sources.append((_shown(path), content))
    if cli_values:
        sources.append(("--config", cli_values))
    return sources


def _shown(path: str | Path) -> str:
    """A path as the user most likely wrote it: relative to the working folder when inside it."""
    path = Path(path).absolute()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
