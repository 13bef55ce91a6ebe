"""Hugging Face `datasets` as the data source of any task (`data.hf` in a recipe).

Where the rows come from (`HFDataSpec.path`):
  - a `save_to_disk` folder (a Dataset holds state.json, a DatasetDict dataset_dict.json): load_from_disk;
  - a .parquet / .json / .jsonl / .csv file, or `data_files` (split -> files): the builder of that suffix;
  - any other folder (data files named by split, an image-folder tree) or a hub id: load_dataset(path, name)
    (a hub id needs network access).
Columns are read by role (text, prompt, completion, messages, image, label, ...): a role reads the column
of its own name unless `columns` maps it to another. Each task names the roles it reads and turns the rows
into what it already consumes; `image_splits` here is the classification one (images live in distill.data).
With `streaming: true` a split is iterated once, at most `max_examples` rows, and never materialised
(a hub set is downloaded only as far as it is read); without it, the first `max_examples` rows are taken
from the (memory-mapped) set, so both give the same rows.
`datasets` is optional (pip install 'distill[hf]') and imported only when a recipe has data.hf.
"""
from __future__ import annotations

import hashlib
import io
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch

from distill.config import option, to_dict
from distill.data.cache import cached_arrays, source_fingerprint
from distill.data.images import ImageSplits
from distill.errors import ConfigError, DataError, DistillError
from distill.progress import progress_bar
from distill.registry import suggest

BUILDERS = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".csv": "csv"}
MISSING_PACKAGE = "data.hf needs the `datasets` package: pip install 'distill[hf]'"


@dataclass(kw_only=True)
class HFDataSpec:
    """A Hugging Face dataset: a save_to_disk folder, data files, or a hub id; its splits and columns."""

    path: str = option(help="a save_to_disk folder, a .parquet/.json/.jsonl/.csv file, a folder of data files, or a "
                       "hub id (needs network access)")
    name: Optional[str] = option(None, help="the dataset's configuration (load_dataset's name)")
    split: str = option("train", help="the training split")
    eval_split: Optional[str] = option(None, help="the held-out split (default: the task's held-out share of split; "
                                       "classification needs one, its test split)")
    data_files: dict[str, Union[str, list[str]]] = option(
        default_factory=dict, help="split -> data file(s) (.parquet/.json/.jsonl/.csv), relative to path when path is a "
        "folder, e.g. {train: train.parquet, test: test.parquet}")
    columns: dict[str, str] = option(default_factory=dict, help="role -> column where they differ, e.g. {text: sentence, "
                                     "label: fine_label}; the roles each task reads are in the README")
    streaming: bool = option(False, help="iterate each split once, at most max_examples rows, never materialising it")
    max_examples: Optional[int] = option(None, min=1, help="read at most the first N rows of each split")
    revision: Optional[str] = option(None, help="hub datasets: the git revision to load (pin it: the store fingerprint "
                                     "names it, not the hub's content)")
    image_size: Optional[int] = option(None, min=1, help="classification: resize every image to this square size")


@dataclass
class Rows:
    """The rows of one split by role: rows[i][role] is the value of that role's column.

    features maps a role to the `datasets` feature of its column where it is known (a ClassLabel carries the
    class names)."""

    rows: list[dict[str, Any]]
    roles: tuple[str, ...]
    features: dict[str, Any]


def datasets_module() -> Any:
    """The `datasets` package, or one DistillError line saying how to install it."""
    try:
        import datasets
    except ImportError:
        raise DistillError(MISSING_PACKAGE) from None
    return datasets


def check_file_or_hf(paths: Sequence[str], eval_paths: Sequence[str], spec: "HFDataSpec | None",
                     roles: Sequence[str]) -> None:
    """At load time, for a data section read from files or from data.hf: exactly one source, no file
    held-out split beside an hf one, and only roles the task reads in data.hf.columns."""
    if bool(paths) == (spec is not None):
        raise ConfigError("data: give exactly one of paths (files) or hf (a Hugging Face dataset)")
    if spec is not None and eval_paths:
        raise ConfigError("data.eval_paths: with data.hf, name the held-out split as data.hf.eval_split")
    if spec is not None:
        check_columns(spec, roles)


