"""Regenerate the README's results section from benchmarks/results/*.jsonl (latest line of each).

    python benchmarks/readme_table.py
"""
from __future__ import annotations

import re
from typing import Any, Callable

import common

START, END = "<!-- results:start -->", "<!-- results:end -->"
FORMATTERS: dict[str, Callable[[dict[str, Any]], list[str]]] = {}


SECTIONS: dict[str, tuple[str, ...]] = {}  # benchmark -> figures keys each shown from its own latest line


def formatter(name: str, sections: tuple[str, ...] = ()) -> Callable:
    """Register `fn(line) -> lines`; with `sections`, fn is called once per section on the newest line holding
    it (its figures cut to that section), so a run of one section does not hide the others' results."""
    def add(fn: Callable) -> Callable:
        FORMATTERS[name] = fn
        if sections:
            SECTIONS[name] = sections
        return fn
    return add


def pm(values: list[float], scale: float = 100.0) -> str:
    mean, std = common.mean_std([scale * v for v in values])
    return f"{mean:.2f} ± {std:.2f}"


@formatter("cls_quickstart")
def cls_quickstart(line: dict[str, Any]) -> list[str]:
    out = ["| dataset (recipe) | teacher acc % | student-CE acc % | student-KD acc % | seeds |", "|---|---|---|---|---|"]
    for dataset, f in line["figures"].items():
        acc = f["accuracy"]
        out.append(f"| {dataset} (`{f['recipe']}`) | {pm(acc['teacher'])} | {pm(acc['student-ce'])} | "
                   f"{pm(acc['student-kd'])} | {len(f['seeds'])} |")
    return out


@formatter("cls_step_speed")
def cls_step_speed(line: dict[str, Any]) -> list[str]:
    f = line["figures"]
    return ["| KD training step, ResNet-56 -> ResNet-20, batch 128, 32x32 | images/s |", "|---|---|",
            f"| plain PyTorch loop | {f['plain_images_per_s']:.1f} |",
            f"| distill Trainer | {f['distill_images_per_s']:.1f} |",
            f"| **distill / plain** (geometric mean of {f['rounds']} interleaved rounds) | **{f['ratio']:.3f}** |"]


@formatter("cls_methods")
def cls_methods(line: dict[str, Any]) -> list[str]:
    datasets = list(line["figures"])
    head = "| method | " + " | ".join(f"{d} acc % (3 seeds) | vs KD" for d in datasets) + " | s/run |"
    out = [head, "|---|" + "---|---|" * len(datasets) + "---|"]
    out.append("| *teacher* | " + " | ".join(f"{100 * line['figures'][d]['teacher_accuracy']:.2f} | " for d in datasets) + " | - |")
    for method, cells, secs in common.method_summary(line["figures"]):
        out.append(f"| {method} | " + " | ".join(f"{mean:.2f} ± {std:.2f} | {vs_kd:+.2f}" for mean, std, vs_kd in cells)
                   + f" | {secs:.0f} |")
    return out


@formatter("cls_probes")
def cls_probes(line: dict[str, Any]) -> list[str]:
    out = ["| dataset / probe | what it tests | acc % (3 seeds) |", "|---|---|---|"]
    for name, probe in line["figures"].items():
        mean, std = common.mean_std(probe["accuracies"])
        what = probe["what"].replace("|", "\\|")  # a pipe would split the markdown cell
        out.append(f"| {name} | {what} (`{' '.join(probe['overrides'])}`) | {mean:.2f} ± {std:.2f} |")
    return out


@formatter("llm_loss_memory")
def llm_loss_memory(line: dict[str, Any]) -> list[str]:
    rows = {}
    for r in line["figures"]["results"]:
        rows.setdefault((r["vocab"], r["tokens"]), {})[r["mode"]] = r
    out = ["| V | N | dense peak GiB | chunked peak GiB | memory ratio | dense s | chunked s | time ratio |", "|---|---|---|---|---|---|---|---|"]
    for (v, n), pair in sorted(rows.items()):
        d, c = pair.get("dense", {}), pair.get("chunked", {})
        gib = lambda r: f"{r['peak_bytes'] / 2 ** 30:.2f}" if r.get("peak_bytes") else "not run (RAM)"  # noqa: E731
        ratio = lambda a, b: f"{a / b:.3f}" if a and b else "-"  # noqa: E731
        secs = lambda r: f"{r['seconds']:.1f}" if r.get("seconds") else "-"  # noqa: E731
        out.append(f"| {v:,} | {n:,} | {gib(d)} | {gib(c)} | {ratio(c.get('peak_bytes'), d.get('peak_bytes'))} | {secs(d)} | "
                   f"{secs(c)} | {ratio(c.get('seconds'), d.get('seconds'))} |")
    return out


