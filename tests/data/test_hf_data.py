"""data.hf: Hugging Face datasets (save_to_disk folders, parquet / JSON / CSV files) as the data of every task.

Each task's rows are checked against what the same data gives through the task's file reader (an independent
path), or against the Python lists the dataset was built from.
"""
import json
import sys

import numpy as np
import pytest
import torch

datasets = pytest.importorskip("datasets")
pytest.importorskip("transformers")

from distill.cli import main  # noqa: E402
from distill.data.hf_source import HFDataSpec, read_rows  # noqa: E402
from distill.errors import ConfigError, DataError  # noqa: E402
from distill.tasks import build_recipe  # noqa: E402
from tests.embedding.conftest import SENTENCES, assets, embedding_recipe  # noqa: E402,F401 (assets: a fixture)
from tests.helpers import tiny_recipe, write_recipe  # noqa: E402
from tests.llm.conftest import CORPUS, llm_assets, lm_recipe  # noqa: E402,F401 (llm_assets: a fixture)

ROWS = {"text": [f"row {i}: {w}" for i, w in enumerate(["alpha", "beta", "gamma", "delta", "epsilon", "zeta",
                                                         "eta", "theta"])], "n": list(range(8))}


@pytest.fixture(autouse=True)
def caches(tmp_path, monkeypatch):
    """Decoded / packed arrays and the datasets Arrow cache go to tmp_path, not the user's caches."""
    monkeypatch.setenv("DISTILL_CACHE", str(tmp_path / "distill-cache"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))


def sources(tmp_path, columns):
    """The same table as a saved Dataset, a saved DatasetDict, parquet, JSON lines and CSV: {kind: path}."""
    ds = datasets.Dataset.from_dict(columns)
    ds.save_to_disk(str(tmp_path / "dataset"))
    datasets.DatasetDict(train=ds).save_to_disk(str(tmp_path / "dict"))
    ds.to_parquet(str(tmp_path / "rows.parquet"))
    ds.to_json(str(tmp_path / "rows.jsonl"))
    ds.to_csv(str(tmp_path / "rows.csv"), index=False)
    return {k: str(tmp_path / p) for k, p in (("dataset", "dataset"), ("dict", "dict"), ("parquet", "rows.parquet"),
                                              ("json", "rows.jsonl"), ("csv", "rows.csv"))}


def spec(**fields):
    return HFDataSpec(**fields)


# ----------------------------------------------------------------------------- the shared loader

def test_every_local_source_gives_the_rows_it_was_built_from(tmp_path):
    expected = [{"text": t, "n": n} for t, n in zip(ROWS["text"], ROWS["n"])]
    for kind, path in sources(tmp_path, ROWS).items():
        rows = read_rows(spec(path=path), "train", [("text",)], optional=("n",))
        assert rows.rows == expected, kind
        assert rows.roles == ("text", "n")


def test_a_folder_of_files_named_by_split_is_read_by_load_dataset(tmp_path):
    folder = tmp_path / "by-split"
    folder.mkdir()
    datasets.Dataset.from_dict(ROWS).to_csv(str(folder / "train.csv"), index=False)
    datasets.Dataset.from_dict({"text": ["held 1", "held 2"], "n": [8, 9]}).to_csv(str(folder / "test.csv"), index=False)
    for streaming in (False, True):
        rows = read_rows(spec(path=str(folder), streaming=streaming), "test", [("text",)], optional=("n",)).rows
        assert rows == [{"text": "held 1", "n": 8}, {"text": "held 2", "n": 9}]
    with pytest.raises(DataError, match="no data files for split 'test', only for train"):
        read_rows(spec(path=str(folder / "train.csv")), "test", [("text",)])


def test_streaming_reads_the_same_first_rows(tmp_path):
    paths = sources(tmp_path, ROWS)
    for kind in ("dict", "parquet", "json"):
        full = read_rows(spec(path=paths[kind], max_examples=5), "train", [("text",)]).rows
        streamed = read_rows(spec(path=paths[kind], max_examples=5, streaming=True), "train", [("text",)]).rows
        assert streamed == full == [{"text": t} for t in ROWS["text"][:5]], kind


