"""The workflow as Snakemake sees it: lint, dry runs, config validation at parse time."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def _snakemake(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run(
        [*SNAKEMAKE, "--snakefile", str(ROOT / "Snakefile"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        timeout=300,
    )


def test_lint_is_clean(tmp_path: Path) -> None:
    result = _snakemake("--lint", "--configfile", str(ROOT / "config/config.yaml"), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations" in result.stdout + result.stderr


def test_dry_run_shows_the_whole_chain(tmp_path: Path) -> None:
    result = _snakemake("-n", "--configfile", str(ROOT / "config/config.yaml"), cwd=tmp_path)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    for rule in (
        "make_demo_data",
        "validate_table",
        "cache_volumes",
        "pretrain",
        "export_weights",
        "finetune",
        "extract_features",
        "linear_eval",
        "handcrafted_features",
        "data_efficiency",
        "report",
    ):
        assert rule in out


def test_single_target_builds_only_what_it_needs(tmp_path: Path) -> None:
    result = _snakemake(
        "-n",
        "results/task2/linear_eval.json",
        "--configfile",
        str(ROOT / "config/config.yaml"),
        cwd=tmp_path,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "finetune" not in out and "report" not in out
    assert "task1" not in out.split("Job stats")[-1]


def test_stability_target_builds_only_what_it_needs(tmp_path: Path) -> None:
    result = _snakemake(
        "-n", "results/task3/stability.json", "--configfile", str(ROOT / "config/config.yaml"),
        cwd=tmp_path,
    )  # fmt: skip
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    stats = out.split("Job stats")[-1]
    assert "stability" in stats and "finetune" not in stats and "report" not in stats
    assert "task1" not in stats and "task2" not in stats


def test_paper_config_with_placeholders_fails_naming_keys(tmp_path: Path) -> None:
    result = _snakemake("-n", "--configfile", str(ROOT / "config/paper.yaml"), cwd=tmp_path)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "tables.pretrain (REPLACE_ME/pretrain.csv)" in out
    assert "tables.task3.test" in out


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("pretrain={'epoch': 3}", "--config: pretrain.epoch: unknown key"),
        ("patch_size=8", "--config: patch_size: 8 is less than the minimum of 16"),
    ],
)
def test_config_typo_or_bound_fails_at_parse_time(tmp_path: Path, override: str, key: str) -> None:
    result = _snakemake(
        "-n", "--configfile", str(ROOT / "config/config.yaml"), "--config", override, cwd=tmp_path
    )
    assert result.returncode != 0
    assert key in result.stdout + result.stderr


def test_config_errors_are_one_line_each_naming_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "my.yaml"
    bad.write_text("pretrian: {}\npretrain:\n  epochs: -2\n  epoch: 3\n")
    result = _snakemake(
        "-n", "--configfile", str(ROOT / "config/config.yaml"), str(bad), cwd=tmp_path
    )
    assert result.returncode == 1
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert lines[0].startswith("my.yaml: pretrian: unknown key; check its spelling")
    assert lines[1].startswith("my.yaml: pretrain.epoch: unknown key; check its spelling")
    assert lines[2] == "my.yaml: pretrain.epochs: -2 is less than the minimum of 1"
    assert len(lines) == 3, lines  # no schema or config dump


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config/config.yaml").write_text("seed: 0\npretrain:\n  epochs: [3\nfoo: 1\n")
    result = _snakemake("-n", cwd=tmp_path)
    assert result.returncode == 1
    out = (result.stdout + result.stderr).strip()
    assert out.startswith("config/config.yaml:4:4: invalid YAML:"), out
    assert len(out.splitlines()) == 1


def test_published_weights_skip_pretraining(tmp_path: Path) -> None:
    weights = tmp_path / "model_weights.torch"
    weights.write_bytes(b"placeholder: the dry run only plans")
    result = _snakemake(
        "-n",
        "--configfile",
        str(ROOT / "config/config.yaml"),
        "--config",
        f"pretrained_weights={weights}",
        cwd=tmp_path,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "pretrain " not in out and "cache_volumes" not in out


# Distinct non-default values of every key a script receives, to find them in its command line.
KEY_VALUES = {
    None: {"seed": 5, "backbone": "resnet18", "patch_size": 40, "accelerator": "gpu"},
    "demo": {"scale": "medium", "seed": 4, "n_cases": 9, "n_pretrain_cases": 12},
    "pretrain": {
        "loss": "ntxent_mined",
        "temperature": 0.37,
        "batch_size": 7,
        "devices": 3,
        "nodes": 2,
        "launcher": "srun",
        "epochs": 11,
        "optimizer": "sgd",
        "warmup_steps": 4,
        "sgd": {"base_lr": 0.123, "momentum": 0.77, "weight_decay": 3.3e-5, "nesterov": True},
        "num_workers": 3,
        "precision": "bf16-mixed",
        "negative_min_distance_mm": 12.5,
        "augment_on": "cpu",
        "cache_dtype": "float32",
    },
    "finetune": {
        "epochs": 13,
        "batch_size": 9,
        "batch_size_random": 5,
        "lr": 0.0041,
        "step_size": 17,
        "gamma": 0.33,
        "num_workers": 2,
        "precision": "16-mixed",
    },
    "features": {"batch_size": 21, "precision": "bf16", "csv": True, "channels_last": True},
    "data_efficiency": {"fractions": [0.2, 0.7]},
    "stability": {"copies": 7, "sigma_mm": 2.5, "distribution": "uniform", "enabled": True},
    "linear_eval": {
        "trials": 23,
        "cv_folds": 4,
        "bootstrap": 77,
        "group_by": "case_id",
        "aggregate": "max",
    },
}
SECTION_SCRIPT = {
    "demo": ["make_demo_data"],
    "pretrain": ["pretrain"],
    "finetune": ["finetune"],
    "features": ["extract_features"],
    "linear_eval": ["linear_eval"],
    "data_efficiency": ["data_efficiency"],
    "stability": ["stability"],
}
TOP_LEVEL_SCRIPTS = {
    "seed": ["pretrain", "finetune", "extract_features", "linear_eval", "stability"],
    "backbone": ["pretrain", "finetune", "extract_features", "export_weights", "stability"],
    "patch_size": ["pretrain", "finetune", "extract_features", "report", "stability"],
    "accelerator": ["pretrain", "finetune", "extract_features", "stability"],
}
# Keys the rules consume themselves, each with where it goes instead of a flag of its own.
CONSUMED = {
    ("demo", "out_dir"): "the demo rule's output folder (--out)",
    ("finetune", "inits"): "which fine-tuning jobs exist",
    ("finetune", "batch_size"): "--batch-size of the jobs other than random init (checked below)",
    ("finetune", "batch_size_random"): "--batch-size of random-init jobs (checked below)",
    ("features", "random_init_control"): "whether the random-init feature jobs exist",
    ("features", "csv"): "--csv beside the parquet (checked below)",
    ("features", "handcrafted"): "whether the handcrafted-descriptor jobs exist",
    ("features", "shards"): "how many extract_features jobs each feature table has (--shard)",
    ("pretrain", "lars"): "only the chosen optimiser's section reaches the script (sgd here)",
    ("pretrain", "adamw"): "only the chosen optimiser's section reaches the script (sgd here)",
    ("stability", "enabled"): "whether the stability jobs exist",
    ("features", "threads"): "the extract_features jobs' threads (--threads; checked elsewhere)",
    ("stability", "threads"): "the stability jobs' threads (--threads; checked elsewhere)",
    ("linear_eval", "patient_level"): "--group-by of the tasks' extra _patient jobs",
    ("pretrain", "cache_dtype"): "--dtype of the cache rule (checked below)",
}
STRUCTURE = {"tables", "prepare", "tasks", "custom_tasks", "pretrained_weights", "resources"}


def _flag(key: str, value: object) -> str:
    if isinstance(value, list):
        return f"--{key.replace('_', '-')} " + " ".join(map(str, value))
    return f"--{key.replace('_', '-')}" + ("" if value is True else f" {value}")


def test_every_config_key_reaches_its_script(tmp_path: Path) -> None:
    schema = yaml.safe_load((ROOT / "schemas/config.schema.yaml").read_text())
    sections = {k for k, v in schema["properties"].items() if "properties" in v}
    listed = set(KEY_VALUES[None]) | STRUCTURE | sections
    assert listed == set(schema["properties"]), "a new top-level key needs a case here"
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    config.update(KEY_VALUES[None])
    for section in sections - STRUCTURE:
        keys = set(schema["properties"][section]["properties"])
        assert keys == set(KEY_VALUES[section]) | {k for s, k in CONSUMED if s == section}
        config[section] = {**config[section], **KEY_VALUES[section]}
    (tmp_path / "keys.yaml").write_text(yaml.safe_dump(config))
    result = _snakemake("-n", "-p", "--configfile", str(tmp_path / "keys.yaml"), cwd=tmp_path)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    commands: dict[str, list[str]] = {}
    for line in out.splitlines():
        for name in ("make_demo_data", "pretrain", "finetune", "extract_features", "linear_eval",
                     "export_weights", "report", "data_efficiency", "stability",
                     "cache_volumes"):  # fmt: skip
            if f"workflow_scripts/{name}.py " in line and "python " in line:
                commands.setdefault(name, []).append(line)
    for section, values in KEY_VALUES.items():
        for key, value in values.items():
            if (section, key) in CONSUMED:
                continue
            scripts = TOP_LEVEL_SCRIPTS[key] if section is None else SECTION_SCRIPT[section]
            # A section of options (the chosen optimiser's) reaches the script flattened.
            flags = (
                [_flag(k, v) for k, v in value.items()]
                if isinstance(value, dict)
                else [_flag(key, value)]
            )
            for name in scripts:
                for command in commands[name]:
                    for flag in flags:
                        assert flag in command, f"{section}.{key} missing {flag}: {command}"
    random_init = [c for c in commands["finetune"] if "--init random" in c]
    others = [c for c in commands["finetune"] if "--init random" not in c]
    assert random_init and all("--batch-size 5" in c for c in random_init)
    assert others and all("--batch-size 9" in c for c in others)
    assert all("--csv results/" in c and ".csv" in c for c in commands["extract_features"])
    assert [c for c in commands["cache_volumes"] if "--dtype float32" in c] == commands[
        "cache_volumes"
    ]


def _jobs(out: str) -> list[dict]:
    """Each job of a dry run with -p: its rule, wildcards, resources and shell command."""
    jobs: list[dict] = []
    for line in out.splitlines():
        rule = re.match(r"(?:local)?rule (\w+):$", line)
        if rule:
            jobs.append({"rule": rule[1], "wildcards": {}, "resources": {}, "shell": ""})
        elif jobs and line.startswith(("    wildcards: ", "    resources: ")):
            key, _, values = line.strip().partition(": ")
            jobs[-1][key] = dict(item.split("=", 1) for item in values.split(", "))
        elif jobs and line.startswith("Shell command: "):
            jobs[-1]["shell"] = line
    return jobs


def _dry_run(tmp_path: Path, *args: str, **config: object) -> list[dict]:
    settings = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    for section, values in config.items():
        settings[section] = {**settings[section], **values} if isinstance(values, dict) else values
    (tmp_path / "dry.yaml").write_text(yaml.safe_dump(settings))
    result = _snakemake("-n", "-p", "--cores", "8", "--configfile", str(tmp_path / "dry.yaml"),
                        *args, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return _jobs(result.stdout + result.stderr)


# config/paper.yaml through profiles/slurm: as it is (2 GPUs in one job, Lightning starts the
# ranks), and with its documented 2 nodes x 4 GPUs alternative (one srun task per GPU). 8
# DataLoader workers per GPU: threads 8 x 2 + 1 for the one process, 8 + 1 for each task.
PAPER_LAUNCHES = [
    ({}, {"gpu": "2"}, "python "),
    (
        {"devices": 4, "nodes": 2, "launcher": "srun"},
        {"nodes": "2", "tasks_per_node": "4", "mpi": "srun", "gres": "gpu:4"},
        "srun --nodes=2 --ntasks-per-node=4 --cpus-per-task=9 --kill-on-bad-exit=1 --gres=gpu:4 "
        "python ",
    ),
]
LAUNCH_RESOURCES = {"gpu", "nodes", "tasks", "tasks_per_node", "tasks_per_gpu", "mpi", "gres"}


@pytest.mark.parametrize(("pretrain", "resources", "launch"), PAPER_LAUNCHES)
def test_slurm_dry_run_of_the_paper_config_shows_what_pretraining_asks_for(
    tmp_path: Path, pretrain: dict, resources: dict, launch: str
) -> None:
    demo = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    # the demo's tables instead of the paper config's REPLACE_ME placeholders
    overlay = {"demo": demo["demo"], "tables": demo["tables"], "pretrain": pretrain}
    (tmp_path / "overlay.yaml").write_text(yaml.safe_dump(overlay))
    # A dry run counts 1 core unless told more; a SLURM run caps no job's threads.
    result = _snakemake(
        "results/pretrain/model_weights.torch", "-n", "-p", "--cores", "256",
        "--profile", str(ROOT / "profiles/slurm"),
        "--configfile", str(ROOT / "config/paper.yaml"), str(tmp_path / "overlay.yaml"),
        cwd=tmp_path,
    )  # fmt: skip
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    (job,) = [job for job in _jobs(out) if job["rule"] == "pretrain"]
    assert {k: v for k, v in job["resources"].items() if k in LAUNCH_RESOURCES} == resources
    threads = 9 if "srun" in launch else 17
    command = job["shell"].removeprefix("Shell command: ")
    assert command.startswith(launch), command
    ranks = pretrain.get("devices", 2), pretrain.get("nodes", 1), pretrain.get("launcher", "local")
    for flag in (f"--devices {ranks[0]} ", f"--nodes {ranks[1]} ", f"--launcher {ranks[2]} ",
                 f"--threads {threads} ", "--batch-size 32 "):  # fmt: skip
        assert flag in command, command


# The scripts that run torch: their rules must pass the job's CPUs on (tests/workflow_scripts/
# test_cli.py checks that each of them sets torch's threads from --threads).
TORCH_SCRIPTS = ("pretrain", "finetune", "extract_features", "stability", "export_weights")
GPU_RULES = {"pretrain", "finetune", "extract_features", "stability"}


def test_every_torch_rule_passes_its_threads(tmp_path: Path) -> None:
    jobs = _dry_run(tmp_path, "--set-scatter", "features=2")
    torch_jobs = [
        job for job in jobs
        if any(f"workflow_scripts/{name}.py " in job["shell"] for name in TORCH_SCRIPTS)
    ]  # fmt: skip
    assert {job["rule"] for job in torch_jobs} == {*GPU_RULES, "export_weights"}
    for job in torch_jobs:
        assert re.search(r" --threads [1-9]\d* ", job["shell"]), job["shell"]
    pretrain = next(job for job in jobs if job["rule"] == "pretrain")
    assert " --threads 2 " in pretrain["shell"]  # max(1, 0 workers) x 1 device + 1


def test_feature_and_stability_jobs_take_their_configured_threads(tmp_path: Path) -> None:
    jobs = _dry_run(tmp_path, features={"threads": 3}, stability={"threads": 5})
    expected = {"extract_features": 3, "stability": 5}
    seen = {job["rule"] for job in jobs if job["rule"] in expected}
    assert seen == set(expected)
    for job in jobs:
        if job["rule"] in expected:
            assert f" --threads {expected[job['rule']]} " in job["shell"], job["shell"]
            assert job["shell"].count(" --threads ") == 1, job["shell"]


@pytest.mark.parametrize("accelerator", ["cpu", "gpu"])
def test_only_gpu_rules_ask_for_gpus_and_cpu_jobs_never(tmp_path: Path, accelerator) -> None:
    jobs = _dry_run(tmp_path, "--set-scatter", "features=2", accelerator=accelerator)
    for job in jobs:
        if job["rule"] in GPU_RULES:
            assert job["resources"]["gpu"] == ("1" if accelerator == "gpu" else "0"), job
        else:  # handcrafted features, linear evaluation, gathering, ... never name a GPU
            assert "gpu" not in job["resources"], job


def _feature_jobs(jobs: list[dict], rule: str) -> dict[tuple[str, ...], list[dict]]:
    tables: dict[tuple[str, ...], list[dict]] = {}
    for job in (j for j in jobs if j["rule"] == rule):
        wildcards = job["wildcards"]
        key = tuple(wildcards[k] for k in ("task", "features", "split"))
        tables.setdefault(key, []).append(job)
    return tables


@pytest.mark.parametrize(
    ("args", "config", "shards"),
    [((), {"features": {"shards": 3}}, 3), (("--set-scatter", "features=2"), {}, 2)],
)
def test_sharded_features_are_shard_jobs_gathered_per_table(
    tmp_path: Path, args: tuple, config: dict, shards: int
) -> None:
    whole = _dry_run(tmp_path)
    assert not any(job["rule"] == "gather_features" for job in whole)
    tables = _feature_jobs(whole, "extract_features")
    jobs = _dry_run(tmp_path, *args, **config)
    extract, gather = (
        _feature_jobs(jobs, "extract_features"),
        _feature_jobs(jobs, "gather_features"),
    )
    assert set(extract) == set(gather) == set(tables)
    for table, shard_jobs in extract.items():
        items = [job["wildcards"]["scatteritem"] for job in shard_jobs]
        assert sorted(items) == [f"{i}-of-{shards}" for i in range(1, shards + 1)]
        for job in shard_jobs:
            item = job["wildcards"]["scatteritem"]
            assert f" --shard {item} --threads " in job["shell"], job["shell"]
        (gathering,) = gather[table]
        assert gathering["shell"].count("/shards/") == shards
        assert f" --out results/{table[0]}/{table[1]}/{table[2]}.parquet " in gathering["shell"]
    count = Counter(job["rule"] for job in jobs)
    assert (
        count["handcrafted_features"] == Counter(j["rule"] for j in whole)["handcrafted_features"]
    )
