# The HTML report: ROC curves, the comparison table with CIs, SSL curves, patch previews, config.


rule report:
    input:
        unpack(report_inputs),
        script=script("report"),
    output:
        html="results/report/report.html",
        # The page's parts for `snakemake --report`, captions in rules/report/*.rst. Folders for
        # what varies with the config (one ROC PNG per configured task; SSL curves only when
        # pretraining ran). Data-efficiency and stability figures would join here the same way.
        comparison=report(
            "results/report/comparison.html",
            caption="report/comparison.rst",
            category="Results",
            labels={"table": "test metrics with 95% CIs"},
        ),
        roc=report(
            directory("results/report/roc"),
            patterns=["{task}.png"],
            caption="report/roc.rst",
            category="ROC curves",
            labels={"task": "{task}"},
        ),
        ssl=report(
            directory("results/report/ssl"),
            patterns=["{figure}.png"],
            caption="report/ssl.rst",
            category="Self-supervised pretraining",
            labels={"figure": "{figure}"},
        ),
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
            f"--ssl-log {shlex.quote(input.ssl_log)}"
            if "ssl_log" in input.keys()
            else ""
        ),
        stability=lambda wc, input: list_flag("stability", input.stability),
        preview=lambda wc, input: (
            f"--preview-table {shlex.quote(input.preview_table)}"
            if "preview_table" in input.keys()
            else ""
        ),
        linear_eval=lambda wc, input: list_flag("linear_eval", input.linear_eval),
        finetune=lambda wc, input: list_flag("finetune", input.finetune),
        data_efficiency=lambda wc, input: list_flag(
            "data_efficiency", input.data_efficiency
        ),
        config_json=lambda wc: json.dumps(config, sort_keys=True),
        patch_size=config["patch_size"],
    shell:
        "python {input.script:q} {params.linear_eval} {params.finetune} {params.data_efficiency}"
        " {params.ssl_log} {params.preview} {params.stability}"
        " --patch-size {params.patch_size} --config-json {params.config_json:q}"
        " --out {output.html:q} --comparison {output.comparison:q}"
        " --roc-dir {output.roc:q} --ssl-dir {output.ssl:q} 2> {log:q}"