def test_columns_map_roles_and_a_missing_column_lists_the_available_ones(tmp_path):
    path = sources(tmp_path, {"sentence": ROWS["text"], "n": ROWS["n"]})["parquet"]
    rows = read_rows(spec(path=path, columns={"text": "sentence"}), "train", [("text",)]).rows
    assert [r["text"] for r in rows] == ROWS["text"]
    with pytest.raises(DataError) as info:
        read_rows(spec(path=path), "train", [("text",)])
    message = str(info.value)
    assert "\n" not in message and "available columns: sentence, n" in message and "data.hf.columns.text" in message
    with pytest.raises(DataError, match="data.hf.columns.text = 'body': no such column.*available columns: sentence, n"):
        read_rows(spec(path=path, columns={"text": "body"}), "train", [("text",)])
    with pytest.raises(ConfigError, match="data.hf.columns.txt: not a role read here \\(did you mean 'text'\\?\\); "
                                          "roles: text"):
        read_rows(spec(path=path, columns={"txt": "sentence"}), "train", [("text",)])


def test_an_unknown_split_names_the_saved_ones(tmp_path):
    path = sources(tmp_path, ROWS)["dict"]
    with pytest.raises(DataError, match="no split 'test'; the saved DatasetDict holds train"):
        read_rows(spec(path=path), "test", [("text",)])
    for missing in (str(tmp_path / "nowhere"), "data/typo.parquet", "./set"):  # never sent to the hub
        with pytest.raises(DataError, match="does not exist"):
            read_rows(spec(path=missing), "train", [("text",)])


def test_a_missing_datasets_package_is_one_line_through_the_cli(tmp_path, capsys, monkeypatch):
    path = sources(tmp_path, ROWS)["parquet"]
    monkeypatch.setitem(sys.modules, "datasets", None)  # `import datasets` now raises ImportError
    recipe = tiny_recipe(tmp_path / "runs", data={"hf": {"path": path, "eval_split": "train"}})
    capsys.readouterr()  # the progress bars of building the files
    code = main(["train", str(write_recipe(tmp_path / "r.yaml", recipe))])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.endswith("data.hf needs the `datasets` package: pip install 'distill[hf]'")
    assert "\n" not in err


@pytest.mark.parametrize("data, message", [
    ({"name": "digits", "hf": {"path": "x", "eval_split": "test"}}, "give exactly one of name"),
    ({}, "give exactly one of name"),
    ({"hf": {"path": "x"}}, "classification needs a test split"),
    ({"hf": {"path": "x", "eval_split": "test", "colums": {}}}, "data.hf.colums: unknown key"),
])
def test_classification_data_sections_fail_at_load(tmp_path, data, message):
    with pytest.raises(ConfigError, match=message):
        build_recipe(tiny_recipe(tmp_path, data=data))


def test_a_column_of_a_role_the_task_does_not_read_fails_at_load(tmp_path, llm_assets, assets):
    for recipe, message in (
            (tiny_recipe(tmp_path, data={"hf": {"path": "x", "eval_split": "test", "columns": {"img": "a"}}}),
             "data.hf.columns.img: not a role read here.*roles: image, label"),
            (lm_recipe(llm_assets, tmp_path, data={"hf": {"path": "x", "columns": {"prompt": "q"}}}),
             "data.hf.columns.prompt: not a role read here; roles: text$"),
            (lm_recipe(llm_assets, tmp_path, data={"format": "prompts", "hf": {"path": "x", "columns": {"answr": "a"}}}),
             "columns.answr: not a role read here \\(did you mean 'answer'\\?\\); roles: answer, completion, messages, "
             "prompt"),
            (embedding_recipe(assets, tmp_path, data={"format": "pairs", "hf": {"path": "x", "columns": {"negative": "n"}}}),
             "data.hf.columns.negative: not a role read here.*; roles: positive, query")):
        with pytest.raises(ConfigError, match=message):
            build_recipe(recipe)


