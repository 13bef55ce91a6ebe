"""Tiny in-process sentence encoders (no download): a WordPiece tokenizer trained on a few sentences, 2-layer
BERTs of hidden 16-32, and a sentence-transformers folder written by hand (independent of our exporter)."""
import json

import pytest
import torch
from torch import nn

transformers = pytest.importorskip("transformers")

from distill.models.encoders import Encoder  # noqa: E402

CORPUS = [
    "A man is playing a guitar on the street.",
    "The quick brown fox jumps over the lazy dog.",
    "Knowledge distillation trains a small student to imitate a large teacher.",
    "A woman is slicing vegetables in the kitchen.",
    "Python lists hold items in order; sets hold unique items.",
    "The teacher is frozen while the student learns from its embeddings.",
    "Two dogs are running through a field of grass.",
    "Sentence embeddings map texts to vectors whose cosine similarity reflects meaning.",
]
TEXTS = ["a man plays the guitar", "the lazy dog sleeps", "students learn from teachers quickly and well", "fox"]


def wordpiece_tokenizer(vocab_size: int = 200):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(CORPUS * 4, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
                                                       special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                                cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")


def tiny_bert(vocab: int, hidden: int = 32, layers: int = 2, seed: int = 0):
    torch.manual_seed(seed)
    config = transformers.BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers,
                                     num_attention_heads=4, intermediate_size=2 * hidden, max_position_embeddings=64)
    return transformers.BertModel(config).eval()


def tiny_encoder(tokenizer, *, hidden: int = 32, pooling: str = "mean", out_dim: int | None = None,
                 normalize: bool = False, seed: int = 0) -> Encoder:
    projection = None
    if out_dim is not None:
        torch.manual_seed(seed + 100)
        projection = nn.Linear(hidden, out_dim)
    return Encoder(tiny_bert(len(tokenizer), hidden, seed=seed), pooling=pooling, projection=projection,
                   normalize=normalize, tokenizer=tokenizer, max_length=32).eval()


def write_st_folder_by_hand(folder, encoder: Encoder, *, pooling_key: str = "pooling_mode_mean_tokens",
                            normalize_folder: bool = False) -> None:
    """A sentence-transformers folder written field by field (the format read from the library's own
    Transformer / Pooling / Dense / Normalize save code), without our exporter."""
    from safetensors.torch import save_file
    folder.mkdir(parents=True, exist_ok=True)
    encoder.backbone.save_pretrained(folder)
    encoder.tokenizer.save_pretrained(folder)
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 32, "do_lower_case": False}))
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    (folder / "1_Pooling").mkdir()
    pooling = {"word_embedding_dimension": encoder.pooled_dim, "pooling_mode_cls_token": False,
               "pooling_mode_mean_tokens": False, "pooling_mode_max_tokens": False,
               "pooling_mode_mean_sqrt_len_tokens": False, pooling_key: True}
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    if encoder.projection is not None:
        (folder / "2_Dense").mkdir()
        p = encoder.projection
        (folder / "2_Dense" / "config.json").write_text(json.dumps(
            {"in_features": p.in_features, "out_features": p.out_features, "bias": True,
             "activation_function": "torch.nn.modules.linear.Identity"}))
        save_file({"linear.weight": p.weight.detach().clone(), "linear.bias": p.bias.detach().clone()},
                  str(folder / "2_Dense" / "model.safetensors"))
        modules.append({"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    if encoder.normalize:
        i = len(modules)
        if normalize_folder:
            (folder / f"{i}_Normalize").mkdir()
        modules.append({"idx": i, "name": str(i), "path": f"{i}_Normalize",
                        "type": "sentence_transformers.models.Normalize"})
    (folder / "modules.json").write_text(json.dumps(modules))
