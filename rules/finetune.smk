# Supervised training of Tasks 1-3 from three initialisations (METHOD.md section 5).


rule finetune:
    input:
        unpack(task_tables),
        unpack(finetune_weights),
        script=script("finetune"),
        reports=validation_reports,
    output:
        metrics="results/task{task}/finetune_{init}/metrics.json",
        predictions="results/task{task}/finetune_{init}/predictions.parquet",
        weights="results/task{task}/finetune_{init}/model_weights.torch",
        log_csv="results/task{task}/finetune_{init}/train_log.csv",
    log:
        "logs/finetune/task{task}_{init}.log",
    benchmark:
        "results/benchmarks/finetune/task{task}_{init}.tsv"
    conda:
        ENV
    threads: max(1, FT["num_workers"]) + 1
    resources:
        mem_mb=config["resources"]["train_mem_mb"],
        runtime=config["resources"]["train_runtime"],
        gpu=GPU_RULE_GPUS,
    params:
        tables=finetune_table_args,
        weights=lambda wc, input: (
            f"--weights {input.weights}" if "weights" in input.keys() else ""
        ),
        opts=lambda wc: cli_flags(
            {
                "bootstrap": config["linear_eval"]["bootstrap"],
                "batch_size": (
                    FT["batch_size_random"]
                    if wc.init == "random"
                    else FT["batch_size"]
                ),
                **{
                    k: v
                    for k, v in FT.items()
                    if k not in ("inits", "batch_size", "batch_size_random")
                },
            }
        ),
        work_dir="results/task{task}/finetune_{init}/run",
        backbone=config["backbone"],
        patch_size=config["patch_size"],
        accelerator=config["accelerator"],
        seed=config["seed"],
    shell:
        "python {input.script} --task {wildcards.task} --init {wildcards.init} {params.weights}"
        " {params.tables} --out-dir results/task{wildcards.task}/finetune_{wildcards.init}"
        " --work-dir {params.work_dir} --backbone {params.backbone}"
        " --patch-size {params.patch_size} --accelerator {params.accelerator}"
        " --seed {params.seed} {params.opts} 2> {log}"