def test_lm_and_embedding_data_need_exactly_one_source(tmp_path, llm_assets, assets):
    for recipe in (lm_recipe(llm_assets, tmp_path, data={"paths": [llm_assets["text"]], "hf": {"path": "x"}}),
                   lm_recipe(llm_assets, tmp_path, data={"format": "text"}),
                   embedding_recipe(assets, tmp_path, data={"hf": {"path": "x"}, "paths": [assets["sentences"]]})):
        with pytest.raises(ConfigError, match="data: give exactly one of paths"):
            build_recipe(recipe)


# ----------------------------------------------------------------------------- classification

def image_dict(tmp_path, n_train=48, n_test=16):
    """A DatasetDict of 8x8 RGB PIL images with ClassLabel labels, saved to disk; and the arrays it holds."""
    from PIL import Image
    rng = np.random.default_rng(0)
    features = datasets.Features({"img": datasets.Image(), "y": datasets.ClassLabel(names=["cat", "dog", "fox"])})
    arrays, parts = {}, {}
    for split, n in (("train", n_train), ("test", n_test)):
        pixels = rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
        labels = rng.integers(0, 3, n)
        parts[split] = datasets.Dataset.from_dict({"img": [Image.fromarray(p) for p in pixels], "y": labels.tolist()},
                                                  features=features)
        arrays[split] = (torch.from_numpy(pixels.transpose(0, 3, 1, 2).copy()), torch.from_numpy(labels))
    datasets.DatasetDict(parts).save_to_disk(str(tmp_path / "images"))
    return str(tmp_path / "images"), arrays


def image_recipe(tmp_path, path, **hf):
    data = {"hf": {"path": path, "eval_split": "test", "columns": {"image": "img", "label": "y"}, **hf},
            "augment": "none"}
    return tiny_recipe(tmp_path / "runs", data=data)


def test_classification_reads_pil_images_and_class_labels_exactly(tmp_path, monkeypatch):
    from distill.tasks.classification.data import dataset_fingerprint, load_data
    path, arrays = image_dict(tmp_path)
    _, cfg = build_recipe(image_recipe(tmp_path, path))
    data, held = load_data(cfg)
    assert held is None and data.classes == ["cat", "dog", "fox"]
    assert torch.equal(data.train_x, arrays["train"][0]) and torch.equal(data.train_y, arrays["train"][1])
    assert torch.equal(data.test_x, arrays["test"][0]) and torch.equal(data.test_y, arrays["test"][1])
    _, streamed = build_recipe(image_recipe(tmp_path, path, streaming=True))
    monkeypatch.setenv("DISTILL_CACHE", str(tmp_path / "empty-cache"))  # decode again, not the cached first decode
    again, _ = load_data(streamed)
    assert torch.equal(again.train_x, data.train_x) and torch.equal(again.test_y, data.test_y)
    assert dataset_fingerprint(streamed) == dataset_fingerprint(cfg)  # streaming reads the same rows
    _, capped = build_recipe(image_recipe(tmp_path, path, max_examples=10))
    assert dataset_fingerprint(capped) != dataset_fingerprint(cfg)
    datasets.load_from_disk(path)["train"].select(range(40)).save_to_disk(str(tmp_path / "fewer"))
    _, fewer = build_recipe(image_recipe(tmp_path, str(tmp_path / "fewer"), eval_split="train"))
    _, other = build_recipe(image_recipe(tmp_path, str(tmp_path / "fewer")))
    assert dataset_fingerprint(other) != dataset_fingerprint(cfg) and dataset_fingerprint(fewer) != dataset_fingerprint(other)


