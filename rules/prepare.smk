# Public datasets to lesion tables (README, "Reproducing the paper on public data"): one rule per
# dataset set under `prepare:`; its tables replace the `tables:` entries of the same keys and are
# validated like any other table.

if "deeplesion" in PREPARED_DIRS:

    rule prepare_deeplesion:
        input:
            script=script("prepare_deeplesion"),
            dl_info=os.path.join(config["prepare"]["deeplesion"]["root"], "DL_info.csv"),
            images=os.path.join(config["prepare"]["deeplesion"]["root"], "Images_png"),
        output:
            tables=prepared_tables_of("deeplesion"),
            summary=prepared_output("deeplesion", "summary.json"),
            images=directory(prepared_output("deeplesion", "images")),
        log:
            "logs/prepare/deeplesion.log",
        benchmark:
            "results/benchmarks/prepare/deeplesion.tsv"
        conda:
            ENV
        threads: 1
        resources:
            mem_mb=config["resources"]["cpu_mem_mb"],
            runtime=config["resources"]["train_runtime"],
        params:
            out_dir=PREPARED_DIRS["deeplesion"],
            opts=prepare_options(config, "deeplesion"),
        shell:
            "python {input.script:q} --dl-info {input.dl_info:q} --images {input.images:q}"
            " --out {params.out_dir:q} {params.opts} 2> {log:q}"


if "lung1" in PREPARED_DIRS:

    rule prepare_lung1:
        input:
            script=script("prepare_lung1"),
            dicom=config["prepare"]["lung1"]["root"],
            clinical=config["prepare"]["lung1"]["clinical"],
        output:
            tables=prepared_tables_of("lung1", extra=["lung1"]),
            summary=prepared_output("lung1", "summary.json"),
            images=directory(prepared_output("lung1", "images")),
        log:
            "logs/prepare/lung1.log",
        benchmark:
            "results/benchmarks/prepare/lung1.tsv"
        conda:
            ENV
        threads: 1
        resources:
            mem_mb=config["resources"]["cpu_mem_mb"],
            runtime=config["resources"]["train_runtime"],
        params:
            out_dir=PREPARED_DIRS["lung1"],
            opts=prepare_options(config, "lung1"),
        shell:
            "python {input.script:q} --dicom {input.dicom:q} --clinical {input.clinical:q}"
            " --out {params.out_dir:q} {params.opts} 2> {log:q}"


if "luna16" in PREPARED_DIRS:

    rule prepare_luna16:
        input:
            unpack(
                lambda wc: (
                    {"lidc_db": config["prepare"]["luna16"]["lidc_db"]}
                    if config["prepare"]["luna16"].get("lidc_db")
                    else {}
                )
            ),
            script=script("prepare_luna16"),
            scans=config["prepare"]["luna16"]["root"],
        output:
            tables=prepared_tables_of("luna16", extra=["luna16"]),
            summary=prepared_output("luna16", "summary.json"),
        log:
            "logs/prepare/luna16.log",
        benchmark:
            "results/benchmarks/prepare/luna16.tsv"
        conda:
            ENV
        threads: 1
        resources:
            mem_mb=config["resources"]["cpu_mem_mb"],
            runtime=config["resources"]["train_runtime"],
        params:
            out_dir=PREPARED_DIRS["luna16"],
            lidc_db=lambda wc, input: (
                f"--lidc-db {shlex.quote(input.lidc_db)}"
                if "lidc_db" in input.keys()
                else ""
            ),
            opts=prepare_options(config, "luna16"),
        shell:
            "python {input.script:q} --scans {input.scans:q} --out {params.out_dir:q}"
            " {params.lidc_db} {params.opts} 2> {log:q}"
