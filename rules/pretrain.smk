# Self-supervised pretraining (METHOD.md section 4) and export of the backbone weights.


rule cache_volumes:
    input:
        script=script("cache_volumes"),
        table=TABLES.get("pretrain", "MISSING"),
        report="results/validation/pretrain.json",
    output:
        cache=directory("resources/cache/pretrain"),
    log:
        "logs/cache_volumes.log",
    benchmark:
        "results/benchmarks/cache_volumes.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=config["resources"]["cpu_mem_mb"],
        runtime=config["resources"]["cpu_runtime"],
    shell:
        "python {input.script} --table {input.table} --out {output.cache} 2> {log}"


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
    conda:
        ENV
    threads: max(1, PT["num_workers"]) * PT["devices"] + 1
    resources:
        mem_mb=config["resources"]["train_mem_mb"],
        runtime=config["resources"]["train_runtime"],
        gpu=GPU_RULE_GPUS * PT["devices"],
    params:
        work_dir="results/pretrain/run",
        backbone=config["backbone"],
        patch_size=config["patch_size"],
        accelerator=config["accelerator"],
        seed=config["seed"],
        opts=cli_flags(PT),
    shell:
        "python {input.script} --cache {input.cache} --work-dir {params.work_dir}"
        " --out-checkpoint {output.checkpoint} --out-log {output.log_csv}"
        " --backbone {params.backbone} --patch-size {params.patch_size}"
        " --accelerator {params.accelerator} --seed {params.seed} {params.opts} --progress"
        " 2> {log}"


rule export_weights:
    input:
        script=script("export_weights"),
        checkpoint="results/pretrain/ssl_final.ckpt",
    output:
        weights="results/pretrain/model_weights.torch",
    log:
        "logs/export_weights.log",
    benchmark:
        "results/benchmarks/export_weights.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=config["resources"]["cpu_mem_mb"],
        runtime=config["resources"]["cpu_runtime"],
    params:
        backbone=config["backbone"],
    shell:
        "python {input.script} --checkpoint {input.checkpoint} --backbone {params.backbone}"
        " --out {output.weights} 2> {log}"
