rule mask:
    input:
        data=paths.DATA,
        # budget_from: the other method's mask whose per-layer counts this one uses (MiCA's effective protocol)
        budget=budget_mask,
    output:
        mask=paths.MASK,
        stats=paths.MASK_STATS,
    log:
        f"{paths.LOGS}/mask/{paths.MASK_KEY}.log",
    params:
        dataset=dataset_type,
        arch=arch_args,
        method=method_args,
        budget=lambda wildcards, input: quoted(["--opt", f"budget_mask={input.budget}"]) if input.budget else "",
        spec=mask_spec,
    threads: RES["mask_threads"]
    conda:
        "../envs/paibench.yaml"
    shell:
        "OMP_NUM_THREADS={threads} paibench mask --dataset {params.dataset} {params.arch} {params.method} {params.budget}"
        " --compression {wildcards.compression} --seed {wildcards.seed} --data {input.data}"
        " --spec {params.spec:q} --force --out {output.mask} > {log} 2>&1"