def check_columns(spec: HFDataSpec, roles: Sequence[str]) -> None:
    """At load time: every key of data.hf.columns is a role the task (and data.format) reads."""
    for role in spec.columns:
        if role not in roles:
            raise ConfigError(f"data.hf.columns.{role}: not a role read here{suggest(role, list(roles))}; roles: "
                              f"{', '.join(sorted(roles))}")


def describe(spec: HFDataSpec) -> str:
    """A short label for summaries and messages, e.g. 'hf:imdb (plain_text)'."""
    return f"hf:{spec.path}" + (f" ({spec.name})" if spec.name else "")


# ----------------------------------------------------------------------------- where the rows come from

def local_path(spec: HFDataSpec) -> Path | None:
    path = Path(spec.path).expanduser()
    return path if path.exists() else None


def source_kind(spec: HFDataSpec) -> str:
    """'disk' (a save_to_disk folder), 'files' (data files by suffix) or 'load' (load_dataset of a folder or hub id)."""
    path = local_path(spec)
    if spec.data_files:
        return "files"
    if path is not None and path.is_dir() and any((path / f).is_file() for f in ("state.json", "dataset_dict.json")):
        return "disk"
    if path is not None and path.is_file():
        if path.suffix.lower() not in BUILDERS:
            raise ConfigError(f"data.hf.path = {spec.path!r}: a file must be one of {', '.join(BUILDERS)}")
        return "files"
    return "load"


def split_files(spec: HFDataSpec) -> dict[str, list[str]]:
    """split -> data files: data_files resolved against path, or path itself as the training split."""
    base = local_path(spec)
    if not spec.data_files:
        return {spec.split: [str(base)]}
    out = {}
    for split, files in spec.data_files.items():
        files = [files] if isinstance(files, str) else files
        resolved = [Path(f).expanduser() if Path(f).expanduser().is_absolute() or base is None or base.is_file()
                    else base / f for f in files]
        for f in resolved:
            if not f.is_file():
                raise DataError(f"data.hf.data_files.{split}: {str(f)!r} does not exist")
        out[split] = [str(f) for f in resolved]
    return out


def builder_of(files: dict[str, list[str]]) -> str:
    suffixes = {Path(f).suffix.lower() for fs in files.values() for f in fs}
    builders = {BUILDERS.get(s) for s in suffixes}
    if None in builders or len(builders) != 1:
        raise ConfigError(f"data.hf.data_files: the files must share one of {', '.join(BUILDERS)} (got "
                          f"{', '.join(sorted(suffixes))})")
    return builders.pop()


def open_split(spec: HFDataSpec, split: str) -> Any:
    """The split as a `datasets.Dataset`, or an `IterableDataset` when streaming."""
    ds = datasets_module()
    kind = source_kind(spec)
    where = f"data.hf.path = {spec.path!r}"
    try:
        if kind == "disk":
            loaded = ds.load_from_disk(str(local_path(spec)))
            if isinstance(loaded, ds.DatasetDict):
                if split not in loaded:
                    raise DataError(f"{where}: no split {split!r}; the saved DatasetDict holds {', '.join(loaded)}")
                loaded = loaded[split]
            elif split != spec.split:
                raise DataError(f"{where}: a saved Dataset is one split ({spec.split!r}); save a DatasetDict to "
                                f"read {split!r} from it")
            return loaded.to_iterable_dataset() if spec.streaming else loaded
        if kind == "files":
            files = split_files(spec)
            if split not in files:
                raise DataError(f"{where}: no data files for split {split!r}, only for {', '.join(files)} (name each "
                                f"split's files in data.hf.data_files, e.g. {{train: train.parquet, test: test.parquet}})")
            return ds.load_dataset(builder_of(files), data_files={split: files[split]}, split=split,
                                   streaming=spec.streaming)
        if local_path(spec) is None and looks_local(spec.path):
            raise DataError(f"{where} does not exist (a hub id is 'name' or 'owner/name')")
        return ds.load_dataset(spec.path, spec.name, split=split, revision=spec.revision, streaming=spec.streaming)
    except DistillError:
        raise
    except Exception as exc:  # datasets raises many kinds (offline, unknown split, bad file): one line each
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        local = "" if local_path(spec) is not None else " (no local folder of that name either)"
        raise DataError(f"{where}: datasets could not load split {split!r}: {first}{local}") from None


