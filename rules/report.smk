# The HTML report: ROC curves, the comparison table with CIs, SSL curves, patch previews, config.


rule report:
    input:
        unpack(report_inputs),
        script=script("report"),
        preview_table=TABLES.get("task1_test", next(iter(TABLES.values()), "MISSING")),
    output:
        html="results/report/report.html",
    log:
        "logs/report.log",
    benchmark:
        "results/benchmarks/report.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=config["resources"]["cpu_mem_mb"],
        runtime=config["resources"]["cpu_runtime"],
    params:
        ssl_log=lambda wc, input: (
            f"--ssl-log {input.ssl_log}" if "ssl_log" in input.keys() else ""
        ),
        config_json=lambda wc: json.dumps(config, sort_keys=True),
        patch_size=config["patch_size"],
    shell:
        "python {input.script} --linear-eval {input.linear_eval} --finetune {input.finetune}"
        " {params.ssl_log} --preview-table {input.preview_table}"
        " --patch-size {params.patch_size} --config-json {params.config_json:q}"
        " --out {output.html} 2> {log}"
