rule train:
    input:
        data="resources/data/{dataset}.pt",
        mask="results/masks/{dataset}/{arch}/{method}/c{compression}/s{seed}.safetensors",
    output:
        metrics="results/runs/{experiment}/{dataset}/{arch}/{method}/c{compression}/s{seed}/metrics.json",
        epochs="results/runs/{experiment}/{dataset}/{arch}/{method}/c{compression}/s{seed}/epochs.csv",
        model="results/runs/{experiment}/{dataset}/{arch}/{method}/c{compression}/s{seed}/model.safetensors",
    log:
        "logs/train/{experiment}/{dataset}/{arch}/{method}/c{compression}/s{seed}.log",
    params:
        dataset=dataset_type,
        arch=arch_args,
        train=train_config,
        # Outside the job's outputs, so Snakemake does not delete it when a killed job is cleaned up.
        checkpoint="results/checkpoints/{experiment}/{dataset}/{arch}/{method}/c{compression}/s{seed}.pt",
        run_key="{experiment}/{dataset}/{arch}/{method}/c{compression}/s{seed}",
    threads: RES["train_threads"]
    resources:
        mem_mb=RES["train_mem_mb"],
        runtime=RES["train_runtime"],
        gpu=train_gpus,
    conda:
        "../../envs/environment.yaml"
    shell:
        "OMP_NUM_THREADS={threads} paibench train --data {input.data} --mask {input.mask}"
        " --dataset {params.dataset} {params.arch} --seed {wildcards.seed} --threads {threads}"
        " --train-config {params.train:q} --checkpoint {params.checkpoint} --run-key {params.run_key}"
        " --out-dir $(dirname {output.metrics}) > {log} 2>&1"


rule evaluate:
    input:
        data="resources/data/{dataset}.pt",
        mask="results/masks/{dataset}/{arch}/{method}/c{compression}/s{seed}.safetensors",
        model="results/runs/{experiment}/{dataset}/{arch}/{method}/c{compression}/s{seed}/model.safetensors",
        metrics="results/runs/{experiment}/{dataset}/{arch}/{method}/c{compression}/s{seed}/metrics.json",
    output:
        "results/runs/{experiment}/{dataset}/{arch}/{method}/c{compression}/s{seed}/eval.json",
    log:
        "logs/evaluate/{experiment}/{dataset}/{arch}/{method}/c{compression}/s{seed}.log",
    conda:
        "../../envs/environment.yaml"
    shell:
        "OMP_NUM_THREADS=1 paibench evaluate --data {input.data} --mask {input.mask} --model {input.model}"
        " --metrics {input.metrics} --out {output} > {log} 2>&1"
