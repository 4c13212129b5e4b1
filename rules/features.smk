# Feature extraction (METHOD.md section 6): the foundation backbone, and a random-init control.


rule extract_features:
    input:
        unpack(feature_weights),
        script=script("extract_features"),
        table=task_table,
        report="results/validation/task{task}_{split}.json",
    output:
        features="results/task{task}/{features}/{split}.parquet",
    log:
        "logs/extract_features/task{task}_{features}_{split}.log",
    benchmark:
        "results/benchmarks/extract_features/task{task}_{features}_{split}.tsv"
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=config["resources"]["cpu_mem_mb"],
        runtime=config["resources"]["train_runtime"],
        gpu=GPU_RULE_GPUS,
    params:
        weights=lambda wc, input: (
            f"--weights {input.weights}"
            if "weights" in input.keys()
            else "--random-init"
        ),
        csv=lambda wc, output: f"--csv {output.features[:-8]}.csv" if FE["csv"] else "",
        opts=cli_flags({"batch_size": FE["batch_size"], "precision": FE["precision"]}),
        backbone=config["backbone"],
        patch_size=config["patch_size"],
        accelerator=config["accelerator"],
        seed=config["seed"],
    shell:
        "python {input.script} --table {input.table} {params.weights}"
        " --backbone {params.backbone} --patch-size {params.patch_size}"
        " {params.opts}"
        " --accelerator {params.accelerator} --seed {params.seed}"
        " --out {output.features} {params.csv} 2> {log}"