@formatter("llm_distill")
def llm_distill(line: dict[str, Any]) -> list[str]:
    f = line["figures"]
    out = [f"| student trained with ({f['steps']} steps x {f['tokens_per_step']} tokens) | held-out ppl | KL(teacher‖student) | train tok/s |",
           "|---|---|---|---|"]
    if "teacher" in f["methods"]:
        out.append(f"| *teacher SmolLM2-135M* | {f['methods']['teacher']['perplexity']:.2f} | 0 | - |")
    for name, m in f["methods"].items():
        if name != "teacher":
            out.append(f"| {name} | {m['perplexity']:.2f} | {m.get('kl_to_teacher', float('nan')):.4f} | {m['train_tokens_per_s']:.0f} |")
    return out


@formatter("store")
def store(line: dict[str, Any]) -> list[str]:
    f = line["figures"]
    out = ["| student trained from | bytes/token | caching positions/s | train tok/s | vs live | held-out ppl | KL(teacher‖student) |",
           "|---|---|---|---|---|---|---|"]
    live = f["students"]["live"]["train_tokens_per_s"]
    for name, s in f["students"].items():
        st = f["stores"].get(name[1:]) if name.startswith("k") else None
        out.append(f"| {'store k=' + name[1:] if st else 'live dense teacher'} | {st['bytes_per_token']:.1f} |"
                   if st else "| live dense teacher | - |")
        out[-1] += (f" {st['cache_positions_per_s']:.0f} |" if st else " - |") + \
            f" {s['train_tokens_per_s']:.0f} | {s['train_tokens_per_s'] / live:.2f}x | {s['perplexity']:.2f} | {s['kl_to_teacher']:.4f} |"
    if "timing" in f:
        t = f["timing"]
        out += ["", f"Alternated short runs ({t['steps']} steps each), store k={t['k']} vs live teacher: speed ratios "
                    f"{', '.join(f'{r:.2f}x' for r in t['ratios'])}, geometric mean {t['geomean_ratio']:.2f}x."]
    return out


@formatter("on_policy")
def on_policy(line: dict[str, Any]) -> list[str]:
    f = line["figures"]
    out = ["| student | golden end (min) | proxy end | held-out ppl | hacking flagged | loop tok/s | peak RSS GiB |",
           "|---|---|---|---|---|---|---|"]
    for name, r in f["runs"].items():
        v = r["verdict"]
        out.append(f"| {name} | {r['golden'][-1]:.3f} ({min(r['golden']):.3f}) | {r['proxy'][-1]:.3f} | {r['perplexity']:.1f} | "
                   f"{'yes, step ' + str(v['step']) if v.get('flag') else 'no'} | {r['loop_tokens_per_s']:.0f} | "
                   f"{r['peak_rss_bytes'] / 2 ** 30:.2f} |")
    return out


@formatter("cross_tokenizer_trl")
def cross_tokenizer_trl(line: dict[str, Any]) -> list[str]:
    f = line["figures"]
    t = f["train"]
    out = [f"GOLD loss on one batch (Gemma-3-270M -> SmolLM2 student, TRL's own data preparation): TRL {f['loss']['trl']:.6f}, "
           f"distill {f['loss']['ours']:.6f}, relative difference {f['loss']['relative_difference']:.1e}.", "",
           "| GOLD training, batch 4 x ~200 tokens | s/step | vs TRL speed | peak RSS GiB | vs TRL memory |", "|---|---|---|---|---|"]
    labels = {"trl": "TRL GOLDTrainer (positional ULD + hybrid)", "ours_positional": "distill gold, positional + hybrid",
              "ours_spans": "distill gold, byte-aligned spans + hybrid"}
    for name, r in t.items():  # each row against TRL with its teacher in the same dtype (older lines: float32)
        dtype = r.get("teacher_dtype", "float32")
        base = t["trl" if dtype == "float32" else f"trl_{dtype}"]
        label = f"{labels[name.removesuffix('_' + dtype)]}, teacher {dtype}"
        out.append(f"| {label} | {r['seconds_per_step']:.1f} | {base['seconds_per_step'] / r['seconds_per_step']:.2f}x | "
                   f"{r['peak_rss_bytes'] / 2 ** 30:.2f} | {r['peak_rss_bytes'] / base['peak_rss_bytes']:.2f}x |")
    return out


