rule mask:
    input:
        data="resources/data/{dataset}.pt",
    output:
        mask="results/masks/{dataset}/{arch}/{method}/c{compression}/s{seed}.safetensors",
        stats="results/masks/{dataset}/{arch}/{method}/c{compression}/s{seed}.json",
    log:
        "logs/mask/{dataset}/{arch}/{method}/c{compression}/s{seed}.log",
    params:
        dataset=dataset_type,
        arch=arch_args,
        method=method_args,
    threads: RES["mask_threads"]
    conda:
        "../../envs/environment.yaml"
    shell:
        "OMP_NUM_THREADS={threads} paibench mask --dataset {params.dataset} {params.arch} {params.method}"
        " --compression {wildcards.compression} --seed {wildcards.seed} --data {input.data}"
        " --out {output.mask} > {log} 2>&1"
