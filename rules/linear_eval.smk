# Linear evaluation of frozen features with an Optuna search over C (docs/method.md section 6),
# and its data efficiency: the same on nested, stratified fractions of the training set.


rule linear_eval:
    input:
        unpack(linear_eval_features),
        script=script("linear_eval"),
    output:
        json="results/{task}/{linear_eval}.json",
        predictions="results/{task}/{linear_eval}_predictions.parquet",
        model="results/{task}/{linear_eval}_model.npz",
    log:
        "logs/linear_eval/{task}_{linear_eval}.log",
    benchmark:
        "results/benchmarks/linear_eval/{task}_{linear_eval}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=config["resources"]["cpu_mem_mb"],
        runtime=config["resources"]["cpu_runtime"],
    params:
        task=task_args,
        val=lambda wc, input: (
            f"--val {shlex.quote(input.val)}" if "val" in input.keys() else ""
        ),
        source=lambda wc: feature_source(config, features_of(wc.linear_eval)),
        opts=lambda wc: cli_flags(linear_eval_options(wc.task, wc.linear_eval)),
    shell:
        "python {input.script:q} {params.task} --train {input.train:q} {params.val}"
        " --test {input.test:q} --source {params.source} {params.opts}"
        " --out-json {output.json:q} --out-predictions {output.predictions:q}"
        " --out-model {output.model:q} 2> {log:q}"


rule data_efficiency:
    input:
        unpack(data_efficiency_features),
        script=script("data_efficiency"),
    output:
        json="results/{task}/data_efficiency.json",
    log:
        "logs/data_efficiency/{task}.log",
    benchmark:
        "results/benchmarks/data_efficiency/{task}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=config["resources"]["cpu_mem_mb"],
        runtime=config["resources"]["cpu_runtime"],
    params:
        task=task_args,
        sources=lambda wc: list_flag("sources", feature_sources(config)),
        tables=lambda wc, input: " ".join(
            list_flag(split, input[split]) for split in task_splits(config, wc.task)
        ),
        opts=lambda wc: cli_flags(linear_eval_options(wc.task, "")),
        fractions=list_flag(
            "fractions", [str(f) for f in config["data_efficiency"]["fractions"]]
        ),
    shell:
        "python {input.script:q} {params.task} {params.sources} {params.tables}"
        " {params.fractions} {params.opts} --out-json {output.json:q} 2> {log:q}"
