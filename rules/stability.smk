# Seed-point stability of features and test metrics, per task (docs/method.md section 6).


rule stability:
    input:
        unpack(stability_inputs),
        script=script("stability"),
        table=lambda wc: task_table(wc, "test"),
        report="results/validation/{task}_test.json",
    output:
        json="results/{task}/stability.json",
    log:
        "logs/stability/{task}.log",
    benchmark:
        "results/benchmarks/stability/{task}.tsv"
    conda:
        ENV
    threads: config["stability"]["threads"]
    resources:
        mem_mb=config["resources"]["cpu_mem_mb"],
        runtime=config["resources"]["train_runtime"],
        gpu=GPU_RULE_GPUS,
    params:
        task=task_args,
        sources=lambda wc: repeated_flag("source", stability_sources(config, wc.task)),
        opts=cli_flags(
            stability_options(config)
            | {k: config[k] for k in ("backbone", "patch_size", "accelerator", "seed")}
        ),
    shell:
        "python {input.script:q} {params.task} --table {input.table:q} {params.sources}"
        " {params.opts} --threads {threads} --out {output.json:q} 2> {log:q}"
