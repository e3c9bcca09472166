rule prepare_data:
    input:
        stale=stale_data_marker,  # present only when the prepared file's recorded options differ from the config
    output:
        "resources/data/{dataset}.pt",
    log:
        "logs/prepare_data/{dataset}.log",
    params:
        args=dataset_args,
    localrule: True
    conda:
        "../../envs/environment.yaml"
    shell:
        "paibench prepare-data {params.args} --raw-dir resources/raw --out {output} > {log} 2>&1"


rule stale_data:
    output:
        "logs/stale/data/{dataset}.{token}.txt",
    log:
        "logs/stale_data/{dataset}.{token}.log",
    params:
        why=lambda wildcards: STALE_DATA.get(wildcards.dataset, ""),
    localrule: True
    conda:
        "../../envs/environment.yaml"
    shell:
        "printf 'prepared again: %s\\n' {params.why:q} > {output} 2> {log}"
