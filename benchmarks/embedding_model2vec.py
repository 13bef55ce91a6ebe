"""The model2vec arm of benchmarks/embedding.py, run by a separate Python environment that has model2vec.

model2vec pins transformers < 5.4, which the project's own environment does not have, so this script runs in
its own venv (see benchmarks/embedding.py --m2v-python) and imports distill from the checkout for the same
evaluation code. It distils `--teacher` with `model2vec.distill(pca_dims=...)`, evaluates the static model
with distill.eval.embeddings at the given limits, and measures its sentences/s side by side with our static
student (`--static`, a sentence-transformers folder distill exported), both in this process. The last line
printed is the JSON result.

    /work/m2v-venv/bin/python benchmarks/embedding_model2vec.py --teacher DIR --out DIR [--static DIR]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402


def distilled(teacher: str, out: Path, pca_dims: int):
    """model2vec's static model of `teacher` (built once, then loaded from `out`), and the seconds it took."""
    from model2vec import StaticModel
    from model2vec.distill import distill
    timing = out / "distill_seconds.json"
    if (out / "config.json").is_file():
        seconds = json.loads(timing.read_text())["seconds"] if timing.is_file() else None
        return StaticModel.from_pretrained(str(out)), seconds
    start = time.perf_counter()
    model = distill(model_name=str(Path(teacher).expanduser()), pca_dims=pca_dims)
    seconds = time.perf_counter() - start
    model.save_pretrained(str(out))
    timing.write_text(json.dumps({"seconds": seconds}))
    return model, seconds


def throughput(encoders: dict, texts: list[str], rounds: int = 5) -> dict[str, float]:
    """Median sentences/s of each encoder over `rounds`, the encoders taking turns (so load hits them alike)."""
    for encode in encoders.values():
        encode(texts)  # warm-up
    speeds: dict[str, list[float]] = {name: [] for name in encoders}
    for _ in range(rounds):
        for name, encode in encoders.items():
            start = time.perf_counter()
            encode(texts)
            speeds[name].append(len(texts) / (time.perf_counter() - start))
    return {name: statistics.median(v) for name, v in speeds.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--static", help="our static student's folder, timed side by side with model2vec's")
    parser.add_argument("--pca-dims", type=int, default=256)
    parser.add_argument("--max-examples", type=int, default=500)
    parser.add_argument("--max-queries", type=int, default=300)
    parser.add_argument("--max-documents", type=int, default=1000)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    args = parser.parse_args()
    from distill.data import embedding_sets as sets
    from distill.eval.embeddings import THROUGHPUT_SENTENCES, Limits, evaluate_embeddings
    model, distill_seconds = distilled(args.teacher, args.out, args.pca_dims)

    def encode(texts):
        return torch.from_numpy(np.asarray(model.encode(list(texts)), dtype=np.float32))

    limits = Limits.from_counts(args.max_examples, args.max_queries, args.max_documents)
    result = evaluate_embeddings(encode, None, limits=limits, data_dir=args.data, progress=False)
    table = model.embedding
    size = {"params": int(np.prod(table.shape)), "bytes": int(table.nbytes), "dim": int(table.shape[1]),
            "vocab": int(table.shape[0])}
    encoders = {"model2vec": encode}
    if args.static:
        from distill.models.encoders import load_sentence_encoder
        ours = load_sentence_encoder(args.static).eval()
        encoders["static"] = lambda texts: ours.encode(list(texts))
    texts = sets.throughput_sentences(args.data, THROUGHPUT_SENTENCES)
    with torch.no_grad():
        speeds = throughput(encoders, texts)
    print(json.dumps({"eval": result, "size": size, "distill_seconds": distill_seconds, "sentences_per_s": speeds,
                      "model2vec_version": __import__("model2vec").__version__}))


if __name__ == "__main__":
    main()
