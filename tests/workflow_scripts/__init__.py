"""In-process tests of the workflow scripts."""

from __future__ import annotations

import functools
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "workflow_scripts"
TOP_LEVEL = ("backbone", "patch_size", "accelerator", "seed")
# Script -> the config keys its rule passes: (section, key) pairs; section None = top level.
SCRIPT_KEYS = {
    "pretrain": [(None, k) for k in TOP_LEVEL] + [("pretrain", None)],
    "extract_features": [(None, k) for k in TOP_LEVEL]
    + [("features", "batch_size"), ("features", "precision"), ("features", "channels_last")],
    "finetune": [(None, k) for k in TOP_LEVEL] + [("finetune", None), ("linear_eval", "bootstrap")],
    "linear_eval": [(None, "seed"), ("linear_eval", None)],
    "data_efficiency": [(None, "seed"), ("linear_eval", None), ("data_efficiency", None)],
}
NOT_PASSED = {"inits", "batch_size_random", "patient_level", "cache_dtype"}
# Options the rules always pass that are no config keys: what a test run gets.
RULE_OPTIONS = {
    "finetune": {"--threads": 1},
    "extract_features": {"--threads": 1},
    "pretrain": {"--threads": 1},
}


def _default(schema: dict, prop: dict) -> object:
    """A property's default: its own, else that of the definition it refers to."""
    if "default" in prop:
        return prop["default"]
    if "$ref" in prop:
        return schema["$defs"][prop["$ref"].rsplit("/", 1)[1]].get("default")
    return None


def schema_defaults(name: str, argv: Sequence[str] = ()) -> dict[str, object]:
    """``{flag: default}`` of every option the workflow passes to script ``name``, from the
    schema (the one home of defaults); empty for scripts that take no config keys.

    A section of sections (``pretrain``'s optimisers) contributes the chosen one's keys only:
    the one ``--optimizer`` in ``argv`` names, else the schema's default optimiser.
    """
    schema = yaml.safe_load((ROOT / "schemas" / "config.schema.yaml").read_text())
    defaults = {}
    for section, key in SCRIPT_KEYS.get(name, []):
        props = schema["properties"] if section is None else schema["properties"][section]
        props = props.get("properties", props)
        chosen = None
        if "optimizer" in props:
            chosen = props["optimizer"]["default"]
            if "--optimizer" in argv:
                chosen = argv[list(argv).index("--optimizer") + 1]
        for k in [key] if key else list(props):
            if "properties" in props[k]:  # an optimiser's section
                if k == chosen:
                    for sub, prop in props[k]["properties"].items():
                        defaults["--" + sub.replace("_", "-")] = _default(schema, prop)
                continue
            value = _default(schema, props[k])
            if value is not None and k not in NOT_PASSED:
                defaults["--" + k.replace("_", "-")] = value
    return defaults | RULE_OPTIONS.get(name, {})


def with_schema_defaults(name: str, argv: Sequence[str]) -> list[str]:
    """``argv`` preceded by the schema's default of each workflow-passed flag it lacks, as the
    rules would pass it."""
    missing = []
    for flag, value in schema_defaults(name, argv).items():
        if flag not in argv and value is not False:
            if isinstance(value, list):
                missing += [flag, *map(str, value)]
            else:
                missing += [flag] if value is True else [flag, str(value)]
    return [*missing, *argv]


def import_script(name: str) -> ModuleType:
    """Import ``workflow_scripts/<name>.py`` afresh as a module.

    The scripts folder is on ``sys.path`` only while the module runs its imports (scripts import
    their sibling ``_cli``, which stays in ``sys.modules`` afterwards). The module's ``main``
    fills in, from the schema, each option the workflow always passes and the test leaves out.
    """
    spec = importlib.util.spec_from_file_location(f"{name}_script", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(SCRIPTS))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(SCRIPTS))
    if name in SCRIPT_KEYS:
        main = module.main

        @functools.wraps(main)
        def main_with_defaults(argv: Sequence[str] | None = None) -> int:
            return main(with_schema_defaults(name, list(argv or [])))

        module.main = main_with_defaults
    return module
