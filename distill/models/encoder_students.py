"""Students for sentence-embedding distillation, each an `Encoder` / `StaticEncoder` whose output width
is the teacher's (so LEAF-style losses compare embeddings directly):

  - `pretrained_student`: a pretrained small encoder (e.g. all-MiniLM-L6-v2, 384-d) plus a learned
    projection `nn.Linear(d_s, d_t)` when the widths differ (to 768-d for all-mpnet-base-v2). The
    projection is part of the student and is exported as its Dense module.
  - `config_student`: a randomly initialised copy of a base encoder's architecture with config fields
    replaced (`{num_hidden_layers: 2, hidden_size: 128, ...}`, like the causal-LM `student.config`),
    keeping the base's tokenizer, pooling and normalisation.
  - `static_student`: a token-embedding table averaged over the tokens (model2vec's shape), random or
    initialised from the teacher: its output for every token alone (model2vec.distill's table) or its
    input-embedding matrix, reduced by PCA and SIF-weighted.

Projection initialisation (`init`):
  - "orthogonal": `nn.init.orthogonal_` on the (d_t, d_s) weight, zero bias. With d_t >= d_s the
    columns are orthonormal, so the map is an isometry into the teacher's space (norms and angles of
    the student's pooled embeddings are kept) and training starts from the student's own geometry.
  - "least_squares": W, b minimising sum ||W f + b - t||^2 + ridge * ||W||^2 over paired student pooled
    features f and teacher embeddings t (`fit_projection`, closed form), so training starts from the
    best linear map between the two spaces; the caller passes the pairs (e.g. a few hundred texts).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Literal

import torch
from torch import Tensor, nn

from distill.errors import ConfigError
from distill.modes import eval_mode
from distill.progress import progress_bar
from distill.models.encoders import Encoder, StaticEncoder, TextEncoder, load_sentence_encoder, transformers_module

ProjectionInit = Literal["orthogonal", "least_squares"]


def fit_projection(features: Tensor, targets: Tensor, ridge: float = 1e-3) -> nn.Linear:
    """nn.Linear(d_s, d_t) minimising ||W f + b - t||^2 + ridge ||W||^2 (bias unpenalised) over the rows of
    `features` (N, d_s) and `targets` (N, d_t), solved in float64 on centred data."""
    f, t = features.double(), targets.double()
    f_mean, t_mean = f.mean(0), t.mean(0)
    fc, tc = f - f_mean, t - t_mean
    gram = fc.T @ fc + ridge * torch.eye(f.shape[1], dtype=f.dtype)
    weight = torch.linalg.solve(gram, fc.T @ tc).T  # (d_t, d_s)
    linear = nn.Linear(f.shape[1], t.shape[1])
    with torch.no_grad():
        linear.weight.copy_(weight)
        linear.bias.copy_(t_mean - weight @ f_mean)
    return linear


def orthogonal_projection(in_features: int, out_features: int, seed: int = 0) -> nn.Linear:
    """nn.Linear(in, out) with an orthogonal weight (seeded) and zero bias."""
    linear = nn.Linear(in_features, out_features)
    with torch.no_grad():
        nn.init.orthogonal_(linear.weight, generator=torch.Generator().manual_seed(seed))
        linear.bias.zero_()
    return linear


def attach_projection(encoder: TextEncoder, dim: int, init: ProjectionInit = "orthogonal",
                      pairs: tuple[Tensor, Tensor] | None = None, seed: int = 0) -> TextEncoder:
    """Give `encoder` a projection to width `dim` when its pooled width differs (returns it, changed in place).

    `pairs` = (pooled student features (N, d_s), teacher embeddings (N, dim)) is needed for "least_squares".
    An encoder that already projects must project to `dim` already.
    """
    if encoder.projection is not None or encoder.pooled_dim == dim:
        if encoder.dim != dim:
            raise ConfigError(f"student: its Dense layer outputs {encoder.dim} dimensions but the teacher's have {dim}")
        return encoder
    if init == "least_squares":
        if pairs is None:
            raise ConfigError("student.projection_init = 'least_squares' needs (student features, teacher "
                              "embeddings) pairs")
        encoder.projection = fit_projection(*pairs)
    elif init == "orthogonal":
        encoder.projection = orthogonal_projection(encoder.pooled_dim, dim, seed)
    else:
        raise ConfigError(f"student.projection_init = {init!r}: expected 'orthogonal' or 'least_squares'")
    return encoder


@torch.no_grad()
def pooled_features(encoder: TextEncoder, texts: list[str], batch_size: int = 32) -> Tensor:
    """(N, pooled_dim) embeddings before the projection and normalisation (what `fit_projection` maps)."""
    with without_head(encoder):
        return encoder.encode(texts, batch_size=batch_size)


@contextmanager
def without_head(encoder: TextEncoder) -> Iterator[TextEncoder]:
    """`encoder` with its projection and normalisation off (its pooled output), restored on exit."""
    projection, normalize = encoder.projection, encoder.normalize
    encoder.projection, encoder.normalize = None, False
    try:
        yield encoder
    finally:
        encoder.projection, encoder.normalize = projection, normalize


def pretrained_student(path: str, dim: int, init: ProjectionInit = "orthogonal",
                       pairs: tuple[Tensor, Tensor] | None = None, seed: int = 0) -> TextEncoder:
    """A pretrained encoder folder (sentence-transformers or plain HF), projected to width `dim` if needed."""
    return attach_projection(load_sentence_encoder(path), dim, init, pairs, seed)


def config_student(base: str, overrides: dict[str, Any], dim: int, seed: int = 0) -> Encoder:
    """A random-init encoder of `base`'s architecture with config fields replaced, projected (orthogonally)
    to `dim` when its width differs; tokenizer, pooling, normalisation and max length are the base's."""
    reference = load_sentence_encoder(base)
    if not isinstance(reference, Encoder):
        raise ConfigError(f"student.config: {base!r} is a static encoder; a config student needs a transformer")
    config = reference.backbone.config
    unknown = [k for k in overrides if not hasattr(config, k)]
    if unknown:
        raise ConfigError(f"student.config: {unknown[0]!r} is not a field of {type(config).__name__}")
    torch.manual_seed(seed)
    new_config = config.__class__.from_dict({**config.to_dict(), **overrides})
    backbone = transformers_module().AutoModel.from_config(new_config)
    student = Encoder(backbone, pooling=reference.pooling, normalize=reference.normalize, tokenizer=reference.tokenizer,
                      max_length=reference.max_length, do_lower_case=reference.do_lower_case)
    return attach_projection(student, dim, "orthogonal", seed=seed)


