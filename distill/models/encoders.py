"""Sentence encoders: a transformer (or a static token table) + pooling + optional projection + optional
L2 normalisation, read from and written as sentence-transformers folders.

    Encoder        = transformers AutoModel -> pooling (mean | cls | lasttoken) -> [Linear] -> [L2 normalise]
    StaticEncoder  = token-embedding table, mean over the text's tokens (model2vec's shape) -> [Linear] -> [normalise]

Both map (input_ids, attention_mask) (B, T) to embeddings (B, D), so methods treat them alike, and both
know how they read text (`tokenize`, `encode`). The order pooling -> projection -> normalisation is
sentence-transformers' module order (Pooling, Dense, Normalize) and LEAF's
y = Norm(Linear(MeanPool(Transformer(x)))).

Folders read by `load_sentence_encoder`:
  - a sentence-transformers folder: `modules.json` listing Transformer (or StaticEmbedding), Pooling
    (`1_Pooling/config.json`: exactly one of pooling_mode_mean_tokens / pooling_mode_cls_token /
    pooling_mode_lasttoken), an optional Dense without activation (`2_Dense/config.json` +
    model.safetensors) and an optional Normalize (whose folder may be missing: it holds nothing);
    `sentence_bert_config.json` gives max_seq_length and do_lower_case;
  - a plain Hugging Face encoder folder (config.json, no modules.json): mean pooling, no projection,
    no normalisation, max length min(max_position_embeddings, tokenizer.model_max_length), which is
    what sentence-transformers itself builds from such a folder.
Anything else (max / weighted pooling, a Dense with an activation, other modules) is refused with one
line naming it. Texts are tokenized as given (sentence-transformers v6 does not strip them either).
"""
from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from distill.errors import ConfigError
from distill.fileio import atomic_write_text
from distill.models.io import read_state_dict
from distill.modes import eval_mode
from distill.progress import progress_bar
from distill.train.checkpoint import save_tensors

POOLING_MODES = ("mean", "cls", "lasttoken")
POOLING_KEYS = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls",
                "pooling_mode_lasttoken": "lasttoken"}
UNSUPPORTED_POOLING = ("pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens",
                       "pooling_mode_weightedmean_tokens")
IDENTITY = "torch.nn.modules.linear.Identity"
ST_TYPE = "sentence_transformers.models.{}"  # the classic names, which every sentence-transformers version loads
MODULE_ORDER = re.compile(r"(Transformer Pooling|StaticEmbedding)( Dense)?( Normalize)?")


def transformers_module() -> Any:
    try:
        import transformers
    except ImportError:
        raise ConfigError("sentence encoders need transformers: pip install 'distill[llm]'") from None
    return transformers


# ----------------------------------------------------------------------------- pooling

def pool(hidden: Tensor, attention_mask: Tensor, mode: str) -> Tensor:
    """Token states (B, T, H) and mask (B, T) -> (B, H).

    mean: average over positions where the mask is 1 (an all-zero row gives 0); cls: position 0;
    lasttoken: the last position whose mask is 1 (right or left padding alike), as sentence-transformers.
    """
    mask = attention_mask.to(hidden.dtype).unsqueeze(-1)
    if mode == "mean":
        return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
    if mode == "cls":
        return hidden[:, 0]
    if mode == "lasttoken":
        positions = torch.arange(hidden.shape[1], device=hidden.device)
        last = (attention_mask.bool() * (positions + 1)).argmax(1)  # highest position with mask 1; 0 if none
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    raise ConfigError(f"pooling = {mode!r}: expected one of {', '.join(POOLING_MODES)}")


# ----------------------------------------------------------------------------- encoders

