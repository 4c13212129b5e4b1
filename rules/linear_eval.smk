# Linear evaluation of frozen features with an Optuna search over C (METHOD.md section 6).


rule linear_eval:
    input:
        unpack(linear_eval_features),
        script=script("linear_eval"),
    output:
        json="results/task{task}/{linear_eval}.json",
        predictions="results/task{task}/{linear_eval}_predictions.parquet",
        model="results/task{task}/{linear_eval}_model.npz",
    log:
        "logs/linear_eval/task{task}_{linear_eval}.log",
    benchmark:
        "results/benchmarks/linear_eval/task{task}_{linear_eval}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=config["resources"]["cpu_mem_mb"],
        runtime=config["resources"]["cpu_runtime"],
    params:
        val=lambda wc, input: f"--val {input.val}" if "val" in input.keys() else "",
        source=linear_eval_source,
        opts=cli_flags(LE),
        seed=config["seed"],
    shell:
        "python {input.script} --task {wildcards.task} --train {input.train} {params.val}"
        " --test {input.test} --source {params.source} {params.opts} --seed {params.seed}"
        " --out-json {output.json} --out-predictions {output.predictions}"
        " --out-model {output.model} 2> {log}"