def looks_local(path: str) -> bool:
    """A path no hub id can be: absolute, ./ ../ ~, deeper than owner/name, or a data file's name."""
    return (path.startswith(("/", ".", "~")) or path.count("/") > 1
            or Path(path).suffix.lower() in BUILDERS)


# ----------------------------------------------------------------------------- columns by role

def column_names(dataset: Any) -> list[str]:
    names = getattr(dataset, "column_names", None)
    if names is None:  # a streamed set whose features are unknown until a row is read
        first = next(iter(dataset), None)
        names = list(first) if first is not None else []
    return list(names)


def resolve_roles(spec: HFDataSpec, available: list[str], choices: Sequence[Sequence[str]],
                  optional: Sequence[str], split: str) -> tuple[str, ...]:
    """The roles read from this split: the first alternative of `choices` whose columns are all present
    (one naming an explicitly mapped role first), plus the `optional` roles present."""
    known = {r for c in choices for r in c} | set(optional)
    check_columns(spec, sorted(known))
    column = {r: spec.columns.get(r, r) for r in known}
    for role in spec.columns:
        if column[role] not in available:
            raise DataError(f"data.hf.columns.{role} = {column[role]!r}: no such column in split {split!r}; "
                            f"available columns: {', '.join(available)}")
    ordered = sorted(choices, key=lambda c: not any(r in spec.columns for r in c))
    for roles in ordered:
        if all(column[r] in available for r in roles):
            return tuple(roles) + tuple(r for r in optional if column[r] in available)
    wanted = " or ".join(" + ".join(column[r] for r in c) for c in choices)
    role = next(r for r in choices[0] if column[r] not in available)
    raise DataError(f"data.hf: split {split!r} of {describe(spec)} has no column {wanted}; available columns: "
                    f"{', '.join(available)} (map one with data.hf.columns.{role}: <column>)")


def read_rows(spec: HFDataSpec, split: str, choices: Sequence[Sequence[str]], optional: Sequence[str] = ()) -> Rows:
    """At most `max_examples` rows of `split`, as {role: value}; streamed sets are read once, in order."""
    dataset = open_split(spec, split)
    roles = resolve_roles(spec, column_names(dataset), choices, optional, split)
    column = {r: spec.columns.get(r, r) for r in roles}
    features = getattr(dataset, "features", None) or {}
    cap = spec.max_examples
    if features:  # only the columns read are decoded (an image column the task does not read costs nothing)
        dataset = dataset.select_columns(sorted(set(column.values())))
    if spec.streaming:
        total, rows = cap, itertools.islice(iter(dataset), cap)
    else:
        if cap is not None and cap < len(dataset):
            dataset = dataset.select(range(cap))
        total, rows = len(dataset), iter(dataset)
    out = [{r: row[c] for r, c in column.items()}
           for row in progress_bar(rows, total=total, desc=f"reading {describe(spec)} [{split}]", unit="row")]
    return Rows(out, roles, {r: features[c] for r, c in column.items() if c in features})


def fingerprint(spec: HFDataSpec) -> str:
    """What identifies the rows: the spec and, for a local source, its content (a saved dataset's own
    fingerprints, data files' size and mtime). A hub source is named by path, name and revision only."""
    parts = [json.dumps({k: v for k, v in to_dict(spec).items() if k != "streaming"}, sort_keys=True)]
    path = local_path(spec)
    if path is not None and source_kind(spec) == "disk":
        for state in sorted(path.rglob("state.json")):
            parts.append(f"{state.relative_to(path)}:{json.loads(state.read_text()).get('_fingerprint')}")
    elif source_kind(spec) == "files":
        parts += [source_fingerprint(Path(f)) for fs in split_files(spec).values() for f in fs]
    elif path is not None:
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        parts += [source_fingerprint(f) for f in files]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- classification: images + labels

