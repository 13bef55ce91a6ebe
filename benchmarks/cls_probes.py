"""Follow-up runs for the cls_methods methods that fell below CE-only: is it a bug, or the setting?

Each probe is one method with a few overrides, trained with exactly the cls_methods schedule,
data subset and teacher (3 seeds), and compared with that benchmark's CE-only / KD / method rows
(read from the latest benchmarks/results/cls_methods.jsonl line). Finished runs in
runs/bench-cls-methods are reused, so after cls_methods this only trains the probes.

    python benchmarks/cls_probes.py [--probes pld_T1 crd_kd1 ...]
"""
from __future__ import annotations

import argparse

import cls_methods
import common

# (dataset, method, tag, overrides, what it tests)
PROBES = [
    ("fashion_mnist", "pld", "T1", ["method.temperature=1"], "PLD's label-term weight p_t(y|T): T=1 instead of 4"),
    ("fashion_mnist", "fitnet", "w10", ["method.hint_weight=10"], "FitNet hint weight 10 instead of the paper's 100"),
    ("fashion_mnist", "at", "w100", ["method.at_weight=100"], "AT weight 100 instead of the paper's 1000"),
    ("cifar10", "ls_kd", "ce1kd1", ["method.ce_weight=1.0", "method.kd_weight=1.0"], "LS-KD CE/KD weights 1/1 instead of 0.1/9"),
    ("cifar10", "dist", "T1", ["method.temperature=1.0"], "DIST at T=1 instead of 4"),
    ("fashion_mnist", "crd", "w02", ["method.crd_weight=0.2"], "CRD contrastive weight 0.2 instead of 0.8"),
    ("fashion_mnist", "crd", "kd1", ["method.kd_weight=1.0"], "CRD + KD (the paper's CRD+KD row)"),
    ("cifar10", "crd", "w02", ["method.crd_weight=0.2"], "CRD contrastive weight 0.2 instead of 0.8"),
    ("cifar10", "crd", "kd1", ["method.kd_weight=1.0"], "CRD + KD (the paper's CRD+KD row)"),
    ("cifar10", "bd_kd", "T1", ["method.temperature=1.0"], "BD-KD at T=1 instead of 4"),
    ("cifar10", "dml", "r20", ["method.peers=[{name: resnet20}]"],
     "deep mutual learning with BD-KD's online peer (ResNet-20): online KD without BD-KD's weighting"),
]


def probe_overrides(dataset: str, method: str, tag: str, extra: list[str], teacher: str, seed: int) -> list[str]:
    # DML, like CE-only, needs no pre-trained teacher: start from the CE overrides
    base = "ce" if method == "dml" else method
    out = cls_methods.method_overrides(dataset, base, teacher, seed)
    return [o.replace(f"-{base}-s{seed}", f"-{method}_{tag}-s{seed}") if o.startswith("name=") else o for o in out] + extra


def baseline(benchmarked: dict | None, dataset: str, method: str) -> tuple[float, float] | None:
    """mean, std accuracy % of `method` in the cls_methods result line `benchmarked`, if it ran there."""
    runs = benchmarked["figures"].get(dataset, {}).get("methods", {}).get(method) if benchmarked else None
    return common.mean_std([100 * r["accuracy"] for r in runs]) if runs else None


def fmt(stat: tuple[float, float] | None) -> str:
    return f"{stat[0]:.2f} ± {stat[1]:.2f}" if stat else "-"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--probes", nargs="+", default=None, help="method_tag names (default: all)")
    args = parser.parse_args()
    cls_methods.scale_cifar(10000, 2500, 4)  # the scale of the recorded cls_methods line
    figures, rows, teachers = {}, [], {}
    benchmarked = common.latest_result("cls_methods")
    for dataset, method, tag, extra, what in PROBES:
        if args.probes and f"{method}_{tag}" not in args.probes:
            continue
        if dataset not in teachers:
            teachers[dataset] = cls_methods.teacher_run(dataset)
        teacher = teachers[dataset]
        accs = []
        for seed in (0, 1, 2):
            summary = cls_methods.run(f"recipes/cifar10/{method.replace('_', '-')}.yaml",
                                      probe_overrides(dataset, method, tag, extra, teacher, seed))
            accs.append(100 * summary["stages"][f"student-{method}"]["accuracy"])
        stat = common.mean_std(accs)
        figures[f"{dataset}/{method}_{tag}"] = {"accuracies": accs, "overrides": extra, "what": what}
        rows.append([dataset, f"{method}_{tag}", what, fmt(stat)]
                    + [fmt(baseline(benchmarked, dataset, m)) for m in (method, "ce", "kd")])
    print(common.table(["dataset", "probe", "what", "acc %", "method as benchmarked", "CE-only", "KD"], rows))
    common.record("cls_probes", figures, "python benchmarks/cls_probes.py"
                  + (f" --probes {' '.join(args.probes)}" if args.probes else ""))


if __name__ == "__main__":
    main()
