"""Sentence encoders on tiny in-process BERTs: pooling against slow loops, sentence-transformers folders read
(written by hand) and written (our exporter) with equal outputs, students, teacher sources, and, when the
library is installed, `SentenceTransformer(folder).encode` equal to ours."""
import json

import pytest
import torch
from torch import nn

from distill.errors import ConfigError
from distill.models import FrozenTeacher
from distill.models.encoder_students import (attach_projection, config_student, fit_projection, pca_table,
                                             pooled_features, pretrained_student, static_student, token_output_table)
from distill.models.encoders import (Encoder, StaticEncoder, export_sentence_transformers, load_sentence_encoder,
                                     pool)
from distill.models.teacher_sources import LiveEmbeddings, StoredEmbeddings
from tests.models.tiny_encoders import TEXTS, tiny_encoder, wordpiece_tokenizer, write_st_folder_by_hand


@pytest.fixture(scope="module")
def tok():
    return wordpiece_tokenizer()


def slow_pool(hidden, mask, mode):
    rows = []
    for h, m in zip(hidden.tolist(), mask.tolist()):
        valid = [i for i, v in enumerate(m) if v]
        if mode == "mean":
            rows.append([sum(h[i][d] for i in valid) / len(valid) for d in range(len(h[0]))])
        elif mode == "cls":
            rows.append(h[0])
        else:
            rows.append(h[max(valid)])
    return torch.tensor(rows, dtype=torch.float64)


# cls reads position 0, which left padding does not hold
@pytest.mark.parametrize("mode,padding", [("mean", "right"), ("mean", "left"), ("cls", "right"), ("lasttoken", "right"),
                                          ("lasttoken", "left")])
def test_pooling_equals_a_slow_reference(mode, padding):
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(4, 6, 5, generator=g, dtype=torch.float64)
    lengths = [6, 3, 1, 4]
    mask = torch.zeros(4, 6, dtype=torch.long)
    for b, n in enumerate(lengths):
        if padding == "right":
            mask[b, :n] = 1
        else:
            mask[b, 6 - n:] = 1
    torch.testing.assert_close(pool(hidden, mask, mode), slow_pool(hidden, mask, mode))


def test_encoder_forward_is_pool_then_projection_then_normalisation(tok):
    enc = tiny_encoder(tok, pooling="mean", out_dim=24, normalize=True)
    batch = enc.tokenize(TEXTS)
    with torch.no_grad():
        hidden = enc.backbone(**batch).last_hidden_state
        pooled = slow_pool(hidden.double(), batch["attention_mask"], "mean").float()
        expected = nn.functional.normalize(enc.projection(pooled), dim=-1)
        torch.testing.assert_close(enc(batch["input_ids"], batch["attention_mask"]), expected, atol=1e-6, rtol=1e-5)
    assert enc.dim == 24 and enc.pooled_dim == 32


def test_encode_restores_the_mode_and_keeps_no_graph(tok):
    enc = tiny_encoder(tok).train()
    out = enc.encode(TEXTS, batch_size=3)
    assert out.shape == (4, 32) and not out.requires_grad and enc.training
    torch.testing.assert_close(out, enc.eval().encode(TEXTS, batch_size=4), atol=1e-6, rtol=1e-5)  # batch-invariant


@pytest.mark.parametrize("key,mode", [("pooling_mode_mean_tokens", "mean"), ("pooling_mode_cls_token", "cls"),
                                      ("pooling_mode_lasttoken", "lasttoken")])
def test_hand_written_sentence_transformers_folder_loads(tmp_path, tok, key, mode):
    enc = tiny_encoder(tok, pooling=mode, out_dim=16, normalize=True)
    write_st_folder_by_hand(tmp_path / "st", enc, pooling_key=key)  # no 2_Normalize folder, as on the hub
    loaded = load_sentence_encoder(tmp_path / "st")
    assert (loaded.pooling, loaded.normalize, loaded.dim, loaded.max_length) == (mode, True, 16, 32)
    torch.testing.assert_close(loaded.encode(TEXTS), enc.encode(TEXTS), atol=1e-6, rtol=1e-5)


