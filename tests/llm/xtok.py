"""Tiny tokenizers of three kinds for cross-tokenizer tests (no download): byte-level BPE (the student),
SentencePiece-style BPE with byte fallback (like Gemma's) and WordPiece."""
import pytest

transformers = pytest.importorskip("transformers")

ADVERSARIAL = [
    "Hello wörld, naïve café: 12345678901234567890 + 3.14159!",
    "日本語のテキストと中文文本 mixed with English",
    "emoji 😀🎉👩‍👩‍👧 and ZWJ sequences 🏳️‍🌈",
    "def f(x):\n\treturn x ** 2  # code\n\n\n    indented    spaces",
    "a\u00a0b\u2003c \r\n windows line end",
    "<|user|>what is <b>bold</b>?<|end|>",
]
TEXTS = ADVERSARIAL * 3 + [
    "The quick brown fox jumps over the lazy dog. " * 2,
    "Knowledge distillation trains a small student to imitate a large teacher. " * 2,
]


def sentencepiece_like(folder, vocab_size=220):
    """A BPE with Metaspace pre-tokenization and byte fallback, decoding like Gemma / Llama-2."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.pre_tokenizer = pre_tokenizers.Split("▁", behavior="merged_with_next")
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    bytes_ = [f"<0x{i:02X}>" for i in range(256)]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size + 256, special_tokens=["<pad>", "<eos>", "<bos>", "<unk>", *bytes_])
    tok.train_from_iterator(TEXTS * 4, trainer)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<bos>",
                                                eos_token="<eos>", pad_token="<pad>")
    fast.save_pretrained(folder)
    return fast


def wordpiece(folder, vocab_size=200):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(TEXTS * 4, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=["[UNK]", "[PAD]", "[BOS]", "[EOS]"]))
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                                bos_token="[BOS]", eos_token="[EOS]")
    fast.save_pretrained(folder)
    return fast
