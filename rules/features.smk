# Feature extraction (docs/method.md section 6): the foundation backbone, a random-init control,
# and the handcrafted lesion descriptor (a non-learned baseline).


rule extract_features:
    input:
        unpack(feature_weights),
        script=script("extract_features"),
        table=task_table,
        report="results/validation/{task}_{split}.json",
    output:
        features="results/{task}/{features}/{split}.parquet",
    log:
        "logs/extract_features/{task}_{features}_{split}.log",
    benchmark:
        "results/benchmarks/extract_features/{task}_{features}_{split}.tsv"
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=config["resources"]["cpu_mem_mb"],
        runtime=config["resources"]["train_runtime"],
        gpu=GPU_RULE_GPUS,
    params:
        weights=lambda wc, input: (
            f"--weights {shlex.quote(input.weights)}"
            if "weights" in input.keys()
            else "--random-init"
        ),
        csv=lambda wc, output: csv_flag(output.features, config["features"]["csv"]),
        opts=cli_flags(
            {k: config["features"][k] for k in ("batch_size", "precision")}
            | {k: config[k] for k in ("backbone", "patch_size", "accelerator", "seed")}
        ),
    shell:
        "python {input.script:q} --table {input.table:q} {params.weights} {params.opts}"
        " --out {output.features:q} {params.csv} --threads {threads} 2> {log:q}"


rule handcrafted_features:
    input:
        script=script("handcrafted_features"),
        table=task_table,
        report="results/validation/{task}_{split}.json",
    output:
        features=f"results/{{task}}/{HANDCRAFTED_DIR}/{{split}}.parquet",
    log:
        "logs/handcrafted_features/{task}_{split}.log",
    benchmark:
        "results/benchmarks/handcrafted_features/{task}_{split}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=config["resources"]["cpu_mem_mb"],
        runtime=config["resources"]["cpu_runtime"],
    params:
        csv=lambda wc, output: csv_flag(output.features, config["features"]["csv"]),
    shell:
        "python {input.script:q} --table {input.table:q} --out {output.features:q}"
        " {params.csv} 2> {log:q}"
