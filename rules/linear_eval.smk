# Linear evaluation of frozen features with an Optuna search over C (docs/method.md section 6).


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
        opts=cli_flags({**config["linear_eval"], "seed": config["seed"]}),
    shell:
        "python {input.script:q} {params.task} --train {input.train:q} {params.val}"
        " --test {input.test:q} --source {params.source} {params.opts}"
        " --out-json {output.json:q} --out-predictions {output.predictions:q}"
        " --out-model {output.model:q} 2> {log:q}"
