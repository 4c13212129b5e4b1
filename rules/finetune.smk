# Supervised training of every task from three initialisations (docs/method.md section 5).


rule finetune:
    input:
        unpack(task_tables),
        unpack(finetune_weights),
        script=script("finetune"),
        reports=validation_reports,
    output:
        metrics="results/{task}/finetune_{init}/metrics.json",
        predictions="results/{task}/finetune_{init}/predictions.parquet",
        weights="results/{task}/finetune_{init}/model_weights.torch",
        log_csv="results/{task}/finetune_{init}/train_log.csv",
    log:
        "logs/finetune/{task}_{init}.log",
    benchmark:
        "results/benchmarks/finetune/{task}_{init}.tsv"
    conda:
        ENV
    threads: config["finetune"]["num_workers"] + 1
    resources:
        mem_mb=config["resources"]["train_mem_mb"],
        runtime=config["resources"]["train_runtime"],
        gpu=GPU_RULE_GPUS,
    params:
        task=task_args,
        tables=split_args,
        weights=lambda wc, input: (
            f"--weights {shlex.quote(input.weights)}"
            if "weights" in input.keys()
            else ""
        ),
        opts=lambda wc: cli_flags(
            finetune_options(config, wc.init)
            | {k: config[k] for k in ("backbone", "patch_size", "accelerator", "seed")}
        ),
        out_dir=lambda wc, output: os.path.dirname(output.metrics),
        work_dir=lambda wc, output: os.path.join(os.path.dirname(output.metrics), "run"),
    shell:
        "python {input.script:q} {params.task} --init {wildcards.init} {params.weights}"
        " {params.tables} --out-dir {params.out_dir:q} --work-dir {params.work_dir:q}"
        " {params.opts} --threads {threads} 2> {log:q}"
