# Shared helpers for the .smk files: config lookups and input functions built on the tested,
# Snakemake-free functions in workflow_scripts/ (config_tables, prepared, sources, targets,
# rule_args).
import json
import os
import shlex

from snakemake.exceptions import WorkflowError

from workflow_scripts.config_tables import (
    configured_tasks,
    demo_tables,
    preview_table,
    table_labels,
    table_paths,
    task_splits,
)
from workflow_scripts.prepared import PREPARED, prepared_datasets
from workflow_scripts.rule_args import (
    cli_flags,
    csv_flag,
    feature_options,
    finetune_options,
    list_flag,
    pretrain_launch,
    pretrain_options,
    pretrain_resources,
    pretrain_threads,
    prepare_options,
    repeated_flag,
    stability_options,
    task_cli,
)
from workflow_scripts.sources import (
    BUILT_IN,
    FEATURE_DIRS,
    FEATURE_SHARD,
    FEATURE_TABLE,
    HANDCRAFTED_DIR,
    LINEAR_EVAL_NAMES,
    PATIENT_SUFFIX,
    extract_features_paths,
    feature_dirs,
    feature_source,
    feature_sources,
    features_of,
    foundation_weights,
    linear_eval_group,
    linear_eval_names,
    stability_sources,
)
from workflow_scripts.targets import (
    SUPERVISED_WEIGHTS,
    all_targets,
    finetune_inits,
    missing_tables,
    stability_targets,
)

try:
    TASKS = configured_tasks(config)
except ValueError as err:
    raise WorkflowError(f"custom_tasks: {err}") from None
_missing = missing_tables(config)
if _missing:
    raise WorkflowError(
        "these configured tables do not exist; set them to your lesion tables (CSV or parquet): "
        + ", ".join(_missing)
    )

TABLES = table_paths(config)
PREPARED_DIRS = prepared_datasets(config)
ENV = "../envs/fmcib.yaml"
GPU_RULE_GPUS = 1 if config["accelerator"] == "gpu" else 0
# Pretraining: threads per process and its SLURM resources (nodes, tasks, GPUs), launcher-aware.
try:
    PRETRAIN_THREADS = pretrain_threads(config)
    PRETRAIN_RESOURCES = pretrain_resources(config)
except ValueError as err:
    raise WorkflowError(str(err)) from None
# Jobs per backbone feature table: features.shards, or a run's --set-scatter features=K.
FEATURE_SHARDS = len(scatter.features("{scatteritem}"))
# Every rule runs this checkout's fmcib_core, also in a conda env that holds only its
# dependencies (`--use-conda`): the scripts import it from the workflow's base folder.
_BASEDIR = shlex.quote(workflow.basedir).replace("{", "{{").replace("}", "}}")
shell.prefix(f"export PYTHONPATH={_BASEDIR}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; ")


def script(name):
    # Relative to the working folder, so that a moved or copied checkout with finished results
    # records the same inputs and has nothing to do.
    return os.path.relpath(
        os.path.join(workflow.basedir, "workflow_scripts", f"{name}.py")
    )


def task_table(wildcards, split=None):
    return TABLES[f"{wildcards.task}_{split or wildcards.split}"]


def task_tables(wildcards):
    return {
        split: TABLES[f"{wildcards.task}_{split}"]
        for split in task_splits(config, wildcards.task)
    }


def task_args(wildcards):
    return task_cli(TASKS[wildcards.task])


def validation_reports(wildcards):
    return [
        f"results/validation/{wildcards.task}_{split}.json"
        for split in task_splits(config, wildcards.task)
    ]


def split_args(wildcards, input):
    return " ".join(
        f"--{split} {shlex.quote(input[split])}"
        for split in task_splits(config, wildcards.task)
    )


def finetune_weights(wildcards):
    if wildcards.init == "foundation":
        return {"weights": foundation_weights(config)}
    if wildcards.init == "supervised":
        return {"weights": SUPERVISED_WEIGHTS}
    return {}


def feature_weights(wildcards):
    if wildcards.features == FEATURE_DIRS["foundation"]:
        return {"weights": foundation_weights(config)}
    return {}


def feature_shards(wildcards):
    return gather.features(
        FEATURE_SHARD,
        task=wildcards.task,
        features=wildcards.features,
        split=wildcards.split,
    )


def linear_eval_features(wildcards):
    folder = features_of(wildcards.linear_eval)
    return {
        split: f"results/{wildcards.task}/{folder}/{split}.parquet"
        for split in task_splits(config, wildcards.task)
    }


def linear_eval_options(task, name):
    options = {k: v for k, v in config["linear_eval"].items() if k != "patient_level"}
    return options | {
        "group_by": linear_eval_group(config, task, name),
        "seed": config["seed"],
    }


def data_efficiency_features(wildcards):
    return {
        split: [
            f"results/{wildcards.task}/{folder}/{split}.parquet"
            for folder in feature_dirs(config)
        ]
        for split in task_splits(config, wildcards.task)
    }


def report_inputs(wildcards):
    files = {"linear_eval": [], "finetune": [], "data_efficiency": []}
    for task in TASKS:
        files["linear_eval"] += [
            f"results/{task}/{name}.json" for name in linear_eval_names(config, task)
        ]
        for init in finetune_inits(config, task):
            files["finetune"].append(f"results/{task}/finetune_{init}/metrics.json")
        files["data_efficiency"].append(f"results/{task}/data_efficiency.json")
    if not config.get("pretrained_weights"):
        files["ssl_log"] = "results/pretrain/ssl_log.csv"
    if preview_table(config):
        files["preview_table"] = preview_table(config)
    files["stability"] = stability_targets(config)
    return files


def stability_inputs(wildcards):
    sources = stability_sources(config, wildcards.task)
    files = {"models": [model for _, _, model in sources]}
    files["weights"] = [w for _, w, _ in sources if w not in BUILT_IN]
    return files


def prepared_output(dataset, name):
    return os.path.join(PREPARED_DIRS[dataset], name)


def prepared_tables_of(dataset, extra=()):
    return [
        prepared_output(dataset, f"{key}.csv") for key in (*extra, *PREPARED[dataset])
    ]
