"""FSDP2 (`train.distributed: fsdp`) with torchrun and 2 CPU processes (gloo): the sharded student trains
exactly like DDP and like one process with the whole batch, a run killed and resumed equals the
uninterrupted one, and its torch.distributed.checkpoint checkpoints resume at another world size.

References are independent computations: DDP and single-process runs keep whole tensors and
write safetensors checkpoints; only the FSDP runs shard and write DCP.
"""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
import yaml
from safetensors.torch import load_file

from distill.errors import ConfigError
from distill.tasks import load_recipe
from tests.helpers import ROOT, write_recipe
from tests.llm.conftest import lm_recipe
from tests.llm.fsdp_driver import run_specs

STEPS, KILL = 4, 2  # 2 epochs of 3 steps (global batch 8), cut at 4: the run crosses an epoch boundary
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def recipe(assets, folder, name, distributed, batch, grad_accum=1, **fsdp):
    """A recipe file whose run folder is folder/name/tiny-lm; `batch` examples per rank and step."""
    r = lm_recipe(assets, folder / name, data={"format": "jsonl", "paths": [assets["jsonl"]], "max_length": 32,
                                               "eval_fraction": 0.1})
    r["train"].update(epochs=2, max_steps=STEPS, batch_size=batch, distributed=distributed, checkpoint_every=1,
                      keep_checkpoints=STEPS, optimizer="sgd", lr=2.0, momentum=0.9, weight_decay=0.0,
                      grad_clip=0.01)  # the gradient norm is ~0.015: the clip bites, so the global norm must be exact
    # (SGD: AdamW would normalise a clipped gradient back; its momentum buffer is optimizer state to reshard)
    r["train"].update(fsdp=fsdp, grad_accum=grad_accum)
    return str(write_recipe(folder / f"{name}.yaml", r))


def torchrun(specs, folder, tag, **env):
    path = folder / f"{tag}.json"
    path.write_text(json.dumps(specs))
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(ROOT / "tests/llm/fsdp_driver.py"), str(path)], cwd=ROOT, env={**ENV, **env},
                          capture_output=True, text=True, timeout=300)
    return done


def copy_run(folder, src, dst):
    """The run folder of `src` moved to `dst` (its saved recipe follows), to resume one crash two ways."""
    shutil.copytree(folder / src, folder / dst)
    saved = folder / dst / "tiny-lm" / "config.yaml"
    cfg = yaml.safe_load(saved.read_text())
    cfg["output_dir"] = str(folder / dst)
    saved.write_text(yaml.safe_dump(cfg))


@pytest.fixture(scope="module")
def runs(llm_assets, tmp_path_factory):
    f = tmp_path_factory.mktemp("fsdp")
    r = {name: recipe(llm_assets, f, name, dist, batch) for name, dist, batch in [
        ("one", "ddp", 8), ("ddp", "ddp", 4), ("fsdp", "fsdp", 4), ("ddp_cut", "ddp", 4), ("fsdp_kill", "fsdp", 4),
        ("fsdp_1", "fsdp", 4), ("plain_1", "ddp", 4)]}
    r["fsdp_teacher"] = recipe(llm_assets, f, "fsdp_teacher", "fsdp", 4, grad_accum=2, shard_teacher=True,
                               reshard_after_forward=False)
    r["fsdp_bf16"] = recipe(llm_assets, f, "fsdp_bf16", "fsdp", 4, mixed_precision=True)
    # launch 1: the uninterrupted 2-rank runs, and a DDP run cut after step KILL
    first = torchrun([{"recipe": r[k]} for k in ("ddp", "fsdp", "fsdp_teacher", "fsdp_bf16")]
                     + [{"recipe": r["ddp_cut"], "crash_at": KILL + 1}], f, "first")
    assert first.returncode == 0, first.stderr[-3000:]
    # launch 2: FSDP killed for real (SIGKILL on both ranks right after checkpoint KILL)
    killed = torchrun([{"recipe": r["fsdp_kill"]}], f, "killed", DISTILL_TEST_KILL_AT_STEP=str(KILL))
    assert killed.returncode != 0
    assert json.loads((f / "fsdp_kill/tiny-lm/student-lm_kd/checkpoints/latest.json").read_text())["step"] == KILL
    copy_run(f, "fsdp_kill", "fsdp_kill_to_1")
    r["fsdp_kill_to_1"] = recipe(llm_assets, f, "fsdp_kill_to_1", "fsdp", 4)
    copy_run(f, "ddp_cut", "ddp_cut_to_1")
    r["ddp_cut_to_1"] = recipe(llm_assets, f, "ddp_cut_to_1", "ddp", 4)
    # in this process (world size 1): the single-process reference, resumes of the 2-rank crashes,
    # and 1-rank runs cut after step KILL (FSDP recipe: DCP checkpoints; plain: safetensors)
    run_specs([{"recipe": r["one"]}, {"recipe": r["fsdp_kill_to_1"], "resume": True},
               {"recipe": r["ddp_cut_to_1"], "resume": True}, {"recipe": r["fsdp_1"], "crash_at": KILL + 1},
               {"recipe": r["plain_1"], "crash_at": KILL + 1}])
    # launch 3: resume the killed FSDP run at 2 ranks, and the 1-rank crashes at 2 ranks
    third = torchrun([{"recipe": r["fsdp_kill"], "resume": True}, {"recipe": r["fsdp_1"], "resume": True},
                      {"recipe": r["plain_1"], "resume": True}], f, "third")
    assert third.returncode == 0, third.stderr[-3000:]
    return f


