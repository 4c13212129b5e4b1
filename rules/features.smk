# Feature extraction (docs/method.md section 6): the foundation backbone, a random-init control,
# and the handcrafted lesion descriptor (a non-learned baseline). With features.shards K > 1 each
# backbone feature table is extracted by K jobs, each over its shard of the table's images
# (fmcib_core.eval.shards), and gathered; the handcrafted descriptor (cheap, CPU) is one job.
SHARDED = FEATURE_SHARDS > 1
EXTRACT = extract_features_paths(FEATURE_SHARDS)


rule extract_features:
    input:
        unpack(feature_weights),
        script=script("extract_features"),
        table=task_table,
        report="results/validation/{task}_{split}.json",
    output:
        features=temp(EXTRACT["output"]) if SHARDED else EXTRACT["output"],
    log:
        EXTRACT["log"],
    benchmark:
        EXTRACT["benchmark"]
    conda:
        ENV
    threads: config["features"]["threads"]
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
        shard=lambda wc: f"--shard {wc.scatteritem}" if SHARDED else "",
        csv=lambda wc, output: (
            "" if SHARDED else csv_flag(output.features, config["features"]["csv"])
        ),
        opts=cli_flags(
            feature_options(config)
            | {"channels_last": config["features"]["channels_last"]}
            | {k: config[k] for k in ("backbone", "patch_size", "accelerator", "seed")}
        ),
    shell:
        "python {input.script:q} --table {input.table:q} {params.weights} {params.opts}"
        " --out {output.features:q} {params.shard}{params.csv} --threads {threads} 2> {log:q}"


if SHARDED:

    rule gather_features:
        input:
            script=script("gather_features"),
            table=task_table,
            shards=feature_shards,
        output:
            features=FEATURE_TABLE,
        log:
            "logs/gather_features/{task}_{features}_{split}.log",
        benchmark:
            "results/benchmarks/gather_features/{task}_{features}_{split}.tsv"
        # seconds of reading and writing: not worth a cluster job and its queue
        localrule: True
        conda:
            ENV
        threads: 1
        resources:
            mem_mb=config["resources"]["cpu_mem_mb"],
            runtime=config["resources"]["cpu_runtime"],
        params:
            csv=lambda wc, output: csv_flag(output.features, config["features"]["csv"]),
        shell:
            "python {input.script:q} --table {input.table:q} --shards {input.shards:q}"
            " --out {output.features:q} {params.csv} 2> {log:q}"


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