def test_classification_reads_array_columns_and_string_labels_from_parquet(tmp_path):
    from distill.tasks.classification.data import load_data
    rng = np.random.default_rng(1)
    expected = {}
    for split, n in (("train", 12), ("test", 6)):
        grey = rng.integers(0, 256, (n, 1, 6, 6), dtype=np.uint8)  # (C, H, W) arrays
        names = [["zebra", "ant"][i % 2] for i in range(n)]
        datasets.Dataset.from_dict({"pixels": grey.tolist(), "kind": names}).to_parquet(str(tmp_path / f"{split}.parquet"))
        expected[split] = (torch.from_numpy(grey), torch.tensor([1 if k == "zebra" else 0 for k in names]))
    recipe = tiny_recipe(tmp_path / "runs", data={"hf": {
        "path": str(tmp_path), "data_files": {"train": "train.parquet", "test": "test.parquet"}, "eval_split": "test",
        "columns": {"image": "pixels", "label": "kind"}}})
    data, _ = load_data(build_recipe(recipe)[1])
    assert data.classes == ["ant", "zebra"]
    for split, (x, y) in expected.items():
        assert torch.equal(getattr(data, f"{split}_x"), x) and torch.equal(getattr(data, f"{split}_y"), y)


def test_distill_train_runs_classification_from_a_saved_dataset(tmp_path, capsys):
    path, _ = image_dict(tmp_path)
    recipe = image_recipe(tmp_path, path)
    code = main(["train", str(write_recipe(tmp_path / "r.yaml", recipe)), "train.epochs=1", "teacher.train.epochs=1"])
    out = capsys.readouterr()
    assert code == 0, out.err
    summary = json.loads((tmp_path / "runs" / "tiny" / "summary.json").read_text())
    assert summary["dataset"] == f"hf:{path}" and "student-kd" in summary["stages"]


# ----------------------------------------------------------------------------- causal_lm

def lm_data(assets, tmp_path, **data):
    from distill.tasks.causal_lm.data import load_lm_data
    _, cfg = build_recipe(lm_recipe(assets, tmp_path / "runs", data={"block_size": 16, **data}))
    return load_lm_data(cfg, assets["tokenizer"])


def write_docs(folder, texts):
    folder.mkdir()
    for i, text in enumerate(texts):
        (folder / f"doc{i:02d}.txt").write_text(text)
    return str(folder)


def test_lm_text_rows_pack_like_the_same_text_files(llm_assets, tmp_path):
    train_docs, test_docs = CORPUS * 2, CORPUS[:3]
    parts = {"train": datasets.Dataset.from_dict({"content": train_docs}),
             "test": datasets.Dataset.from_dict({"content": test_docs})}
    datasets.DatasetDict(parts).save_to_disk(str(tmp_path / "lm"))
    files = lm_data(llm_assets, tmp_path, paths=[write_docs(tmp_path / "tr", train_docs)],
                    eval_paths=[write_docs(tmp_path / "ev", test_docs)])
    hf = {"path": str(tmp_path / "lm"), "eval_split": "test", "columns": {"text": "content"}}
    for streaming in (False, True):
        rows = lm_data(llm_assets, tmp_path, hf={**hf, "streaming": streaming})
        assert np.array_equal(rows[0], files[0]) and np.array_equal(rows[1], files[1])
    held_by_hash = lm_data(llm_assets, tmp_path, hf={**hf, "eval_split": None}, eval_fraction=0.3)
    assert len(held_by_hash[1]) > 0 and len(held_by_hash[0]) + len(held_by_hash[1]) <= len(files[0])


def jsonl_file(path, records):
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return str(path)


