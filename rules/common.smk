# Shared helpers for the .smk files: config lookups and input functions built on the tested,
# Snakemake-free functions in workflow_scripts/targets.py.
import json
import os
import sys

from snakemake.exceptions import WorkflowError

sys.path.insert(0, os.path.join(workflow.basedir, "workflow_scripts"))

from targets import (
    FEATURE_DIRS,
    LINEAR_EVAL_NAMES,
    TASK_LABELS,
    all_targets,
    cli_flags,
    demo_tables,
    feature_dirs,
    finetune_inits,
    foundation_source,
    foundation_weights,
    missing_tables,
    table_labels,
    table_paths,
    task_splits,
)

_missing = missing_tables(config)
if _missing:
    raise WorkflowError(
        "these configured tables do not exist; set them to your lesion tables (CSV or parquet): "
        + ", ".join(_missing)
    )

TABLES = table_paths(config)
ENV = "../envs/fmcib.yaml"
GPU_RULE_GPUS = 1 if config["accelerator"] == "gpu" else 0


def script(name):
    return os.path.join(workflow.basedir, "workflow_scripts", f"{name}.py")


def task_table(wildcards, split=None):
    return TABLES[f"task{wildcards.task}_{split or wildcards.split}"]


def task_tables(wildcards):
    return {
        split: TABLES[f"task{wildcards.task}_{split}"]
        for split in task_splits(config, int(wildcards.task))
    }


def validation_reports(wildcards):
    return [
        f"results/validation/task{wildcards.task}_{split}.json"
        for split in task_splits(config, int(wildcards.task))
    ]


# --- pretrain ---
PT = config["pretrain"]


# --- finetune ---
FT = config["finetune"]


def finetune_weights(wildcards):
    if wildcards.init == "foundation":
        return {"weights": foundation_weights(config)}
    if wildcards.init == "supervised":
        return {"weights": "results/task1/finetune_random/model_weights.torch"}
    return {}


def finetune_table_args(wildcards, input):
    return " ".join(
        f"--{split} {input[split]}"
        for split in task_splits(config, int(wildcards.task))
    )


# --- features ---
FE = config["features"]


def feature_weights(wildcards):
    if wildcards.features == FEATURE_DIRS["foundation"]:
        return {"weights": foundation_weights(config)}
    return {}


# --- linear_eval ---
LE = config["linear_eval"]
_FEATURES_OF = {name: folder for folder, name in LINEAR_EVAL_NAMES.items()}


def linear_eval_features(wildcards):
    folder = _FEATURES_OF[wildcards.linear_eval]
    return {
        split: f"results/task{wildcards.task}/{folder}/{split}.parquet"
        for split in task_splits(config, int(wildcards.task))
    }


def linear_eval_source(wildcards):
    if _FEATURES_OF[wildcards.linear_eval] == FEATURE_DIRS["foundation"]:
        return foundation_source(config)
    return "random-init"


# --- report ---
def report_inputs(wildcards):
    files = {"linear_eval": [], "finetune": []}
    for task in config["tasks"]:
        for folder in feature_dirs(config):
            files["linear_eval"].append(
                f"results/task{task}/{LINEAR_EVAL_NAMES[folder]}.json"
            )
        for init in finetune_inits(config, task):
            files["finetune"].append(f"results/task{task}/finetune_{init}/metrics.json")
    if not config.get("pretrained_weights"):
        files["ssl_log"] = "results/pretrain/ssl_log.csv"
    return files