@formatter("cross_tokenizer", sections=("quality", "pretrained"))
def cross_tokenizer(line: dict[str, Any]) -> list[str]:
    out = ["| student | trained with | steps | teacher read from | held-out bits/byte | seeds | vs CE-only | "
           "better than CE (paired seeds) | train tok/s | peak RSS GiB |", "|---|---|---|---|---|---|---|---|---|---|"]
    labels = {"quality": "16M SmolLM2-architecture (random init)", "pretrained": "SmolLM2-135M-Instruct (pretrained)"}
    names = {"ce": "CE only", "kd_smollm2": "forward KL from SmolLM2-135M-Instruct (same tokenizer, reference)",
             "untrained": "(the checkpoint, untrained)"}
    for section, methods in line["figures"].items():
        label = labels.get(section, section)
        ce_runs = {r["seed"]: r["bits_per_byte"] for r in methods.get("ce", [])}
        ce = common.mean_std(list(ce_runs.values()))[0] if ce_runs else None
        teacher = next(iter(methods.values()))[0]["teacher_bits_per_byte"]
        out.append(f"| {label} | *teacher Gemma-3-270M* | - | - | {teacher:.4f} | - | - | - | - | - |")
        for method, runs in methods.items():
            mean, std = common.mean_std([r["bits_per_byte"] for r in runs])
            paired = [r for r in runs if r["seed"] in ce_runs]
            wins = sum(r["bits_per_byte"] < ce_runs[r["seed"]] for r in paired)
            vs = f"{mean - ce:+.4f}" if ce is not None and method not in ("ce", "untrained") else "-"
            better = f"{wins} / {len(paired)}" if method not in ("ce", "untrained") and paired else "-"
            speed = common.mean_std([r["train_tokens_per_s"] for r in runs])[0]
            peak = max(r["peak_rss_bytes"] for r in runs) / 2 ** 30
            source = {"store": "top-128 store", "live": "live", "none": "-"}.get(runs[0].get("teacher_from", "live"))
            out.append(f"| {label} | {names.get(method, method)} | {runs[0].get('steps', '-')} | {source} | "
                       f"{mean:.4f} ± {std:.4f} | {len(runs)} | {vs} | {better} | "
                       f"{format(speed, '.0f') if speed else '-'} | {format(peak, '.2f') if peak else '-'} |")
    return out


@formatter("cross_tokenizer_memory")
def cross_tokenizer_memory(line: dict[str, Any]) -> list[str]:
    out = ["| method | N tokens | chunked loss peak GiB | dense loss peak GiB | ratio |", "|---|---|---|---|---|"]
    results = line["figures"]["results"]
    for c, d in zip(results[0::2], results[1::2]):  # the benchmark appends (chunked, dense) pairs
        dense = d.get("peak_bytes", d.get("estimated_peak_bytes"))
        mark = "" if "peak_bytes" in d else " (estimated, not run)"
        out.append(f"| {c['method']} | {c['tokens']:,} | {c['peak_bytes'] / 2 ** 30:.2f} | "
                   f"{dense / 2 ** 30:.2f}{mark} | {c['peak_bytes'] / dense:.3f} |")
    return out


