# fmcib-workflow: (public datasets -> prepared) lesion tables -> validation -> SSL pretraining ->
# weights -> fine-tuning, features, linear evaluation -> report. This file is only the table of
# contents.
import os
import re
import sys

from snakemake.utils import min_version, validate

from workflow_scripts.config_check import config_problems, config_sources, yaml_problem

min_version("9.0")

DEFAULT_CONFIG = "config/config.yaml"
if os.path.exists(DEFAULT_CONFIG) and yaml_problem(DEFAULT_CONFIG):
    sys.exit(print(yaml_problem(DEFAULT_CONFIG), file=sys.stderr) or 1)


configfile: DEFAULT_CONFIG


# Every problem of the config, one line each naming its file and key; then the defaults.
_cli_files = [str(f) for f in workflow.config_settings.configfiles]
_problems = config_problems(
    config,
    os.path.join(workflow.basedir, "schemas/config.schema.yaml"),
    config_sources(
        [f for f in workflow.configfiles if str(f) not in _cli_files],
        _cli_files,
        workflow.config_settings.config,
    ),
)
if _problems:
    print("\n".join(_problems), file=sys.stderr)
    sys.exit(1)
validate(config, "schemas/config.schema.yaml")


# Each backbone feature table is extracted in this many jobs (rules/features.smk); one run may
# set another number with `--set-scatter features=K`.
scattergather:
    features=config["features"]["shards"],


include: "rules/common.smk"


wildcard_constraints:
    task="|".join(map(re.escape, TASKS)) or "none",
    split="train|val|test",
    init="random|supervised|foundation",
    table="|".join(map(re.escape, TABLES)) or "none",
    features="|".join(FEATURE_DIRS.values()),
    linear_eval="|".join(
        f"{name}(?:{PATIENT_SUFFIX})?" for name in LINEAR_EVAL_NAMES.values()
    ),


include: "rules/data.smk"
include: "rules/prepare.smk"
include: "rules/pretrain.smk"
include: "rules/finetune.smk"
include: "rules/features.smk"
include: "rules/linear_eval.smk"
include: "rules/stability.smk"
include: "rules/report.smk"


report: "rules/report/workflow.rst"


rule all:
    default_target: True
    input:
        all_targets(config),
