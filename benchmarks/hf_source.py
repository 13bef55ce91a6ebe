"""Classification data from `data.hf` against the registered loader it replaces: Fashion-MNIST read from its idx
files (`data.name: fashion_mnist`) and the same images as a Hugging Face DatasetDict of PNG images (save_to_disk)
and as parquet files, side by side in one process.

Reports the seconds to the ImageSplits tensors: idx files; hf folder on the first run (PNG decode) and on a later
run (the decoded arrays cached by the source's fingerprint); parquet with and without streaming for the first
--cap rows of each split (decode only, no cache). Checks that every hf route gives tensors equal to the idx ones.

    python benchmarks/hf_source.py [--cap 10000]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import common
import torch

from distill.data import hf_source
from distill.data.images import DATASETS

ROOT_DATA = common.SHARED / "data" / "fashion-mnist"


def timed(fn):
    started = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - started


def build_sources(data, folder: Path) -> tuple[str, str]:
    """The idx images as a saved DatasetDict (PNG Image feature, ClassLabel) and as train/test parquet files."""
    import datasets
    from PIL import Image
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=data.classes)})
    parts = {}
    for split in ("train", "test"):
        x, y = getattr(data, f"{split}_x"), getattr(data, f"{split}_y")
        parts[split] = datasets.Dataset.from_dict({"image": [Image.fromarray(a[0].numpy()) for a in x],
                                                   "label": y.tolist()}, features=features)
        parts[split].to_parquet(str(folder / f"{split}.parquet"))
    datasets.DatasetDict(parts).save_to_disk(str(folder / "disk"))
    return str(folder / "disk"), str(folder)


def same(a, b) -> bool:
    return all(torch.equal(getattr(a, k), getattr(b, k)) for k in ("train_x", "train_y", "test_x", "test_y"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cap", type=int, default=10000, help="rows per split of the parquet comparison")
    args = parser.parse_args()
    idx, idx_s = timed(lambda: DATASETS.get("fashion_mnist").obj(str(ROOT_DATA)))
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["DISTILL_CACHE"] = str(Path(tmp) / "cache")
        (disk, folder), build_s = timed(lambda: build_sources(idx, Path(tmp)))
        spec = hf_source.HFDataSpec(path=disk, eval_split="test")
        first, first_s = timed(lambda: hf_source.image_splits(spec))
        again, again_s = timed(lambda: hf_source.image_splits(spec))
        files = {"train": "train.parquet", "test": "test.parquet"}
        capped = {}
        for streaming in (False, True):
            s = hf_source.HFDataSpec(path=folder, data_files=files, eval_split="test", max_examples=args.cap,
                                     streaming=streaming)
            capped[streaming] = timed(lambda: hf_source.decode_images(s))
    cap_equal = all((capped[True][0][k] == capped[False][0][k]).all() for k in capped[True][0])
    cap_idx = bool((capped[False][0]["train_x"] == idx.train_x[:args.cap].numpy()).all())
    rows = [["idx files (data.name: fashion_mnist)", f"{len(idx.train_y)}+{len(idx.test_y)}", f"{idx_s:.2f}", "-"],
            ["hf save_to_disk, first run (PNG decode)", f"{len(first.train_y)}+{len(first.test_y)}", f"{first_s:.2f}",
             str(same(first, idx))],
            ["hf save_to_disk, later run (cached arrays)", f"{len(again.train_y)}+{len(again.test_y)}", f"{again_s:.2f}",
             str(same(again, idx))],
            [f"hf parquet, first {args.cap} rows per split", f"{args.cap}+{args.cap}", f"{capped[False][1]:.2f}",
             str(cap_idx)],
            [f"hf parquet streaming, first {args.cap} rows", f"{args.cap}+{args.cap}", f"{capped[True][1]:.2f}",
             str(bool(cap_equal and cap_idx))]]
    print(f"Fashion-MNIST to ImageSplits tensors (building the hf copies took {build_s:.1f} s, not counted)")
    print(common.table(["source", "images", "seconds", "equal to idx"], rows))
    figures = {"idx_s": idx_s, "hf_disk_first_s": first_s, "hf_disk_cached_s": again_s,
               "hf_parquet_capped_s": capped[False][1], "hf_parquet_streaming_s": capped[True][1], "cap": args.cap,
               "equal_to_idx": same(first, idx) and same(again, idx) and cap_idx and bool(cap_equal)}
    common.record("hf_source", figures, "python benchmarks/hf_source.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