@formatter("student_init")
def student_init(line: dict[str, Any]) -> list[str]:
    out = []
    init = common.latest_result("student_init", "init")
    if init is not None:
        t = init["figures"]["init"]["teacher"]
        out += [f"At init (`{init['command']}`):", "", "| student | params | non-emb share | ppl at init | latency ms |",
                "|---|---|---|---|---|"]
        out += [f"| {n} | {r['params'] / 1e6:.1f}M | {r['non_embedding'] / t['non_embedding']:.2f} | {r['perplexity']:,.2f} | "
                f"{r['latency_ms']:.0f} |" for n, r in init["figures"]["init"].items()]
    # each arm may come from its own run of the benchmark (one arm per run fits a session): newest line per arm
    arms: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for result in common.all_results("student_init"):
        for arm, row in result["figures"].get("train", {}).items():
            arms[arm] = (row, result)
    if arms:
        out += ["", "Distilled for the same number of steps (forward KL + 0.5 CE, live teacher):", "",
                "| student | params | ppl at init | ppl after | / teacher | steps | train tok/s | train s | commit |",
                "|---|---|---|---|---|---|---|---|---|"]
        for n, (r, result) in arms.items():
            init_ppl = f"{r['init_perplexity']:,.1f}" if r.get("init_perplexity") else "-"
            out.append(f"| {n} | {r['params'] / 1e6:.1f}M | {init_ppl} | {r['perplexity']:,.2f} | "
                       f"{r['perplexity'] / r['teacher_perplexity']:.2f}x | {r['steps']} | {r['train_tokens_per_s']:.0f} | "
                       f"{r['train_seconds']:.0f} | {result['commit']} |")
        out += ["", "Commands: " + "; ".join(sorted({f"`{result['command']}`" for _, result in arms.values()}))]
    return out


@formatter("logit_reuse")
def logit_reuse(line: dict[str, Any]) -> list[str]:
    f = line["figures"]
    return ["| student stage | teacher logits | train s | test acc % |", "|---|---|---|---|",
            f"| CE only | - | {f['ce_seconds']:.1f} | {100 * f['ce_accuracy']:.2f} |",
            f"| KD | live, every batch (`teacher.logits: live`) | {f['live_seconds']:.1f} | {100 * f['live_accuracy']:.2f} |",
            f"| KD | computed once (`auto`, the default) | {f['auto_seconds']:.1f} | {100 * f['auto_accuracy']:.2f} |",
            f"| **live / auto** | | **{f['live_over_auto']:.2f}x** | |"]


@formatter("teacher_dtype")
def teacher_dtype(line: dict[str, Any]) -> list[str]:
    f = line["figures"]
    return ["| teacher dtype | forward tok/s | held-out ppl | KL to fp32 mean / p99 / max | top-1 agreement |",
            "|---|---|---|---|---|",
            f"| float32 | {f['fp32_tokens_per_s']:.0f} | {f['perplexity_fp32']:.3f} | 0 | 1 |",
            f"| bfloat16 | {f['bf16_tokens_per_s']:.0f} | {f['perplexity_bf16']:.3f} | {f['kl_mean']:.2e} / "
            f"{f['kl_p99']:.2e} / {f['kl_max']:.2e} | {f['top1_agreement']:.4f} |",
            f"| native bfloat16 on this CPU: {f['native_bfloat16']}; `auto` picks {f['auto_picks']} | | | {f['tokens']} tokens | |"]


@formatter("cls_student_init")
def cls_student_init(line: dict[str, Any]) -> list[str]:
    f = line["figures"]
    out = [f"| {f['student']} from {f['teacher']} ({100 * f['teacher_accuracy']:.2f} %) | acc at init % | acc after KD % | seeds |",
           "|---|---|---|---|"]
    for name, runs in f["runs"].items():
        init = [r["init_accuracy"] for r in runs if r["init_accuracy"] is not None]
        out.append(f"| {name} | {pm(init) if init else '-'} | {pm([r['accuracy'] for r in runs])} | {len(runs)} |")
    return out


@formatter("sweep")
def sweep(line: dict[str, Any]) -> list[str]:
    f, s = line["figures"], line["figures"]["sweep"]
    defaults = {k: v["default"] for k, v in s["space"].items()}
    out = [f"{s['trials']} trials ({', '.join(f'{v} {k}' for k, v in s['states'].items())}) in {s['seconds'] / 60:.1f} min; "
           f"best trial {s['best']['number']}: validation accuracy {100 * s['best']['value']:.2f} % (the recipe's values: "
           f"{100 * (s['defaults_validation_accuracy'] or 0):.2f} %). Then retrained, full test split:", "",
           "| values | " + " | ".join(k.split(".")[-1] for k in defaults) + " | test acc % | seeds |",
           "|---|" + "---|" * len(defaults) + "---|---|"]
    for arm, values in (("recipe defaults", defaults), (f"best of {s['trials']}", s["best"]["values"])):
        runs = f["defaults" if arm.startswith("recipe") else "best"]
        out.append(f"| {arm} | " + " | ".join(f"{float(values[k]):.4g}" for k in defaults) +
                   f" | {pm([r['accuracy'] for r in runs])} | {len(runs)} |")
    return out