def test_lm_jsonl_rows_give_the_examples_of_the_same_jsonl_files(llm_assets, tmp_path):
    records = [json.loads(line) for line in open(llm_assets["jsonl"])]
    pc = [r for r in records if "prompt" in r]
    chat = [r for r in records if "messages" in r]
    datasets.DatasetDict(train=datasets.Dataset.from_list(pc), test=datasets.Dataset.from_list(chat)).save_to_disk(
        str(tmp_path / "mixed"))
    files = lm_data(llm_assets, tmp_path, format="jsonl", paths=[jsonl_file(tmp_path / "pc.jsonl", pc)],
                    eval_paths=[jsonl_file(tmp_path / "chat.jsonl", chat)])
    rows = lm_data(llm_assets, tmp_path, format="jsonl", hf={"path": str(tmp_path / "mixed"), "eval_split": "test"})
    assert rows == files and any(-100 in e["labels"] for e in rows[1])  # chat: loss on assistant turns only
    datasets.Dataset.from_list([{"question": r["prompt"], "reply": r["completion"]} for r in pc]).to_parquet(
        str(tmp_path / "qa.parquet"))
    mapped = lm_data(llm_assets, tmp_path, format="jsonl", eval_fraction=0.0, hf={
        "path": str(tmp_path / "qa.parquet"), "columns": {"prompt": "question", "completion": "reply"}})
    assert mapped[0] == files[0]
    with pytest.raises(DataError, match="no column messages or prompt \\+ completion or text; available columns: "
                                        "question, reply"):
        lm_data(llm_assets, tmp_path, format="jsonl", hf={"path": str(tmp_path / "qa.parquet")})


def test_lm_prompt_formats_from_rows_equal_those_from_files(llm_assets, tmp_path):
    prompts = [{"prompt": f"What is {i} + {i}?", "completion": f" {2 * i}", "answer": str(2 * i)} for i in range(8)]
    datasets.Dataset.from_list(prompts).to_json(str(tmp_path / "prompts.json"))
    files = lm_data(llm_assets, tmp_path, format="prompts", paths=[jsonl_file(tmp_path / "p.jsonl", prompts)],
                    eval_fraction=0.25)
    rows = lm_data(llm_assets, tmp_path, format="prompts", hf={"path": str(tmp_path / "prompts.json")},
                   eval_fraction=0.25)
    assert rows == files and len(rows[1]) == 2
    datasets.Dataset.from_dict({"text": CORPUS}).to_csv(str(tmp_path / "docs.csv"), index=False)
    settings = {"format": "text_prompts", "prompt_tokens": 4, "completion_tokens": 4, "eval_fraction": 0.2}
    files = lm_data(llm_assets, tmp_path, paths=[write_docs(tmp_path / "docs", CORPUS)], **settings)
    rows = lm_data(llm_assets, tmp_path, hf={"path": str(tmp_path / "docs.csv")}, **settings)
    assert rows == files and len(rows[0]) > 4


def test_lm_fingerprint_names_the_dataset(llm_assets, tmp_path):
    from distill.tasks.causal_lm.data import dataset_fingerprint
    paths = sources(tmp_path, ROWS)

    def fingerprint(**hf):
        _, cfg = build_recipe(lm_recipe(llm_assets, tmp_path, data={"hf": hf}))
        return dataset_fingerprint(cfg, llm_assets["tokenizer"])
    base = fingerprint(path=paths["parquet"])
    assert base == fingerprint(path=paths["parquet"], streaming=True)
    assert len({base, fingerprint(path=paths["json"]), fingerprint(path=paths["parquet"], max_examples=4),
                fingerprint(path=paths["parquet"], columns={"text": "n"})}) == 4
    datasets.Dataset.from_dict({"text": ROWS["text"][::-1], "n": ROWS["n"]}).to_parquet(paths["parquet"])
    assert fingerprint(path=paths["parquet"]) != base


def test_distill_train_runs_causal_lm_from_a_saved_dataset(llm_assets, tmp_path, capsys):
    datasets.Dataset.from_dict({"text": CORPUS * 3}).save_to_disk(str(tmp_path / "corpus"))
    recipe = lm_recipe(llm_assets, tmp_path / "runs", data={"hf": {"path": str(tmp_path / "corpus")},
                                                          "block_size": 16, "eval_fraction": 0.2})
    code = main(["train", str(write_recipe(tmp_path / "r.yaml", recipe))])
    out = capsys.readouterr()
    assert code == 0, out.err
    summary = json.loads((tmp_path / "runs" / "tiny-lm" / "summary.json").read_text())
    assert summary["dataset"] == f"hf:{tmp_path / 'corpus'}" and summary["stages"]["student-lm_kd"]["steps"] == 4


