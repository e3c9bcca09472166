rule mask:
    input:
        data="resources/data/{dataset}.pt",
        # budget_from: the other method's mask whose per-layer counts this one uses (MiCA's effective protocol)
        budget=budget_mask,
        stale=stale_mask_marker,  # present only when the cached mask no longer matches the config
    output:
        mask="results/masks/{dataset}/{arch}/{method}/c{compression}/s{seed}.safetensors",
        stats="results/masks/{dataset}/{arch}/{method}/c{compression}/s{seed}.json",
    log:
        "logs/mask/{dataset}/{arch}/{method}/c{compression}/s{seed}.log",
    params:
        dataset=dataset_type,
        arch=arch_args,
        method=method_args,
        budget=lambda wildcards, input: quoted(["--opt", f"budget_mask={input.budget}"]) if input.budget else "",
        spec=mask_spec,
    threads: RES["mask_threads"]
    conda:
        "../../envs/environment.yaml"
    shell:
        "OMP_NUM_THREADS={threads} paibench mask --dataset {params.dataset} {params.arch} {params.method} {params.budget}"
        " --compression {wildcards.compression} --seed {wildcards.seed} --data {input.data}"
        " --spec {params.spec:q} --force --out {output.mask} > {log} 2>&1"


# A marker that a cached result no longer matches the config: the job that consumes it is rerun. The
# markers stay in logs/stale/ as a record of what was recomputed and why.
rule stale_mask:
    output:
        "logs/stale/masks/{dataset}/{arch}/{method}/c{compression}/s{seed}.{token}.txt",
    log:
        "logs/stale_mask/{dataset}/{arch}/{method}/c{compression}/s{seed}.{token}.log",
    params:
        why=lambda wildcards: STALE_MASKS.get(
            mask_path(wildcards.dataset, wildcards.arch, wildcards.method, wildcards.compression, int(wildcards.seed)), ""),
    localrule: True
    conda:
        "../../envs/environment.yaml"
    shell:
        "printf 'recomputed: %s\\n' {params.why:q} > {output} 2> {log}"


rule stale_run:
    output:
        "logs/stale/runs/{experiment}/{dataset}/{arch}/{method}/c{compression}/s{seed}.{token}.txt",
    log:
        "logs/stale_run/{experiment}/{dataset}/{arch}/{method}/c{compression}/s{seed}.{token}.log",
    params:
        why=lambda wildcards: STALE_RUNS.get("/".join([wildcards.experiment, wildcards.dataset, wildcards.arch,
                                                       wildcards.method, f"c{wildcards.compression}", f"s{wildcards.seed}"]), ""),
    localrule: True
    conda:
        "../../envs/environment.yaml"
    shell:
        "printf 'recomputed: %s\\n' {params.why:q} > {output} 2> {log}"
