# Self-supervised pretraining (docs/method.md section 4) and export of the backbone weights.
# With published weights (pretrained_weights) and no pretraining table these rules do not exist.


if "pretrain" in TABLES:

    rule cache_volumes:
        input:
            script=script("cache_volumes"),
            table=TABLES["pretrain"],
            report="results/validation/pretrain.json",
        output:
            cache=directory("resources/cache/pretrain"),
        log:
            "logs/cache_volumes.log",
        benchmark:
            "results/benchmarks/cache_volumes.tsv"
        # on the critical path of every foundation result: scheduled first
        priority: 100
        conda:
            ENV
        threads: 1
        resources:
            mem_mb=config["resources"]["cpu_mem_mb"],
            runtime=config["resources"]["cpu_runtime"],
        params:
            dtype=config["pretrain"]["cache_dtype"],
        shell:
            "python {input.script:q} --table {input.table:q} --out {output.cache:q}"
            " --dtype {params.dtype} 2> {log:q}"

    rule pretrain:
        input:
            script=script("pretrain"),
            cache="resources/cache/pretrain",
        output:
            checkpoint="results/pretrain/ssl_final.ckpt",
            log_csv="results/pretrain/ssl_log.csv",
        log:
            "logs/pretrain.log",
        benchmark:
            "results/benchmarks/pretrain.tsv"
        priority: 100
        conda:
            ENV
        # per process: the one that starts every rank (launcher local) or one srun task
        threads: PRETRAIN_THREADS
        resources:
            **PRETRAIN_RESOURCES,
            mem_mb=config["resources"]["train_mem_mb"],
            runtime=config["resources"]["train_runtime"],
        params:
            launch=lambda wildcards, threads, resources: pretrain_launch(
                config, threads, resources.get("mpi")
            ),
            work_dir="results/pretrain/run",
            opts=cli_flags(
                pretrain_options(config)
                | {
                    k: config[k]
                    for k in ("backbone", "patch_size", "accelerator", "seed")
                }
            ),
        shell:
            "{params.launch}python {input.script:q} --cache {input.cache:q}"
            " --work-dir {params.work_dir:q}"
            " --out-checkpoint {output.checkpoint:q} --out-log {output.log_csv:q}"
            " {params.opts} --threads {threads} --progress 2> {log:q}"

    rule export_weights:
        input:
            script=script("export_weights"),
            checkpoint="results/pretrain/ssl_final.ckpt",
        output:
            weights="results/pretrain/model_weights.torch",
            safetensors="results/pretrain/model_weights.safetensors",
        log:
            "logs/export_weights.log",
        benchmark:
            "results/benchmarks/export_weights.tsv"
        priority: 100
        conda:
            ENV
        threads: 1
        resources:
            mem_mb=config["resources"]["cpu_mem_mb"],
            runtime=config["resources"]["cpu_runtime"],
        params:
            backbone=config["backbone"],
        shell:
            "python {input.script:q} --checkpoint {input.checkpoint:q}"
            " --backbone {params.backbone} --out {output.weights:q}"
            " --out-safetensors {output.safetensors:q} --threads {threads} 2> {log:q}"
