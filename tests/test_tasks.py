"""The task table: the paper's three tasks as data, custom tasks, and torch-free import."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fmcib_core.tasks import TASKS, Task, TaskError, custom_task, paper_task


def test_task_table() -> None:
    assert {t: (s.label_column, s.n_outputs, s.loss) for t, s in TASKS.items()} == {
        1: ("Coarse_lesion_type", 8, "ce"),
        2: ("malignancy", 1, "bce"),
        3: ("survival", 1, "bce"),
    }
    assert {t: s.label_column for t, s in TASKS.items()} == {
        1: "Coarse_lesion_type",
        2: "malignancy",
        3: "survival",
    }


def test_paper_tasks_follow_the_method() -> None:
    one, two, three = TASKS[1], TASKS[2], TASKS[3]
    assert one.head_dims(4096) == [4096, 2048, 8]
    assert two.head_dims(4096) == [4096, 2048, 1]
    assert three.head_dims(4096) == [4096, 2048, 512, 256, 1]
    assert one.test_metrics == ("mean_average_precision", "balanced_accuracy")
    assert two.test_metrics == ("roc_auc", "average_precision")
    assert three.test_metrics == ("roc_auc", "c_index")
    assert [t.search_metric for t in (one, two, three)] == ["accuracy", "roc_auc", "roc_auc"]
    assert one.selection_metric == "mean_average_precision" and two.selection_metric == "roc_auc"
    assert [t.key for t in (one, two, three)] == ["task1", "task2", "task3"]
    assert not one.supervised_init and two.supervised_init and three.supervised_init
    assert three.survival and not two.survival and one.multiclass


@pytest.mark.parametrize("given", [2, "2", "task2", TASKS[2]])
def test_paper_task_lookup(given: object) -> None:
    assert paper_task(given) is TASKS[2]


def test_unknown_paper_task() -> None:
    with pytest.raises(TaskError, match="unknown task 4"):
        paper_task(4)


def test_custom_tasks() -> None:
    task = custom_task("malignancy_b", "malignancy")
    assert task == Task("malignancy_b", "malignancy", "binary", 2, (2048,), "malignancy")
    assert task.key == "malignancy_b" and task.head_dims(64) == [64, 2048, 1]
    five = custom_task("grade", "grade", "multiclass", n_classes=5, hidden=[32])
    assert five.head_dims(16) == [16, 32, 5] and five.loss == "ce"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "task2", "label_column": "x"}, "not a paper task"),
        ({"name": "2x", "label_column": "x"}, "use a letter"),
        ({"name": "a b", "label_column": "x"}, "use a letter"),
        ({"name": "g", "label_column": "x", "kind": "multiclass"}, "needs n_classes"),
        ({"name": "g", "label_column": "x", "kind": "ordinal"}, "kind must be one of"),
        ({"name": "g", "label_column": "x", "n_classes": 3}, "has n_classes 2"),
        ({"name": "g", "label_column": "x", "kind": "multiclass", "n_classes": 2}, ">= 3"),
        ({"name": "g", "label_column": "x", "hidden": [0]}, "hidden layer sizes"),
    ],
)
def test_bad_custom_tasks(kwargs: dict, message: str) -> None:
    with pytest.raises(TaskError, match=message):
        custom_task(**kwargs)


def test_tasks_and_the_package_root_import_without_torch() -> None:
    code = (
        "import sys, fmcib_core, fmcib_core.tasks; "
        "assert 'torch' not in sys.modules, 'torch was imported'; "
        "assert fmcib_core.__version__"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