# ----------------------------------------------------------------------------- embedding

def embedding_data(assets, tmp_path, **data):
    from distill.tasks.embedding.data import load_data
    _, cfg = build_recipe(embedding_recipe(assets, tmp_path / "runs", data={"eval_fraction": 0.2, **data}))
    return load_data(cfg.data)


def same(a, b):
    for part in ("train", "held"):
        x, y = getattr(a, part), getattr(b, part)
        assert x.texts == y.texts and x.records == y.records
        assert (x.labels is None and y.labels is None) or np.array_equal(x.labels, y.labels)
    assert a.classes == b.classes


def test_embedding_rows_give_the_records_of_the_same_files(assets, tmp_path):
    datasets.Dataset.from_dict({"sentence": SENTENCES}).save_to_disk(str(tmp_path / "sentences"))
    for streaming in (False, True):
        same(embedding_data(assets, tmp_path, hf={"path": str(tmp_path / "sentences"), "streaming": streaming,
                                                  "columns": {"text": "sentence"}}),
             embedding_data(assets, tmp_path, paths=[assets["sentences"]]))
    a, p, n = SENTENCES, SENTENCES[1:], SENTENCES[2:]
    datasets.Dataset.from_dict({"anchor": a[:len(n)], "positive": p[:len(n)], "negative": n}).to_parquet(
        str(tmp_path / "triples.parquet"))
    same(embedding_data(assets, tmp_path, format="triples", hf={"path": str(tmp_path / "triples.parquet"),
                                                                "columns": {"query": "anchor"}}),
         embedding_data(assets, tmp_path, format="triples", paths=[assets["triples"]]))
    lists = [json.loads(line) for line in open(assets["lists"])]
    datasets.Dataset.from_list(lists).to_json(str(tmp_path / "lists.jsonl"))
    same(embedding_data(assets, tmp_path, format="lists", hf={"path": str(tmp_path / "lists.jsonl")}),
         embedding_data(assets, tmp_path, format="lists", paths=[assets["lists"]]))


def test_embedding_labelled_rows_read_class_label_names(assets, tmp_path):
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["0", "1"])})
    datasets.Dataset.from_dict({"text": SENTENCES, "label": [i % 2 for i in range(len(SENTENCES))]},
                               features=features).save_to_disk(str(tmp_path / "labelled"))
    rows = embedding_data(assets, tmp_path, format="labelled", hf={"path": str(tmp_path / "labelled")})
    same(rows, embedding_data(assets, tmp_path, format="labelled", paths=[assets["labelled"]]))
    assert rows.classes == ["0", "1"] and set(rows.train.labels.tolist()) == {0, 1}


def test_distill_train_runs_embedding_from_parquet(assets, tmp_path, capsys):
    datasets.Dataset.from_dict({"text": SENTENCES}).to_parquet(str(tmp_path / "s.parquet"))
    recipe = embedding_recipe(assets, tmp_path / "runs", data={"hf": {"path": str(tmp_path / "s.parquet")}})
    recipe["train"]["epochs"] = 1
    code = main(["train", str(write_recipe(tmp_path / "r.yaml", recipe))])
    out = capsys.readouterr()
    assert code == 0, out.err
    summary = json.loads((tmp_path / "runs" / "tiny-emb" / "summary.json").read_text())
    assert summary["dataset"] == f"hf:{tmp_path / 's.parquet'}" and summary["data"]["train_records"] > 20