def special_frame(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after a text's own ([CLS] / [SEP], <s> / </s>, or none)."""
    framed = tokenizer("a")["input_ids"]
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    for start in range(len(framed) - len(bare) + 1):
        if framed[start:start + len(bare)] == bare:
            return framed[:start], framed[start + len(bare):]
    raise ConfigError("student.static.teacher_table = 'outputs': the teacher's tokenizer does not keep a text's "
                      "own ids between its special tokens")


@torch.no_grad()
def token_output_table(teacher: Encoder, vocab: int, batch_size: int = 256, progress: bool = True) -> Tensor:
    """(vocab, H): the teacher's pooled output (before its projection and normalisation) for each token id
    alone between the tokenizer's special tokens, as model2vec.distill embeds its vocabulary."""
    prefix, suffix = special_frame(teacher.tokenizer)
    out = []
    with eval_mode(teacher), without_head(teacher):
        for start in progress_bar(range(0, vocab, batch_size), desc="teacher (vocabulary)", disable=not progress):
            ids = torch.tensor([prefix + [i] + suffix for i in range(start, min(start + batch_size, vocab))])
            out.append(teacher(ids, torch.ones_like(ids)).float())
    return torch.cat(out)


def sif_weights(vocab: int, coefficient: float) -> Tensor:
    """(vocab,) SIF weights a / (a + p(token)), with p from Zipf's law over the token ids' order (a
    tokenizer's ids run roughly from frequent to rare): "A Simple but Tough-to-Beat Baseline for Sentence
    Embeddings" (Arora et al., 2017), as model2vec.distill applies it (p_i proportional to 1 / (i + 2))."""
    inverse_rank = 1.0 / torch.arange(2, vocab + 2, dtype=torch.float64)
    proba = inverse_rank / inverse_rank.sum()
    return (coefficient / (coefficient + proba)).float()


def pca_table(table: Tensor, dim: int) -> Tensor:
    """(V, H) -> (V, dim): the rows centred and projected onto their top-`dim` principal directions."""
    return pca_fit(table, dim)[0]


def pca_fit(table: Tensor, dim: int) -> tuple[Tensor, Tensor, Tensor]:
    """(coordinates (V, dim), components (dim, H), mean (H,)) of `table` (V, H): row v is approximately
    mean + coordinates[v] @ components (exactly when dim is the table's rank)."""
    if dim > min(table.shape):
        raise ConfigError(f"student.dim = {dim}: PCA of a {tuple(table.shape)} embedding table keeps at most "
                          f"{min(table.shape)} dimensions")
    mean = table.double().mean(0)
    centred = table.double() - mean
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    return (centred @ vh[:dim].T).float(), vh[:dim].float(), mean.float()


def back_projection(components: Tensor, mean: Tensor, teacher: Encoder) -> nn.Linear:
    """nn.Linear(dim, D): PCA coordinates back to the teacher's pooled space (mean + c @ components), then
    through the teacher's own projection when it has one, so a static student starts in its output space."""
    weight, bias = components.T.double(), mean.double()  # (H, dim), (H,)
    if teacher.projection is not None:
        w_t, b_t = teacher.projection.weight.detach().double(), teacher.projection.bias
        weight, bias = w_t @ weight, w_t @ bias + (b_t.detach().double() if b_t is not None else 0)
    linear = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        linear.weight.copy_(weight)
        linear.bias.copy_(bias)
    return linear


def static_student(tokenizer: Any, dim: int, output_dim: int, *, teacher: Encoder | None = None,
                   teacher_table: Literal["outputs", "inputs"] = "outputs", sif: float | None = 1e-4,
                   normalize: bool = True, seed: int = 0, progress: bool = True) -> StaticEncoder:
    """A static student over `tokenizer`'s vocabulary with `dim`-wide token vectors, projected to `output_dim`.

    With `teacher` (its tokenizer must be `tokenizer`) the table is, for teacher_table "outputs", the
    teacher's pooled output for every token alone (`token_output_table`: one forward per token, as
    model2vec.distill does), or for "inputs" its input-embedding matrix; centred, reduced to `dim` by PCA
    (`pca_table`) and, when `sif` is given, each row scaled by its SIF weight (`sif_weights`, model2vec's
    default 1e-4). An "outputs" table's projection is the PCA's inverse (through the teacher's own Dense, if
    any), so a one-token text starts at the teacher's embedding of that token; an "inputs" table's is
    orthogonal (input embeddings are not in the output space). Without a teacher the table is N(0, 1) like
    `nn.EmbeddingBag`'s default.
    """
    vocab = len(tokenizer)
    torch.manual_seed(seed)
    if teacher is None:
        bag = nn.EmbeddingBag(vocab, dim, mode="mean")
    else:
        rows = teacher.backbone.get_input_embeddings().weight.shape[0]
        if rows < vocab or teacher.tokenizer.get_vocab() != tokenizer.get_vocab():
            raise ConfigError("student: a static student initialised from the teacher needs the teacher's tokenizer")
        outputs = teacher_table == "outputs"
        table = (token_output_table(teacher, vocab, progress=progress) if outputs
                 else teacher.backbone.get_input_embeddings().weight.detach()[:vocab])
        reduced, components, mean = pca_fit(table, dim)
        if sif is not None:
            reduced = reduced * sif_weights(vocab, sif)[:, None]
        bag = nn.EmbeddingBag.from_pretrained(reduced, freeze=False, mode="mean")
        if outputs and teacher.dim == output_dim:  # the PCA's own inverse: the student starts in the teacher's space
            return StaticEncoder(bag, projection=back_projection(components, mean, teacher), normalize=normalize,
                                 tokenizer=tokenizer)
    student = StaticEncoder(bag, normalize=normalize, tokenizer=tokenizer)
    return attach_projection(student, output_dim, "orthogonal", seed=seed)