@formatter("fsdp")
def fsdp(line: dict[str, Any]) -> list[str]:
    out = ["| student | mode | step s rank 0 / 1 | peak RSS MiB rank 0 / 1 | params + grads + AdamW MiB per rank |",
           "|---|---|---|---|---|"]
    for run in common.all_results("fsdp"):
        f = run["figures"]
        label = f"{f['params'] / 1e6:.1f}M, {f['layers']} layers" if "params" in f else "16M (first run)"
        for mode in ("ddp", "fsdp"):
            r0, r1 = f[f"{mode}_rank0"], f[f"{mode}_rank1"]
            out.append(f"| {label} | {mode.upper()} | {r0['step_s']:.2f} / {r1['step_s']:.2f} | "
                       f"{r0['peak_rss_mib']:.0f} / {r1['peak_rss_mib']:.0f} | {r0['state_mib']:.1f} |")
    return out


@formatter("hf_trainer")
def hf_trainer(line: dict[str, Any]) -> list[str]:
    out = ["| tokens per step | TRL GKDTrainer peak MiB | DistillationTrainer peak MiB | ratio | s/step TRL / distill | first loss TRL / distill |",
           "|---|---|---|---|---|---|"]
    for run in common.all_results("hf_trainer"):
        f = run["figures"]
        side = {r["side"]: r for r in f["results"]}
        t, d = side["trl"], side["distill"]
        out.append(f"| {f['batch']} x {f['length']} | {t['peak_bytes'] / 2**20:,.0f} | {d['peak_bytes'] / 2**20:,.0f} | "
                   f"{d['peak_bytes'] / t['peak_bytes']:.2f} | {t['seconds_per_step']:.1f} / {d['seconds_per_step']:.1f} | "
                   f"{t['first_loss']:.6f} / {d['first_loss']:.6f} |")
    return out


@formatter("onnx_export")
def onnx_export(line: dict[str, Any]) -> list[str]:
    out = ["| model | threads | max abs diff | PyTorch / ONNX ms, batch 1 | PyTorch / ONNX ms, batch 32 |", "|---|---|---|---|---|"]
    for run in common.all_results("onnx_export"):
        f = run["figures"]
        for m in f["models"]:
            lat = m["latency_ms"]
            out.append(f"| {m['model']} | {f['threads']} | {m['max_abs_diff']:.1e} | {lat['torch']['1']:.3g} / "
                       f"{lat['onnx']['1']:.3g} | {lat['torch']['32']:.3g} / {lat['onnx']['32']:.3g} |")
    return out


@formatter("hf_source")
def hf_source(line: dict[str, Any]) -> list[str]:
    f = line["figures"]
    return ["| Fashion-MNIST from | seconds |", "|---|---|",
            f"| idx files | {f['idx_s']:.2f} |", f"| hf save_to_disk, first run (PNG decode) | {f['hf_disk_first_s']:.2f} |",
            f"| hf save_to_disk, decoded arrays cached | {f['hf_disk_cached_s']:.2f} |",
            f"| hf parquet, first {f['cap']} rows per split | {f['hf_parquet_capped_s']:.2f} |",
            f"| hf parquet streaming, first {f['cap']} rows per split | {f['hf_parquet_streaming_s']:.2f} |",
            f"| tensors equal to the idx loader's | {f['equal_to_idx']} |"]