class TextEncoder(nn.Module):
    """What every sentence encoder shares: the projection / normalisation tail, the tokenizer, `encode`.

    Attributes:
        projection: an `nn.Linear` (pooled width -> output width) or None.
        normalize: L2-normalise the output.
        tokenizer: a Hugging Face tokenizer (a plain attribute: not a module, never in the state dict).
        max_length: tokens kept per text (None: no truncation).
    """

    def __init__(self, *, projection: nn.Linear | None, normalize: bool, tokenizer: Any, max_length: int | None):
        super().__init__()
        self.projection = projection
        self.normalize = normalize
        self.tokenizer = tokenizer
        self.max_length = max_length

    @property
    def pooled_dim(self) -> int:
        raise NotImplementedError

    @property
    def dim(self) -> int:
        """Width of the output embeddings."""
        return self.projection.out_features if self.projection is not None else self.pooled_dim

    def finish(self, pooled: Tensor) -> Tensor:
        out = self.projection(pooled) if self.projection is not None else pooled
        return nn.functional.normalize(out, p=2, dim=-1) if self.normalize else out

    def tokenize(self, texts: Sequence[str], tokenizer: Any = None, max_length: int | None = None) -> dict[str, Tensor]:
        raise NotImplementedError

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int = 32, tokenizer: Any = None, max_length: int | None = None,
               progress: bool = False) -> Tensor:
        """(N, D) float32 CPU embeddings of `texts`, in eval mode without gradients (the mode is restored)."""
        device = next(self.parameters()).device
        out = []
        with eval_mode(self):
            for start in progress_bar(range(0, len(texts), batch_size), desc="encode", disable=not progress):
                batch = self.tokenize(list(texts[start:start + batch_size]), tokenizer, max_length)
                out.append(self(batch["input_ids"].to(device), batch["attention_mask"].to(device)).float().cpu())
        return torch.cat(out) if out else torch.empty(0, self.dim)


class Encoder(TextEncoder):
    """A transformers encoder with pooling: (input_ids, attention_mask) (B, T) -> (B, D)."""

    def __init__(self, backbone: nn.Module, *, pooling: str = "mean", projection: nn.Linear | None = None,
                 normalize: bool = False, tokenizer: Any = None, max_length: int | None = None,
                 do_lower_case: bool = False):
        super().__init__(projection=projection, normalize=normalize, tokenizer=tokenizer, max_length=max_length)
        if pooling not in POOLING_MODES:
            raise ConfigError(f"pooling = {pooling!r}: expected one of {', '.join(POOLING_MODES)}")
        self.backbone, self.pooling, self.do_lower_case = backbone, pooling, do_lower_case

    @property
    def pooled_dim(self) -> int:
        return int(self.backbone.config.hidden_size)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.finish(pool(hidden, attention_mask, self.pooling))

    def tokenize(self, texts: Sequence[str], tokenizer: Any = None, max_length: int | None = None) -> dict[str, Tensor]:
        """Padded ids and mask with the tokenizer's special tokens, cut to `max_length` (default: the encoder's)."""
        tokenizer = tokenizer or self.tokenizer
        texts = [t.lower() for t in texts] if self.do_lower_case else list(texts)
        length = max_length or self.max_length
        out = tokenizer(texts, padding=True, truncation=length is not None, max_length=length, return_tensors="pt")
        return {"input_ids": out["input_ids"], "attention_mask": out["attention_mask"]}


STATIC_ENCODE_BATCH = 1024  # texts per tokenizer call when a static encoder encodes (model2vec's default too)


