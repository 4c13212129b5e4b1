"""The Snakemake-free functions that turn the config into table paths and target lists."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from workflow_scripts import config_tables, rule_args, sources, targets

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def demo_config() -> dict:
    return yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def test_table_paths_and_labels(demo_config: dict) -> None:
    tables = config_tables.table_paths(demo_config)
    assert tables["pretrain"] == "resources/demo/pretrain.csv"
    assert tables["task2_val"] == "resources/demo/task2_val.csv"
    assert len(tables) == 10
    assert config_tables.table_labels(demo_config, "pretrain") == []
    assert config_tables.table_labels(demo_config, "task1_test") == ["Coarse_lesion_type"]
    assert config_tables.table_labels(demo_config, "task3_train") == ["survival"]


def test_supervised_init_only_for_tasks_2_and_3(demo_config: dict) -> None:
    assert targets.finetune_inits(demo_config, "task1") == ["random", "foundation"]
    assert targets.finetune_inits(demo_config, "task2") == ["random", "supervised", "foundation"]
    cfg = copy.deepcopy(demo_config)
    cfg["tasks"] = [2]
    assert "supervised" not in targets.finetune_inits(cfg, "task2")


def test_published_weights_skip_pretraining(demo_config: dict) -> None:
    assert "results/pretrain/model_weights.torch" in targets.all_targets(demo_config)
    cfg = copy.deepcopy(demo_config)
    cfg["pretrained_weights"] = "weights/model_weights.torch"
    assert sources.foundation_weights(cfg) == "weights/model_weights.torch"
    assert sources.foundation_source(cfg) == "published"
    assert not any("pretrain" in t for t in targets.all_targets(cfg) if "validation" not in t)


def test_all_targets_cover_every_task(demo_config: dict) -> None:
    all_ = targets.all_targets(demo_config)
    for task in (1, 2, 3):
        assert f"results/task{task}/linear_eval.json" in all_
        assert f"results/task{task}/linear_eval_random-init.json" in all_
        assert f"results/task{task}/features/test.parquet" in all_
    assert "results/task1/finetune_supervised/metrics.json" not in all_
    assert "results/task3/finetune_supervised/metrics.json" in all_
    assert all_[-1] == "results/report/report.html"
    cfg = copy.deepcopy(demo_config)
    cfg["features"]["random_init_control"] = False
    assert not any("random-init" in t for t in targets.all_targets(cfg))


def test_the_handcrafted_baseline_is_a_feature_source(demo_config: dict) -> None:
    all_ = targets.all_targets(demo_config)
    assert "results/task2/features_handcrafted/val.parquet" in all_
    assert "results/task3/linear_eval_handcrafted.json" in all_
    assert sources.feature_dirs(demo_config)[-1] == sources.HANDCRAFTED_DIR
    assert sources.feature_source(demo_config, sources.HANDCRAFTED_DIR) == "handcrafted"
    assert sources.features_of("linear_eval_handcrafted") == sources.HANDCRAFTED_DIR
    cfg = copy.deepcopy(demo_config)
    cfg["features"]["handcrafted"] = False
    assert not any("handcrafted" in t for t in targets.all_targets(cfg))


def test_data_efficiency_per_task_over_every_feature_source(demo_config: dict) -> None:
    all_ = targets.all_targets(demo_config)
    assert all(f"results/task{t}/data_efficiency.json" in all_ for t in (1, 2, 3))
    assert sources.feature_sources(demo_config) == ["foundation", "random-init", "handcrafted"]
    cfg = copy.deepcopy(demo_config)
    cfg["pretrained_weights"] = "w.torch"
    cfg["features"]["random_init_control"] = False
    assert sources.feature_sources(cfg) == ["published", "handcrafted"]


def test_missing_tables_named_by_key(demo_config: dict, tmp_path: Path) -> None:
    assert targets.missing_tables(demo_config) == []  # the demo rule makes them
    cfg = copy.deepcopy(demo_config)
    cfg["demo"] = None
    cfg["tables"]["task2"]["val"] = str(tmp_path / "nope.csv")
    cfg["tables"]["pretrain"] = str(tmp_path / "none.csv")
    missing = targets.missing_tables(cfg)
    assert f"tables.task2.val ({tmp_path / 'nope.csv'})" in missing
    assert any(m.startswith("tables.pretrain") for m in missing)


def test_cli_flags() -> None:
    flags = rule_args.cli_flags({"batch_size": 8, "precision": "32-true", "gap": None, "csv": True})
    assert flags == "--batch-size 8 --precision 32-true --csv"
    assert rule_args.cli_flags({"csv": False}) == ""
    assert rule_args.cli_flags({"out": "a b/ü.csv"}) == "--out 'a b/ü.csv'"
    assert rule_args.list_flag("labels", ["malignancy", "x y=2"]) == "--labels malignancy 'x y=2'"
    assert rule_args.list_flag("labels", []) == ""


def test_csv_flag_sits_beside_the_parquet() -> None:
    assert rule_args.csv_flag("results/task2/features/val.parquet", True) == (
        "--csv results/task2/features/val.csv"
    )
    assert rule_args.csv_flag("results/task2/features/val.parquet", False) == ""


def test_finetune_options(demo_config: dict) -> None:
    # the demo gives every init the same batch: set two different ones to tell them apart
    demo_config = copy.deepcopy(demo_config)
    demo_config["finetune"].update(batch_size=32, batch_size_random=8)
    random = rule_args.finetune_options(demo_config, "random")
    foundation = rule_args.finetune_options(demo_config, "foundation")
    supervised = rule_args.finetune_options(demo_config, "supervised")
    assert random["batch_size"] == 8
    assert foundation["batch_size"] == supervised["batch_size"] == 32
    assert random["bootstrap"] == demo_config["linear_eval"]["bootstrap"]
    assert not {"inits", "batch_size_random"} & set(random)
    expected = set(demo_config["finetune"]) - {"inits", "batch_size_random"} | {"bootstrap"}
    assert set(random) == expected


@pytest.mark.parametrize("optimizer", rule_args.OPTIMIZER_SECTIONS)
def test_pretrain_options_flatten_the_chosen_optimizer_only(demo_config, optimizer) -> None:
    cfg = copy.deepcopy(demo_config)
    cfg["pretrain"]["optimizer"] = optimizer
    options = rule_args.pretrain_options(cfg)
    assert options["optimizer"] == optimizer
    assert not set(rule_args.OPTIMIZER_SECTIONS) & set(options)
    assert {k: options[k] for k in cfg["pretrain"][optimizer]} == cfg["pretrain"][optimizer]
    others = {k for o in rule_args.OPTIMIZER_SECTIONS if o != optimizer for k in cfg["pretrain"][o]}
    assert not (others - set(cfg["pretrain"][optimizer])) & set(options)
    flags = rule_args.cli_flags(options)
    assert f"--optimizer {optimizer}" in flags and "--base-lr" in flags


@pytest.mark.parametrize(
    ("accelerator", "batch_size", "expected"),
    [("cpu", None, 16), ("gpu", None, 256), ("gpu", 7, 7), ("cpu", 300, 300)],
)
def test_feature_batch_size_defaults_to_the_accelerators(
    demo_config, accelerator, batch_size, expected
) -> None:
    cfg = copy.deepcopy(demo_config)
    cfg["accelerator"] = accelerator
    cfg["features"]["batch_size"] = batch_size
    options = rule_args.feature_options(cfg)
    assert options == {"batch_size": expected, "precision": cfg["features"]["precision"]}


def test_optimizer_sections_are_the_library_optimizers() -> None:
    from fmcib_core.optim import OPTIMIZER_OPTIONS

    schema = yaml.safe_load((ROOT / "schemas" / "config.schema.yaml").read_text())
    pretrain = schema["properties"]["pretrain"]["properties"]
    assert pretrain["optimizer"]["enum"] == list(rule_args.OPTIMIZER_SECTIONS)
    assert tuple(OPTIMIZER_OPTIONS) == rule_args.OPTIMIZER_SECTIONS
    for name, options in OPTIMIZER_OPTIONS.items():  # the schema's defaults are the library's
        section = pretrain[name]["properties"]
        assert set(section) == {"base_lr", *options}
        assert {k: section[k]["default"] for k in options} == options


def launch_config(demo_config: dict, accelerator: str, **pretrain) -> dict:
    cfg = copy.deepcopy(demo_config)
    cfg["accelerator"] = accelerator
    cfg["pretrain"].update(num_workers=3, **pretrain)
    return cfg


# (accelerator, launcher, nodes, devices) -> (threads, resources, launch line); 3 workers per rank.
LAUNCHES = [
    (("cpu", "local", 1, 1), (4, {"gpu": 0}, "")),
    (("gpu", "local", 1, 2), (7, {"gpu": 2}, "")),
    (
        ("cpu", "srun", 1, 2),
        (4, {"nodes": 1, "tasks_per_node": 2, "mpi": "srun"},
         "srun --nodes=1 --ntasks-per-node=2 --cpus-per-task=4 --kill-on-bad-exit=1 "),
    ),
    (
        ("gpu", "srun", 2, 4),
        (4, {"nodes": 2, "tasks_per_node": 4, "mpi": "srun", "gres": "gpu:4"},
         "srun --nodes=2 --ntasks-per-node=4 --cpus-per-task=4 --kill-on-bad-exit=1 "
         "--gres=gpu:4 "),
    ),
    (  # one task per node: the executor wants tasks_per_node > 1, so tasks = nodes
        ("gpu", "srun", 3, 1),
        (4, {"nodes": 3, "tasks": 3, "tasks_per_gpu": 1, "mpi": "srun", "gres": "gpu:1"},
         "srun --nodes=3 --ntasks-per-node=1 --cpus-per-task=4 --kill-on-bad-exit=1 "
         "--gres=gpu:1 "),
    ),
    (
        ("cpu", "srun", 2, 1),
        (4, {"nodes": 2, "tasks": 2, "mpi": "srun"},
         "srun --nodes=2 --ntasks-per-node=1 --cpus-per-task=4 --kill-on-bad-exit=1 "),
    ),
]  # fmt: skip


@pytest.mark.parametrize(("settings", "expected"), LAUNCHES)
def test_pretrain_threads_resources_and_launch_line(demo_config, settings, expected) -> None:
    accelerator, launcher, nodes, devices = settings
    cfg = launch_config(demo_config, accelerator, launcher=launcher, nodes=nodes, devices=devices)
    threads, resources, launch = expected
    assert rule_args.pretrain_threads(cfg) == threads
    assert rule_args.pretrain_resources(cfg) == resources
    assert rule_args.pretrain_launch(cfg, threads) == launch
    # the job's mpi resource (a profile may set its own) starts the line
    if launcher == "srun":
        line = rule_args.pretrain_launch(cfg, threads, "srun --mpi=pmix")
        assert line == launch.replace("srun", "srun --mpi=pmix", 1)


@pytest.mark.parametrize(
    ("pretrain", "message"),
    [
        ({"nodes": 2, "devices": 2}, "pretrain.nodes: 2 nodes need pretrain.launcher: srun"),
        ({"launcher": "srun", "devices": 1}, "needs at least 2 (nodes x devices)"),
    ],
)
def test_pretrain_launch_settings_that_cannot_run_name_the_keys(demo_config, pretrain, message):
    cfg = launch_config(demo_config, "cpu", **pretrain)
    for function in (rule_args.pretrain_threads, rule_args.pretrain_resources):
        with pytest.raises(ValueError, match=re.escape(message)):
            function(cfg)


def custom(demo_config: dict, **entry) -> dict:
    cfg = copy.deepcopy(demo_config)
    tables = {s: f"resources/demo/task2_{s}.csv" for s in ("train", "val", "test")}
    cfg["custom_tasks"] = {"malignancy_b": {"label": "malignancy", "tables": tables, **entry}}
    return cfg


def test_custom_tasks_are_served_like_the_paper_tasks(demo_config: dict) -> None:
    cfg = custom(demo_config)
    tasks = config_tables.configured_tasks(cfg)
    assert list(tasks) == ["task1", "task2", "task3", "malignancy_b"]
    assert tasks["malignancy_b"].label_column == "malignancy"
    assert config_tables.table_paths(cfg)["malignancy_b_val"] == "resources/demo/task2_val.csv"
    assert config_tables.table_labels(cfg, "malignancy_b_test") == ["malignancy=2"]
    assert config_tables.task_splits(cfg, "malignancy_b") == ["train", "val", "test"]
    all_ = targets.all_targets(cfg)
    assert "results/malignancy_b/linear_eval.json" in all_
    assert "results/malignancy_b/finetune_supervised/metrics.json" in all_
    assert rule_args.task_cli(tasks["task2"]) == "--task 2"
    assert rule_args.task_cli(tasks["malignancy_b"]) == (
        "--task malignancy_b --label malignancy --kind binary --n-classes 2 --hidden 2048"
        " --display malignancy"
    )


def test_bad_custom_task_names_its_problem(demo_config: dict) -> None:
    with pytest.raises(ValueError, match="needs n_classes"):
        config_tables.configured_tasks(custom(demo_config, kind="multiclass"))


def test_missing_custom_table_named_by_key(demo_config: dict, tmp_path: Path) -> None:
    cfg = custom(demo_config)
    cfg["custom_tasks"]["malignancy_b"]["tables"]["test"] = str(tmp_path / "gone.csv")
    missing = targets.missing_tables(cfg)
    assert missing == [f"custom_tasks.malignancy_b.tables.test ({tmp_path / 'gone.csv'})"]


def test_preview_table(demo_config: dict) -> None:
    assert config_tables.preview_table(demo_config) == "resources/demo/task1_test.csv"
    cfg = copy.deepcopy(demo_config)
    del cfg["tables"]["task1"]
    assert config_tables.preview_table(cfg) == "resources/demo/pretrain.csv"


def test_stability_targets_and_sources(demo_config: dict) -> None:
    assert targets.stability_targets(demo_config) == [
        f"results/task{n}/stability.json" for n in (1, 2, 3)
    ]
    assert sources.stability_sources(demo_config, "task2") == [
        (
            "foundation",
            "results/pretrain/model_weights.torch",
            "results/task2/linear_eval_model.npz",
        ),
        ("random-init", "random-init", "results/task2/linear_eval_random-init_model.npz"),
        ("handcrafted", "handcrafted", "results/task2/linear_eval_handcrafted_model.npz"),
    ]
    cfg = copy.deepcopy(demo_config)
    cfg["stability"]["enabled"] = False
    assert targets.stability_targets(cfg) == []
    assert not any("stability" in t for t in targets.all_targets(cfg))


def test_patient_level_evaluations_are_extra_jobs_of_their_tasks(demo_config: dict) -> None:
    cfg = copy.deepcopy(demo_config)
    cfg["linear_eval"]["patient_level"] = {"task3": "case_id"}
    names = sources.linear_eval_names(cfg, "task3")
    assert names[3:] == [n + "_patient" for n in names[:3]]
    assert sources.linear_eval_names(cfg, "task2") == names[:3]
    assert "results/task3/linear_eval_random-init_patient.json" in targets.all_targets(cfg)
    assert sources.features_of("linear_eval_handcrafted_patient") == sources.HANDCRAFTED_DIR
    assert sources.linear_eval_group(cfg, "task3", "linear_eval_patient") == "case_id"
    assert sources.linear_eval_group(cfg, "task3", "linear_eval") is None
    cfg["linear_eval"]["group_by"] = "lesion_id"
    assert sources.linear_eval_group(cfg, "task2", "linear_eval") == "lesion_id"


def test_extract_features_writes_the_table_or_one_shard_of_it() -> None:
    whole = sources.extract_features_paths(1)
    assert whole["output"] == sources.FEATURE_TABLE == "results/{task}/{features}/{split}.parquet"
    assert whole["log"] == "logs/extract_features/{task}_{features}_{split}.log"
    sharded = sources.extract_features_paths(3)
    assert sharded["output"] == sources.FEATURE_SHARD
    assert "{scatteritem}" in sharded["output"] and sharded["output"] != sources.FEATURE_TABLE
    for key in ("log", "benchmark"):  # one per shard job
        assert sharded[key] == whole[key].replace("{split}", "{split}_{scatteritem}")