@formatter("embedding")
def embedding(line: dict[str, Any]) -> list[str]:
    rows, goals = line["figures"]["rows"], line["figures"]["targets"]
    suites = list(rows["teacher"]["ndcg"])
    speed0 = rows["teacher"]["sentences_per_s"]
    out = ["| model | dim | params | sent/s (x teacher) | transfer acc % | " + " | ".join(f"nDCG@10 {s}" for s in suites)
           + " | " + " | ".join(f"q -> teacher index {s}" for s in suites) + " |", "|---|" + "---|" * (4 + 2 * len(suites))]
    for name, r in rows.items():
        params = f"{r['params'] / 1e6:.1f}M" if r.get("params") else "-"
        asym = [f"{100 * r['asym_ndcg'][s]:.1f}" if s in r["asym_ndcg"] else "-" for s in suites]
        out.append(f"| {name} | {r['dim']} | {params} | {r['sentences_per_s']:.1f} ({r['sentences_per_s'] / speed0:.1f}x) | "
                   f"{100 * r['transfer']['mean']:.1f} | " + " | ".join(f"{100 * r['ndcg'][s]:.1f}" for s in suites)
                   + " | " + " | ".join(asym) + " |")
    kept = ", ".join(f"{s} {100 * v:.1f} %" for s, v in goals["ndcg_kept"].items())
    asym = ", ".join(f"{s} {100 * v:.1f} %" for s, v in goals["asym_vs_teacher"].items())
    out += ["", f"minilm-leaf keeps {100 * goals['transfer_kept']:.1f} % of the teacher's transfer accuracy (target 95), "
            f"nDCG@10 kept: {kept} (target 90), student-query / teacher-index nDCG@10 vs teacher/teacher: {asym} "
            f"(target 95), speed {goals['speedup']:.1f}x the teacher (target 4)."]
    if "static_minus_model2vec" in goals:
        diff = goals["static_minus_model2vec"]
        points = ", ".join(f"{k} {100 * v:+.1f}" for k, v in diff.items())
        ratio = rows["model2vec"].get("speed_vs_static_leaf")
        speed = f"; static-leaf runs at {1 / ratio:.2f}x model2vec's sentences/s" if ratio else ""
        out += ["", f"static-leaf minus model2vec, points: {points}{speed}."]
    return out


@formatter("embedding_batching")
def embedding_batching(line: dict[str, Any]) -> list[str]:
    f = line["figures"]
    out = ["| MiniLM batches of the LEAF recipe | median step s | tokens per batch, padded | real tokens |",
           "|---|---|---|---|"]
    out += [f"| {n} | {f[n]['step_seconds']:.3f} | {f[n]['padded_tokens']:.0f} | {f[n]['real_tokens']:.0f} |"
            for n in ("shuffled", "grouped")]
    return out + ["", f"`data.group_by_length` steps are {f['speedup']:.2f}x faster ({f['steps']} steps each, "
                      "taking turns)."]


@formatter("embedding_static_init")
def embedding_static_init(line: dict[str, Any]) -> list[str]:
    rows = line["figures"]["rows"]
    suites = list(rows["outputs"]["ndcg"])
    out = ["| static table (MiniLM teacher) | transfer acc % | " + " | ".join(f"nDCG@10 {s}" for s in suites) + " | "
           + " | ".join(f"q -> teacher index {s}" for s in suites) + " | held-out cos |", "|---|" + "---|" * (2 + 2 * len(suites))]
    for name, r in rows.items():
        out.append(f"| {name} | {100 * r['transfer']:.1f} | " + " | ".join(f"{100 * r['ndcg'][s]:.1f}" for s in suites)
                   + " | " + " | ".join(f"{100 * r['asym_ndcg'][s]:.1f}" for s in suites) + f" | {r['held_out_cosine']:.3f} |")
    return out


def section() -> str:
    parts = []
    for name, fn in FORMATTERS.items():
        for line in lines_of(name):
            parts.append(f"**{name}** — `{line['command']}` (commit {line['commit']}, torch {line['torch']}, "
                         f"{line['machine']['cores']} cores, {line['date'][:10]})\n")
            parts.append("\n".join(fn(line)) + "\n")
    return "\n".join(parts)


def lines_of(name: str) -> list[dict]:
    """The result lines shown for a benchmark: its newest, or per section the newest holding that section."""
    if name not in SECTIONS:
        line = common.latest_result(name)
        return [line] if line is not None else []
    out = []
    for key in SECTIONS[name]:
        line = common.latest_result(name, key)
        if line is not None:
            out.append({**line, "figures": {key: line["figures"][key]}})
    return out


def main() -> None:
    readme = common.ROOT / "README.md"
    text = readme.read_text()
    new = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: f"{START}\n{section()}{END}", text, flags=re.S)
    readme.write_text(new)
    print(section())


if __name__ == "__main__":
    main()