class StaticEncoder(TextEncoder):
    """A static token-embedding table averaged over a text's tokens (no special tokens, no truncation):
    sentence-transformers' StaticEmbedding / model2vec. The table is `embedding.weight` (V, E), the
    state-dict key StaticEmbedding reads."""

    def __init__(self, embedding: nn.EmbeddingBag, *, projection: nn.Linear | None = None, normalize: bool = False,
                 tokenizer: Any = None):
        super().__init__(projection=projection, normalize=normalize, tokenizer=tokenizer, max_length=None)
        if embedding.mode != "mean":
            raise ConfigError(f"a static encoder averages its tokens: EmbeddingBag mode {embedding.mode!r}")
        self.embedding = embedding

    @property
    def pooled_dim(self) -> int:
        return int(self.embedding.embedding_dim)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        valid = attention_mask.bool()
        return self.pooled_bag(input_ids[valid], valid.sum(1))

    def pooled_bag(self, flat_ids: Tensor, counts: Tensor) -> Tensor:
        """(B, D) embeddings of B texts whose ids lie end to end in `flat_ids`, `counts` (B,) ids each."""
        offsets = (torch.cumsum(counts, 0) - counts).to(flat_ids.device)
        return self.finish(self.embedding(flat_ids, offsets))

    def token_rows(self, texts: Sequence[str], tokenizer: Any = None, max_length: int | None = None) -> list[list[int]]:
        """Each text's ids without special tokens (cut to `max_length` if given)."""
        tokenizer = tokenizer or self.tokenizer
        backend = self.plain_backend(tokenizer)
        if backend is not None:  # the same ids as tokenizer(...) gives, without offsets or Python objects: faster
            rows = [e.ids for e in backend.encode_batch_fast(list(texts), add_special_tokens=False)]
        else:
            rows = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return [r[:max_length] for r in rows] if max_length else rows

    def plain_backend(self, tokenizer: Any) -> Any:
        """A copy of a fast tokenizer's Rust tokenizer with padding and truncation off (None for a slow one).

        A copy, because transformers leaves the padding / truncation of a padded call on the shared backend,
        and a padded row would put pad ids in the average."""
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None or not hasattr(backend, "encode_batch_fast"):
            return None
        cached = getattr(self, "_plain_backend", None)
        if cached is None or cached[0] is not tokenizer:
            plain = type(backend).from_str(backend.to_str())
            plain.no_padding()
            plain.no_truncation()
            self._plain_backend = cached = (tokenizer, plain)
        return cached[1]

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int = 32, tokenizer: Any = None, max_length: int | None = None,
               progress: bool = False) -> Tensor:
        """(N, D) float32 embeddings, as `TextEncoder.encode` gives, without the padded (B, T) ids: the flat ids
        go straight to the bag. A text's embedding does not depend on its batch, so batches are large."""
        device = self.embedding.weight.device
        step = max(batch_size, STATIC_ENCODE_BATCH)
        out = []
        with eval_mode(self):
            for start in progress_bar(range(0, len(texts), step), desc="encode", disable=not progress):
                rows = self.token_rows(texts[start:start + step], tokenizer, max_length)
                counts = torch.tensor([len(r) for r in rows])
                ids = torch.tensor([i for r in rows for i in r], dtype=torch.long)
                out.append(self.pooled_bag(ids.to(device), counts).float().cpu())
        return torch.cat(out) if out else torch.empty(0, self.dim)

    def tokenize(self, texts: Sequence[str], tokenizer: Any = None, max_length: int | None = None) -> dict[str, Tensor]:
        """Right-padded ids (pad id 0, masked out) without special tokens; `max_length` truncates if given."""
        rows = self.token_rows(texts, tokenizer, max_length)
        ids = torch.zeros(len(rows), max([len(r) for r in rows] + [1]), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for b, row in enumerate(rows):
            ids[b, :len(row)], mask[b, :len(row)] = torch.tensor(row, dtype=torch.long), 1
        return {"input_ids": ids, "attention_mask": mask}


# ----------------------------------------------------------------------------- loading

def load_sentence_encoder(path: str | Path, dtype: str = "float32") -> TextEncoder:
    """An `Encoder` / `StaticEncoder` from a sentence-transformers folder or a plain HF encoder folder."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ConfigError(f"sentence encoder {str(path)!r} is not a folder")
    if not (root / "modules.json").is_file():
        if (root / "config.json").is_file():
            return load_transformer(root, dtype)
        raise ConfigError(f"sentence encoder {str(path)!r} has neither modules.json nor config.json")
    modules = read_json(root / "modules.json")
    kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
    if not MODULE_ORDER.fullmatch(" ".join(kinds)):
        raise ConfigError(f"sentence encoder {str(path)!r}: modules {kinds} are not supported; distill reads "
                          "Transformer, Pooling (or StaticEmbedding), an optional Dense and an optional Normalize")
    folders = {kind: root / m.get("path", "") for kind, m in zip(kinds, modules)}
    if "StaticEmbedding" in folders:
        encoder: TextEncoder = load_static(folders["StaticEmbedding"])
    else:
        encoder = load_transformer(folders["Transformer"], dtype, read_pooling(folders["Pooling"]))
    if "Dense" in folders:
        encoder.projection = read_dense(folders["Dense"], encoder.pooled_dim)
    encoder.normalize = "Normalize" in folders
    return encoder.to(getattr(torch, dtype))


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: unreadable JSON ({str(exc).splitlines()[0]})") from None


def read_pooling(folder: Path) -> str:
    """The one pooling mode of a Pooling config (ConfigError for none, several, or an unsupported one)."""
    cfg = read_json(folder / "config.json")
    if cfg.get("pooling_mode"):  # the string form some configs use
        found = [str(cfg["pooling_mode"])]
    else:
        found = [k for k in UNSUPPORTED_POOLING if cfg.get(k)] + [m for k, m in POOLING_KEYS.items() if cfg.get(k)]
    if len(found) != 1 or found[0] not in POOLING_MODES:
        raise ConfigError(f"{folder / 'config.json'}: pooling {found or 'none'} is not supported; distill reads "
                          "exactly one of pooling_mode_mean_tokens, pooling_mode_cls_token, pooling_mode_lasttoken")
    return found[0]


def load_transformer(folder: Path, dtype: str = "float32", pooling: str = "mean") -> Encoder:
    """The Transformer module: AutoModel + tokenizer + sentence_bert_config.json (if any)."""
    tf = transformers_module()
    try:
        backbone = tf.AutoModel.from_pretrained(str(folder), dtype=getattr(torch, dtype), local_files_only=True)
        tokenizer = tf.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load the encoder in {str(folder)!r}: {str(exc).splitlines()[0]}") from None
    settings_file = folder / "sentence_bert_config.json"
    settings = read_json(settings_file) if settings_file.is_file() else {}
    max_length = settings.get("max_seq_length") or min(int(getattr(backbone.config, "max_position_embeddings", 512)),
                                                       int(tokenizer.model_max_length))
    return Encoder(backbone, pooling=pooling, tokenizer=tokenizer, max_length=int(max_length),
                   do_lower_case=bool(settings.get("do_lower_case", False)))


def load_static(folder: Path) -> StaticEncoder:
    """The StaticEmbedding module: tokenizer.json + model.safetensors (`embedding.weight`, or model2vec's `embeddings`)."""
    tf = transformers_module()
    from tokenizers import Tokenizer  # shipped with transformers
    state = read_state_dict(weights_file(folder))
    table = state.get("embedding.weight", state.get("embeddings"))
    if table is None:
        raise ConfigError(f"{folder}: the static embedding weights hold no 'embedding.weight' table")
    tokenizer = tf.PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_file(str(folder / "tokenizer.json")))
    return StaticEncoder(nn.EmbeddingBag.from_pretrained(table.float(), freeze=False, mode="mean"), tokenizer=tokenizer)


def weights_file(folder: Path) -> Path:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return folder / name
    raise ConfigError(f"{folder}: no model.safetensors or pytorch_model.bin")


def read_dense(folder: Path, in_features: int) -> nn.Linear:
    """A Dense module without activation as an `nn.Linear`."""
    cfg = read_json(folder / "config.json")
    if cfg.get("activation_function", IDENTITY) != IDENTITY:
        raise ConfigError(f"{folder / 'config.json'}: activation_function {cfg['activation_function']!r}; distill "
                          f"reads Dense layers without activation ({IDENTITY}) only")
    if int(cfg["in_features"]) != in_features:
        raise ConfigError(f"{folder / 'config.json'}: in_features {cfg['in_features']} but the pooled width is "
                          f"{in_features}")
    linear = nn.Linear(in_features, int(cfg["out_features"]), bias=bool(cfg.get("bias", True)))
    state = read_state_dict(weights_file(folder))
    linear.load_state_dict({k.removeprefix("linear."): v for k, v in state.items()})
    return linear


# ----------------------------------------------------------------------------- export

def export_sentence_transformers(encoder: TextEncoder, tokenizer: Any, folder: str | Path) -> Path:
    """Write `encoder` as a folder `sentence_transformers.SentenceTransformer(folder)` loads (and
    `load_sentence_encoder` reads back): module 0 (the transformer at the root, or 0_StaticEmbedding/),
    1_Pooling/ (transformers only), then <i>_Dense/ when there is a projection and <i>_Normalize/
    when normalised. `tokenizer` defaults to the encoder's. The folder is written beside and then
    swapped in, so it is either the old one or the complete new one; anything in it is replaced."""
    folder = Path(folder)
    tokenizer = tokenizer or encoder.tokenizer
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    modules = write_static(encoder, tokenizer, tmp) if isinstance(encoder, StaticEncoder) \
        else write_transformer(encoder, tokenizer, tmp)
    if encoder.projection is not None:
        modules.append(write_dense(encoder.projection, tmp / f"{len(modules)}_Dense"))
    if encoder.normalize:
        (tmp / f"{len(modules)}_Normalize").mkdir()  # Normalize saves nothing; sentence-transformers makes the folder
        modules.append(f"{len(modules)}_Normalize")
    entries = [{"idx": i, "name": str(i), "path": "" if path == "." else path,
                "type": ST_TYPE.format(path.split("_", 1)[-1] if path != "." else "Transformer")}
               for i, path in enumerate(modules)]
    atomic_write_text(tmp / "modules.json", json.dumps(entries, indent=2))
    settings = {"prompts": {}, "default_prompt_name": None, "similarity_fn_name": "cosine"}
    atomic_write_text(tmp / "config_sentence_transformers.json", json.dumps(settings, indent=2))
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)
    return folder


