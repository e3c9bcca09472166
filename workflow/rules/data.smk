rule prepare_data:
    output:
        "resources/data/{dataset}.pt",
    log:
        "logs/prepare_data/{dataset}.log",
    params:
        args=dataset_args,
    localrule: True
    conda:
        "../envs/paibench.yaml"
    shell:
        "paibench prepare-data {params.args} --raw-dir resources/raw --out {output} > {log} 2>&1"