def test_plain_hf_folder_is_mean_pooled_and_unnormalised(tmp_path, tok):
    enc = tiny_encoder(tok)
    enc.backbone.save_pretrained(tmp_path / "hf")
    tok.save_pretrained(tmp_path / "hf")
    loaded = load_sentence_encoder(tmp_path / "hf")
    assert (loaded.pooling, loaded.normalize, loaded.projection, loaded.max_length) == ("mean", False, None, 64)
    torch.testing.assert_close(loaded.encode(TEXTS), enc.encode(TEXTS), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("mode,out_dim,normalize", [("mean", 48, True), ("cls", None, False), ("lasttoken", 16, False)])
def test_export_then_load_gives_equal_embeddings(tmp_path, tok, mode, out_dim, normalize):
    enc = tiny_encoder(tok, pooling=mode, out_dim=out_dim, normalize=normalize)
    folder = export_sentence_transformers(enc, None, tmp_path / "out")
    modules = [m["type"].rsplit(".", 1)[-1] for m in json.loads((folder / "modules.json").read_text())]
    assert modules == ["Transformer", "Pooling"] + ["Dense"] * (out_dim is not None) + ["Normalize"] * normalize
    loaded = load_sentence_encoder(folder)
    torch.testing.assert_close(loaded.encode(TEXTS), enc.encode(TEXTS), atol=1e-6, rtol=1e-5)
    export_sentence_transformers(loaded, None, folder)  # writing over an existing export replaces it
    assert not (tmp_path / ".out.tmp").exists()


def test_static_encoder_mean_of_token_vectors_and_round_trip(tmp_path, tok):
    student = static_student(tok, 12, 20, normalize=True, seed=3)
    rows = tok(TEXTS, add_special_tokens=False)["input_ids"]
    table = student.embedding.weight.detach()
    expected = nn.functional.normalize(student.projection(torch.stack([table[r].mean(0) for r in rows])), dim=-1)
    torch.testing.assert_close(student.encode(TEXTS), expected.detach(), atol=1e-6, rtol=1e-5)
    assert all(tok.cls_token_id not in r for r in student.tokenize(TEXTS)["input_ids"].tolist())
    folder = export_sentence_transformers(student, None, tmp_path / "static")
    loaded = load_sentence_encoder(folder)
    assert isinstance(loaded, StaticEncoder) and loaded.normalize and loaded.dim == 20
    torch.testing.assert_close(loaded.encode(TEXTS), student.encode(TEXTS), atol=1e-6, rtol=1e-5)


def test_unsupported_folders_fail_with_one_line(tmp_path, tok):
    enc = tiny_encoder(tok, out_dim=8)
    write_st_folder_by_hand(tmp_path / "max", enc, pooling_key="pooling_mode_max_tokens")
    with pytest.raises(ConfigError, match="pooling .*pooling_mode_max_tokens"):
        load_sentence_encoder(tmp_path / "max")
    write_st_folder_by_hand(tmp_path / "tanh", enc)
    cfg = json.loads((tmp_path / "tanh" / "2_Dense" / "config.json").read_text())
    tanh = {**cfg, "activation_function": "torch.nn.modules.activation.Tanh"}
    (tmp_path / "tanh" / "2_Dense" / "config.json").write_text(json.dumps(tanh))
    with pytest.raises(ConfigError, match="activation_function"):
        load_sentence_encoder(tmp_path / "tanh")
    modules = json.loads((tmp_path / "tanh" / "modules.json").read_text())
    extra = {"path": "x", "type": "sentence_transformers.models.LayerNorm"}
    (tmp_path / "tanh" / "modules.json").write_text(json.dumps(modules + [extra]))
    with pytest.raises(ConfigError, match="LayerNorm"):
        load_sentence_encoder(tmp_path / "tanh")
    with pytest.raises(ConfigError, match="not a folder"):
        load_sentence_encoder(tmp_path / "missing")


# ----------------------------------------------------------------------------- students

def test_orthogonal_projection_is_an_isometry_and_least_squares_recovers_a_linear_map(tok):
    student = attach_projection(tiny_encoder(tok, hidden=16), 40)
    w = student.projection.weight.detach()
    torch.testing.assert_close(w.T @ w, torch.eye(16), atol=1e-5, rtol=0)
    g = torch.Generator().manual_seed(1)
    features, true_w = torch.randn(200, 16, generator=g), torch.randn(40, 16, generator=g)
    true_b = torch.randn(40, generator=g)
    fitted = fit_projection(features, features @ true_w.T + true_b, ridge=0.0)
    torch.testing.assert_close(fitted.weight.detach(), true_w, atol=1e-4, rtol=0)
    torch.testing.assert_close(fitted.bias.detach(), true_b, atol=1e-4, rtol=0)
    with pytest.raises(ConfigError, match="least_squares"):
        attach_projection(tiny_encoder(tok, hidden=16), 40, "least_squares")


def test_pretrained_student_with_least_squares_projection(tmp_path, tok):
    teacher = tiny_encoder(tok, hidden=32, normalize=True, seed=5)
    small = tiny_encoder(tok, hidden=16, seed=6)
    export_sentence_transformers(small, None, tmp_path / "small")
    pairs = (pooled_features(small, TEXTS), teacher.encode(TEXTS))
    student = pretrained_student(str(tmp_path / "small"), 32, "least_squares", pairs)
    assert student.dim == 32 and isinstance(student.projection, nn.Linear)
    assert pretrained_student(str(tmp_path / "small"), 16).projection is None  # same width: no projection


def test_config_student_is_a_smaller_random_copy(tmp_path, tok):
    export_sentence_transformers(tiny_encoder(tok, pooling="cls", normalize=True), None, tmp_path / "base")
    student = config_student(str(tmp_path / "base"), {"num_hidden_layers": 1, "hidden_size": 16,
                                                      "intermediate_size": 32}, dim=32)
    assert student.backbone.config.num_hidden_layers == 1 and (student.pooling, student.normalize) == ("cls", True)
    assert student.dim == 32 and student.encode(TEXTS).shape == (4, 32)
    with pytest.raises(ConfigError, match="hiden_size"):
        config_student(str(tmp_path / "base"), {"hiden_size": 16}, dim=32)


def test_static_student_from_the_teacher_is_its_embedding_matrix_under_pca(tok):
    teacher = tiny_encoder(tok, hidden=32)
    student = static_student(tok, 8, 32, teacher=teacher, teacher_table="inputs", sif=None)
    table = teacher.backbone.get_input_embeddings().weight.detach().double()
    centred = table - table.mean(0)
    eigvals, eigvecs = torch.linalg.eigh(centred.T @ centred)
    top = eigvecs[:, eigvals.argsort(descending=True)[:8]]
    reduced = student.embedding.weight.detach().double()
    # each PCA coordinate equals the projection on an eigenvector up to its sign
    torch.testing.assert_close(reduced.abs(), (centred @ top).abs(), atol=1e-4, rtol=1e-4)
    assert torch.allclose(pca_table(table.float(), 8).double(), reduced, atol=1e-6)
    with pytest.raises(ConfigError, match="PCA"):
        pca_table(table.float(), 64)


def test_static_student_from_the_teacher_outputs_is_each_token_embedded_alone_then_pca_and_sif(tok):
    teacher = tiny_encoder(tok, hidden=32, out_dim=24, normalize=True)  # the table skips projection and norm
    cls, sep = tok.cls_token_id, tok.sep_token_id
    rows = []
    with torch.no_grad():
        for i in range(len(tok)):  # slow reference: one forward per token, mean over its 3 positions
            ids = torch.tensor([[cls, i, sep]])
            rows.append(teacher.backbone(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state[0].mean(0))
    outputs = torch.stack(rows).double()
    assert torch.allclose(token_output_table(teacher, len(tok), batch_size=7, progress=False).double(), outputs,
                          atol=1e-5)
    a, ranks = 1e-3, torch.arange(len(tok), dtype=torch.float64)
    harmonic = sum(1.0 / (k + 2) for k in range(len(tok)))
    weights = a / (a + (1.0 / (ranks + 2)) / harmonic)
    student = static_student(tok, 8, 24, teacher=teacher, sif=a)
    centred = outputs - outputs.mean(0)
    eigvals, eigvecs = torch.linalg.eigh(centred.T @ centred)
    expected = (centred @ eigvecs[:, eigvals.argsort(descending=True)[:8]]) * weights[:, None]
    torch.testing.assert_close(student.embedding.weight.detach().double().abs(), expected.abs(), atol=1e-4, rtol=1e-3)
    assert student.dim == 24 and student.encode(TEXTS).shape == (4, 24)
    # at full rank and without SIF, a one-token text starts exactly at the teacher's output for that token
    full = static_student(tok, 32, 24, teacher=teacher, sif=None, normalize=False)
    ids = torch.tensor([[cls, 57, sep]])
    with torch.no_grad():
        expect = teacher.projection(teacher.backbone(input_ids=ids).last_hidden_state[0].mean(0))
        got = full(torch.tensor([[57]]), torch.ones(1, 1, dtype=torch.long))[0]
    torch.testing.assert_close(got, expect, atol=1e-4, rtol=1e-4)


def test_static_encode_equals_the_padded_forward_even_after_a_padded_call_on_its_tokenizer(tok):
    student = static_student(tok, 12, 20, normalize=True)
    tok(TEXTS, padding="max_length", max_length=40, truncation=True)  # transformers leaves this on the backend
    tokens = student.tokenize(TEXTS)
    assert tokens["attention_mask"].sum(1).tolist() == [len(tok(t, add_special_tokens=False)["input_ids"])
                                                        for t in TEXTS]
    torch.testing.assert_close(student.encode(TEXTS, batch_size=2),
                               student(tokens["input_ids"], tokens["attention_mask"]), atol=1e-6, rtol=0)


# ----------------------------------------------------------------------------- teacher sources

def test_live_and_stored_teacher_embeddings(tok):
    teacher = tiny_encoder(tok, out_dim=24, normalize=True)
    source = LiveEmbeddings(FrozenTeacher(teacher))
    batch = {"text": TEXTS, "index": torch.tensor([3, 0, 2, 1])}
    live = source.embeddings(batch)
    torch.testing.assert_close(live, teacher.encode(TEXTS), atol=1e-6, rtol=1e-5)
    table = teacher.encode(TEXTS[::-1][:1] + TEXTS[1:3] + TEXTS[:1]).half()  # rows 0..3 hold TEXTS[3], [1], [2], [0]
    stored = StoredEmbeddings(table).embeddings({"index": torch.tensor([3, 1, 2, 0])})
    assert stored.dtype == torch.float32
    torch.testing.assert_close(stored, live, atol=2e-3, rtol=0)  # float16 storage


# ----------------------------------------------------------------------------- sentence-transformers itself

@pytest.mark.parametrize("mode,out_dim,normalize", [("mean", 48, True), ("cls", None, False), ("lasttoken", 16, True)])
def test_sentence_transformers_loads_our_export(tmp_path, tok, mode, out_dim, normalize):
    st = pytest.importorskip("sentence_transformers")
    enc = tiny_encoder(tok, pooling=mode, out_dim=out_dim, normalize=normalize)
    folder = export_sentence_transformers(enc, None, tmp_path / "st")
    theirs = torch.as_tensor(st.SentenceTransformer(str(folder), device="cpu").encode(TEXTS))
    torch.testing.assert_close(theirs, enc.encode(TEXTS), atol=1e-5, rtol=0)


def test_sentence_transformers_loads_our_static_export(tmp_path, tok):
    st = pytest.importorskip("sentence_transformers")
    student = static_student(tok, 12, 20, normalize=True)
    folder = export_sentence_transformers(student, None, tmp_path / "static")
    theirs = torch.as_tensor(st.SentenceTransformer(str(folder), device="cpu").encode(TEXTS))
    torch.testing.assert_close(theirs, student.encode(TEXTS), atol=1e-5, rtol=0)