def write_transformer(encoder: Encoder, tokenizer: Any, folder: Path) -> list[str]:
    """The backbone and tokenizer at the root, with sentence_bert_config.json, then 1_Pooling/."""
    encoder.backbone.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    settings = {"max_seq_length": encoder.max_length, "do_lower_case": encoder.do_lower_case}
    atomic_write_text(folder / "sentence_bert_config.json", json.dumps(settings, indent=2))
    (folder / "1_Pooling").mkdir()
    pooling = {"word_embedding_dimension": encoder.pooled_dim,
               **{key: encoder.pooling == mode for key, mode in POOLING_KEYS.items()},
               **{key: False for key in UNSUPPORTED_POOLING}, "include_prompt": True}
    atomic_write_text(folder / "1_Pooling" / "config.json", json.dumps(pooling, indent=2))
    return [".", "1_Pooling"]


def write_static(encoder: StaticEncoder, tokenizer: Any, folder: Path) -> list[str]:
    """0_StaticEmbedding/: `embedding.weight` and the backend tokenizer without padding or truncation."""
    sub = folder / "0_StaticEmbedding"
    sub.mkdir()
    table = encoder.embedding.weight.detach().float().contiguous()
    save_tensors({"embedding.weight": table}, sub / "model.safetensors")
    backend = copy.deepcopy(tokenizer.backend_tokenizer)
    backend.no_padding()
    backend.no_truncation()
    backend.save(str(sub / "tokenizer.json"))
    return ["0_StaticEmbedding"]


def write_dense(linear: nn.Linear, folder: Path) -> str:
    folder.mkdir()
    cfg = {"in_features": linear.in_features, "out_features": linear.out_features, "bias": linear.bias is not None,
           "activation_function": IDENTITY}
    atomic_write_text(folder / "config.json", json.dumps(cfg, indent=2))
    save_tensors({f"linear.{k}": v.detach().float().contiguous() for k, v in linear.state_dict().items()},
                 folder / "model.safetensors")
    return folder.name
