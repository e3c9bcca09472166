rule prepare_data:
    output:
        paths.DATA,
    log:
        f"{paths.LOGS}/prepare_data/{{dataset}}.log",
    params:
        args=dataset_args,
        raw_dir=paths.RAW_DIR,
    localrule: True
    conda:
        "../envs/paibench.yaml"
    shell:
        "paibench prepare-data {params.args} --raw-dir {params.raw_dir} --out {output} > {log} 2>&1"