def stage(runs, name):
    return runs / name / "tiny-lm" / "student-lm_kd"


def losses(runs, name):
    lines = [json.loads(x) for x in (stage(runs, name) / "metrics.jsonl").read_text().splitlines()]
    train = [x for x in lines if x["kind"] == "train"]
    assert [x["step"] for x in train] == list(range(1, STEPS + 1))  # one line per step: rank 0 wrote, no duplicates
    return torch.tensor([x["loss"] for x in train], dtype=torch.float64)


def weights(runs, name):
    return load_file(str(stage(runs, name) / "model" / "model.safetensors"))


def assert_same_run(runs, a, b, rtol=1e-5, atol=1e-8):
    torch.testing.assert_close(losses(runs, a), losses(runs, b), rtol=rtol, atol=1e-8)
    wa, wb = weights(runs, a), weights(runs, b)
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=rtol, atol=atol, msg=lambda m, k=k: f"{k}: {m}")


def test_fsdp_trains_like_ddp_and_like_one_process(runs):
    assert json.loads((runs / "fsdp/tiny-lm/summary.json").read_text())["world_size"] == 2
    assert (stage(runs, "fsdp") / "checkpoints/step-00000004/dcp/.metadata").is_file()
    assert_same_run(runs, "fsdp", "ddp")  # same sums in the same order: equal to the last bit on CPU
    # one process sums each gradient over 8 examples at once, 2 ranks over 4 then across ranks: rounding differs
    assert_same_run(runs, "fsdp", "one", rtol=1e-4, atol=1e-6)
    # the runs moved: not a comparison of untrained students
    start = load_file(str(next((stage(runs, "one") / "checkpoints").glob("step-*")) / "weights.safetensors"))
    assert not torch.equal(weights(runs, "fsdp")["model.norm.weight"], start["student/model.norm.weight"])


def test_fsdp_options_change_memory_not_results(runs):
    # a sharded teacher computes the same teacher signal, keeping layers gathered changes no value, and
    # 2 micro-batches (each reduce-scattered, weighted by its share of the global valid tokens) equal one
    assert_same_run(runs, "fsdp_teacher", "fsdp", rtol=1e-4, atol=1e-6)
    # bfloat16 compute: the same run up to bfloat16 rounding (the float32 shards are what is updated and saved)
    torch.testing.assert_close(losses(runs, "fsdp_bf16"), losses(runs, "fsdp"), rtol=1e-2, atol=0)
    assert all(v.dtype == torch.float32 for v in weights(runs, "fsdp_bf16").values())
    assert not torch.equal(losses(runs, "fsdp_bf16"), losses(runs, "fsdp"))


def test_killed_fsdp_run_resumes_to_the_uninterrupted_result(runs):
    assert_same_run(runs, "fsdp_kill", "fsdp")


def test_checkpoint_of_two_ranks_resumes_on_one_and_of_one_on_two(runs):
    # another world size changes the global batch from the resumed step on (batch_size is per rank):
    # the reference is the same cut and resume done with whole tensors (safetensors checkpoints)
    assert json.loads((stage(runs, "fsdp_kill_to_1") / "checkpoints/step-00000002/state.json").read_text())["world_size"] == 2
    assert_same_run(runs, "fsdp_kill_to_1", "ddp_cut_to_1")
    assert_same_run(runs, "fsdp_1", "plain_1")
    with pytest.raises(AssertionError):  # the references differ from each other: the check can fail
        assert_same_run(runs, "ddp_cut_to_1", "ddp")


def test_export_is_one_plain_hugging_face_folder(runs):
    from transformers import AutoModelForCausalLM
    folder = stage(runs, "fsdp") / "model"
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert model.lm_head.weight is model.model.embed_tokens.weight  # still tied
    saved = weights(runs, "fsdp")
    assert "lm_head.weight" not in saved  # the tied copy is not stored twice
    for k, v in model.state_dict().items():
        if k in saved:
            assert torch.equal(v, saved[k])


def test_fsdp_refuses_students_it_cannot_shard(llm_assets, tmp_path):
    path = recipe(llm_assets, tmp_path, "bad", "fsdp", 4)
    cfg = yaml.safe_load(open(path))
    cfg["data"] = {"format": "prompts", "paths": [llm_assets["jsonl"]], "max_length": 32, "eval_fraction": 0.1}
    cfg["on_policy"] = {"lmbda": 1.0}
    write_recipe(tmp_path / "bad.yaml", cfg)
    with pytest.raises(ConfigError, match="fsdp: on_policy"):
        load_recipe(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="swa_start_epoch"):
        load_recipe(path, ["train.swa_start_epoch=0"])
