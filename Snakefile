# fmcib-workflow: (public datasets -> prepared) lesion tables -> validation -> SSL pretraining ->
# weights -> fine-tuning, features, linear evaluation -> report. This file is only the table of
# contents.
import re

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


validate(config, "schemas/config.schema.yaml")


include: "rules/common.smk"


wildcard_constraints:
    task="|".join(map(re.escape, TASKS)) or "none",
    split="train|val|test",
    init="random|supervised|foundation",
    table="|".join(map(re.escape, TABLES)) or "none",
    features="|".join(FEATURE_DIRS.values()),
    linear_eval="|".join(LINEAR_EVAL_NAMES.values()),


include: "rules/data.smk"
include: "rules/prepare.smk"
include: "rules/pretrain.smk"
include: "rules/finetune.smk"
include: "rules/features.smk"
include: "rules/linear_eval.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        all_targets(config),
