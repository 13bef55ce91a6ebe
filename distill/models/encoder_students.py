"""Students for sentence-embedding distillation, each an `Encoder` / `StaticEncoder` whose output width
is the teacher's (so LEAF-style losses compare embeddings directly):

  - `pretrained_student`: a pretrained small encoder (e.g. all-MiniLM-L6-v2, 384-d) plus a learned
    projection `nn.Linear(d_s, d_t)` when the widths differ (to 768-d for all-mpnet-base-v2). The
    projection is part of the student and is exported as its Dense module.
  - `config_student`: a randomly initialised copy of a base encoder's architecture with config fields
    replaced (`{num_hidden_layers: 2, hidden_size: 128, ...}`, like the causal-LM `student.config`),
    keeping the base's tokenizer, pooling and normalisation.
  - `static_student`: a token-embedding table averaged over the tokens (model2vec's shape), random or
    initialised from a teacher's input-embedding matrix reduced by PCA.

Projection initialisation (`init`):
  - "orthogonal": `nn.init.orthogonal_` on the (d_t, d_s) weight, zero bias. With d_t >= d_s the
    columns are orthonormal, so the map is an isometry into the teacher's space (norms and angles of
    the student's pooled embeddings are kept) and training starts from the student's own geometry.
  - "least_squares": W, b minimising sum ||W f + b - t||^2 + ridge * ||W||^2 over paired student pooled
    features f and teacher embeddings t (`fit_projection`, closed form), so training starts from the
    best linear map between the two spaces; the caller passes the pairs (e.g. a few hundred texts).
"""
from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

from distill.errors import ConfigError
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
    projection, normalize = encoder.projection, encoder.normalize
    encoder.projection, encoder.normalize = None, False
    try:
        return encoder.encode(texts, batch_size=batch_size)
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


def pca_table(table: Tensor, dim: int) -> Tensor:
    """(V, H) -> (V, dim): the rows centred and projected onto their top-`dim` principal directions."""
    if dim > min(table.shape):
        raise ConfigError(f"student.dim = {dim}: PCA of a {tuple(table.shape)} embedding table keeps at most "
                          f"{min(table.shape)} dimensions")
    centred = table.double() - table.double().mean(0)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    return (centred @ vh[:dim].T).float()


def static_student(tokenizer: Any, dim: int, output_dim: int, *, teacher: Encoder | None = None,
                   normalize: bool = True, seed: int = 0) -> StaticEncoder:
    """A static student over `tokenizer`'s vocabulary with `dim`-wide token vectors, projected to `output_dim`.

    With `teacher`, the table is the teacher's input-embedding matrix (its tokenizer must be `tokenizer`),
    centred and reduced to `dim` by PCA (`pca_table`). model2vec instead embeds every token with a full
    teacher forward and re-weights by token frequency (Zipf / SIF); that is not done here. Without a
    teacher the table is N(0, 1) like `nn.EmbeddingBag`'s default.
    """
    vocab = len(tokenizer)
    torch.manual_seed(seed)
    if teacher is None:
        bag = nn.EmbeddingBag(vocab, dim, mode="mean")
    else:
        table = teacher.backbone.get_input_embeddings().weight.detach()
        if table.shape[0] < vocab or teacher.tokenizer.get_vocab() != tokenizer.get_vocab():
            raise ConfigError("student: a static student initialised from the teacher needs the teacher's tokenizer")
        bag = nn.EmbeddingBag.from_pretrained(pca_table(table[:vocab], dim), freeze=False, mode="mean")
    student = StaticEncoder(bag, normalize=normalize, tokenizer=tokenizer)
    return attach_projection(student, output_dim, "orthogonal", seed=seed)