def image_array(value: Any, size: int | None, where: str) -> np.ndarray:
    """One image as uint8 (C, H, W): a PIL image, encoded {"bytes": ...}, or an array (H, W), (H, W, C), (C, H, W)."""
    from PIL import Image

    if isinstance(value, dict) and value.get("bytes") is not None:
        value = Image.open(io.BytesIO(value["bytes"]))
    if not isinstance(value, Image.Image):
        array = np.asarray(value)
        if array.dtype.kind == "f" and array.size and array.max() <= 1.0:  # [0, 1] floats: scale to the 0..255 range
            array = np.round(array * 255.0)
        if array.ndim not in (2, 3) or array.size == 0 or array.min() < 0 or array.max() > 255:
            values = f"{array.min()}..{array.max()}" if array.size else "none"
            raise DataError(f"{where}: expected an image or a 2-d / 3-d array of 0..255 pixels, got shape "
                            f"{array.shape} with values {values}")
        array = array.astype(np.uint8)
        if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
            array = array.transpose(1, 2, 0)  # (C, H, W) -> (H, W, C), as PIL reads it
        value = Image.fromarray(array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array)
    if value.mode not in ("L", "RGB"):
        value = value.convert("RGB")
    if size is not None and value.size != (size, size):
        value = value.resize((size, size), Image.BILINEAR)
    pixels = np.asarray(value, dtype=np.uint8)
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def stack_images(images: list[np.ndarray], where: str) -> np.ndarray:
    """(N, C, H, W): grey images are repeated to three channels when the split mixes grey and colour."""
    if not images:
        raise DataError(f"{where}: no rows")
    channels = max(i.shape[0] for i in images)
    images = [np.repeat(i, channels, axis=0) if i.shape[0] == 1 else i for i in images]
    shapes = sorted({i.shape for i in images})
    if len(shapes) > 1:
        raise DataError(f"{where}: images have different shapes {shapes[:3]}; set data.hf.image_size to resize them")
    return np.stack(images)


def is_integer(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def class_names(train: Rows, test: Rows) -> list[str]:
    """ClassLabel names; else "0".."max" for integer labels; else the sorted distinct training labels."""
    feature = train.features.get("label")
    if getattr(feature, "names", None):
        return list(feature.names)
    labels = [r["label"] for r in train.rows + test.rows]
    if all(is_integer(v) for v in labels):
        return [str(i) for i in range(max(labels) + 1)]
    return sorted({str(r["label"]) for r in train.rows})


def label_ids(rows: Rows, classes: list[str], split: str) -> np.ndarray:
    """(N,) int64: integer labels as they are (0..C-1), other labels looked up by name in `classes`."""
    lookup = {c: i for i, c in enumerate(classes)}
    out = []
    for r in rows.rows:
        value = r["label"]
        index = int(value) if is_integer(value) else lookup.get(str(value), -1)
        if not 0 <= index < len(classes):
            raise DataError(f"data.hf: split {split!r} has label {value!r}, not one of the {len(classes)} classes "
                            f"of the training split")
        out.append(index)
    return np.asarray(out, dtype=np.int64)


def decode_images(spec: HFDataSpec) -> dict[str, np.ndarray]:
    train = read_rows(spec, spec.split, [("image", "label")])
    test = read_rows(spec, spec.eval_split, [("image", "label")])
    classes = class_names(train, test)
    out: dict[str, np.ndarray] = {"classes": np.array(classes)}
    for key, rows, split in (("train", train, spec.split), ("test", test, spec.eval_split)):
        where = f"data.hf split {split!r}"
        out[f"{key}_x"] = stack_images([image_array(r["image"], spec.image_size, f"{where} row {i}")
                                        for i, r in enumerate(rows.rows)], where)
        out[f"{key}_y"] = label_ids(rows, classes, split)
    if out["train_x"].shape[1:] != out["test_x"].shape[1:]:
        raise DataError(f"data.hf: train images are {out['train_x'].shape[1:]} but {spec.eval_split!r} images are "
                        f"{out['test_x'].shape[1:]}; set data.hf.image_size")
    return out


def image_splits(spec: HFDataSpec) -> ImageSplits:
    """Train (`split`) and test (`eval_split`) images with integer labels; a local source is decoded once
    and cached by its fingerprint (distill.data.cache), a hub one is decoded on every run."""
    if spec.eval_split is None:
        raise ConfigError("data.hf.eval_split: classification needs a test split, e.g. eval_split: test")
    arrays = (cached_arrays(f"hf-images-{fingerprint(spec)}", lambda: decode_images(spec))
              if local_path(spec) is not None else decode_images(spec))
    t = torch.from_numpy
    return ImageSplits(t(arrays["train_x"]), t(arrays["train_y"]), t(arrays["test_x"]), t(arrays["test_y"]),
                       [str(c) for c in arrays["classes"]], "none", describe(spec))