def test_images_of_other_sizes_are_resized_with_image_size_or_refused(tmp_path):
    from PIL import Image
    from distill.tasks.classification.data import load_data
    sizes = [(8, 8), (10, 6), (8, 8), (12, 12)]
    table = {"image": [Image.new("RGB", s, (10 * i, 0, 0)) for i, s in enumerate(sizes)], "label": [0, 1, 0, 1]}
    datasets.DatasetDict(train=datasets.Dataset.from_dict(table), test=datasets.Dataset.from_dict(table)).save_to_disk(
        str(tmp_path / "sizes"))
    hf = {"path": str(tmp_path / "sizes"), "eval_split": "test"}
    with pytest.raises(DataError, match="images have different shapes .*set data.hf.image_size"):
        load_data(build_recipe(tiny_recipe(tmp_path, data={"hf": hf}))[1])
    data, _ = load_data(build_recipe(tiny_recipe(tmp_path, data={"hf": {**hf, "image_size": 4}}))[1])
    assert data.train_x.shape == (4, 3, 4, 4) and data.train_x[:, 0, 0, 0].tolist() == [0, 10, 20, 30]
    datasets.DatasetDict(train=datasets.Dataset.from_dict({"image": [[[300]]], "label": [0]}),
                         test=datasets.Dataset.from_dict({"image": [[[3]]], "label": [0]})).save_to_disk(
        str(tmp_path / "bad"))
    with pytest.raises(DataError, match="row 0: expected an image or a 2-d / 3-d array of 0..255 pixels"):
        load_data(build_recipe(tiny_recipe(tmp_path, data={"hf": {**hf, "path": str(tmp_path / "bad")}}))[1])


def test_recipes_without_hf_keep_their_store_fingerprints(tmp_path, llm_assets):
    """The fingerprint formulas as they were before data.hf existed (a store cached then stays valid)."""
    import hashlib
    from distill.config import to_dict
    from distill.data.text import text_fingerprint
    from distill.models.hf import tokenizer_hash
    from distill.tasks.causal_lm.data import dataset_fingerprint as lm_fingerprint
    from distill.tasks.classification.data import dataset_fingerprint
    _, cfg = build_recipe(tiny_recipe(tmp_path))
    old = {k: v for k, v in to_dict(cfg.data).items() if k != "hf"}
    expected = hashlib.sha256(json.dumps({**old, "root": "None"}, sort_keys=True).encode()).hexdigest()[:16]
    assert dataset_fingerprint(cfg) == expected
    _, cfg = build_recipe(lm_recipe(llm_assets, tmp_path))
    settings = json.dumps({k: v for k, v in to_dict(cfg.data).items() if k not in ("paths", "eval_paths", "hf")},
                          sort_keys=True)
    parts = [text_fingerprint(cfg.data.paths, settings), "", tokenizer_hash(llm_assets["tokenizer"])]
    assert lm_fingerprint(cfg, llm_assets["tokenizer"]) == hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def test_a_store_cached_from_an_hf_source_serves_it_streamed_and_refuses_another(tmp_path):
    path, _ = image_dict(tmp_path)
    recipe = image_recipe(tmp_path, path)
    recipe["store"] = {"path": str(tmp_path / "store")}
    task, cfg = build_recipe(recipe)
    task.cache(cfg)  # trains the teacher stage, then stores its logits of the hf images
    stored = json.loads(json.dumps(recipe))
    del stored["teacher"]
    stored["data"]["hf"]["streaming"] = True
    stored["train"]["epochs"] = 1
    summary = task.run(build_recipe(stored)[1], overwrite=True)
    assert summary["stages"]["student-kd"]["teacher_logits"] == "store"
    datasets.load_from_disk(path)["train"].select(range(40)).save_to_disk(str(tmp_path / "fewer"))
    other = json.loads(json.dumps(stored))
    other["data"]["hf"]["path"] = str(tmp_path / "fewer")
    other["data"]["hf"]["eval_split"] = "train"
    with pytest.raises(DataError, match="dataset_fingerprint"):
        task.run(build_recipe(other)[1], overwrite=True)
