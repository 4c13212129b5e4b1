# Data: the synthetic demo, table validation and the pretraining volume cache.


if config["demo"]:

    rule make_demo_data:
        input:
            script=script("make_demo_data"),
        output:
            tables=demo_tables(config["demo"]["out_dir"]),
            images=directory(os.path.join(config["demo"]["out_dir"], "images")),
        log:
            "logs/make_demo_data.log",
        benchmark:
            "results/benchmarks/make_demo_data.tsv"
        conda:
            ENV
        # Every other job waits for the demo data: its cases are made in 2 processes (fewer when
        # --cores is 1; --set-threads make_demo_data=N for more).
        threads: 2
        resources:
            mem_mb=config["resources"]["cpu_mem_mb"],
            runtime=config["resources"]["cpu_runtime"],
        params:
            out_dir=lambda wc, output: os.path.dirname(output.tables[0]),
            opts=cli_flags({k: v for k, v in config["demo"].items() if k != "out_dir"}),
        shell:
            "python {input.script:q} --out {params.out_dir:q} {params.opts}"
            " --threads {threads} 2> {log:q}"


rule validate_table:
    input:
        script=script("validate_table"),
        table=lambda wc: TABLES[wc.table],
    output:
        report="results/validation/{table}.json",
    log:
        "logs/validate_table/{table}.log",
    benchmark:
        "results/benchmarks/validate_table/{table}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=config["resources"]["cpu_mem_mb"],
        runtime=config["resources"]["cpu_runtime"],
    params:
        labels=lambda wc: list_flag("labels", table_labels(config, wc.table)),
    shell:
        "python {input.script:q} {input.table:q} {params.labels}"
        " --report {output.report:q} 2> {log:q}"
