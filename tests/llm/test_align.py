"""Cross-tokenizer alignment: spans cover the same bytes on both sides, on adversarial text, for three
tokenizer kinds; special tokens, cut characters, the identity case and the cache."""
import pytest

from distill.data.align import Aligner, TokenBytes, spans_from_ends, tokenizer_kind
from tests.llm.conftest import make_tokenizer
from tests.llm.xtok import ADVERSARIAL, sentencepiece_like, wordpiece


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    root = tmp_path_factory.mktemp("tok")
    return {"student": make_tokenizer(root / "bpe"), "sentencepiece": sentencepiece_like(root / "sp"),
            "wordpiece": wordpiece(root / "wp"), "bpe280": make_tokenizer(root / "bpe280", vocab_size=280)}


def span_texts(aligner, ids, alignment):
    """Per span: the student's bytes and the teacher's bytes (what the teacher's tokens stand for)."""
    out = []
    for a, b, c, d in alignment.spans:
        student = b"".join(aligner.student.bytes[i] for i in ids[a:b + 1] if i not in aligner.student.role_of)
        teacher = b"".join(aligner.teacher.bytes[i] for i in alignment.teacher_ids[c:d + 1] if i not in aligner.teacher.role_of)
        out.append((student, teacher))
    return out


def test_kinds_are_recognised(tokenizers):
    assert [tokenizer_kind(tokenizers[k]) for k in ("student", "sentencepiece", "wordpiece")] == [
        "byte_level", "sentencepiece", "wordpiece"]


def test_student_bytes_round_trip_exactly(tokenizers):
    student = TokenBytes(tokenizers["student"])
    for text in ADVERSARIAL:
        ids = tokenizers["student"](text, add_special_tokens=False)["input_ids"]
        assert b"".join(student.bytes[i] for i in ids) == text.encode("utf-8")


@pytest.mark.parametrize("teacher", ["sentencepiece", "bpe280", "wordpiece"])
def test_spans_cover_the_same_bytes(tokenizers, teacher):
    aligner = Aligner(tokenizers["student"], tokenizers[teacher])
    for text in ADVERSARIAL:
        ids = tokenizers["student"](text, add_special_tokens=False)["input_ids"]
        alignment = aligner(ids)
        assert alignment.spans, text
        pieces = span_texts(aligner, ids, alignment)
        if teacher != "wordpiece":  # WordPiece drops whitespace and maps unknown words to [UNK]: only the student side is exact
            assert all(s == t for s, t in pieces), (text, pieces)
        covered = b"".join(s for s, _ in pieces)
        assert text.encode("utf-8").startswith(covered) and len(covered) >= len(text.encode()) - 12
        assert sum(alignment.span_bytes) == len(covered)
        # spans are in order, disjoint, and the teacher sequence starts with its BOS
        assert alignment.teacher_ids[0] == tokenizers[teacher].bos_token_id
        ends = [(b, d) for _, b, _, d in alignment.spans]
        assert ends == sorted(ends) and len(set(e for e, _ in ends)) == len(ends)


def test_special_tokens_map_by_role_and_form_their_own_span(tokenizers):
    s, t = tokenizers["student"], tokenizers["sentencepiece"]
    aligner = Aligner(s, t)
    ids = s("first document", add_special_tokens=False)["input_ids"] + [s.eos_token_id] + s("second", add_special_tokens=False)["input_ids"]
    alignment = aligner(ids)
    eos_at = ids.index(s.eos_token_id)
    own = [sp for sp in alignment.spans if sp[0] == sp[1] == eos_at]
    assert len(own) == 1 and alignment.teacher_ids[own[0][2]] == t.eos_token_id and own[0][2] == own[0][3]


def test_a_block_cut_inside_a_character_is_trimmed(tokenizers):
    s = tokenizers["student"]
    ids = s("😀🎉 cut inside the emoji", add_special_tokens=False)["input_ids"]
    aligner = Aligner(s, tokenizers["sentencepiece"])
    for start in range(1, 4):
        alignment = aligner(ids[start:])  # the first bytes are a partial character
        assert alignment.spans and alignment.spans[0][0] == 0
        # the cut bytes join the first span, which no loss uses (nothing predicts the student's token 0)
        for student, teacher in span_texts(aligner, ids[start:], alignment)[1:]:
            assert student == teacher
            student.decode("utf-8")  # whole characters only


def test_identity_is_one_token_per_span(tokenizers):
    s = tokenizers["student"]
    aligner = Aligner(s, s)
    ids = s(ADVERSARIAL[0], add_special_tokens=False)["input_ids"]
    alignment = aligner(ids)
    assert all(a == b and c == d for a, b, c, d in alignment.spans)
    assert [alignment.teacher_ids[c] for _, _, c, _ in alignment.spans] == ids[:len(alignment.spans)]


def test_alignments_are_cached_per_row(tokenizers):
    aligner = Aligner(tokenizers["student"], tokenizers["sentencepiece"])
    ids = tokenizers["student"]("cache me", add_special_tokens=False)["input_ids"]
    assert aligner(ids) is aligner(list(ids))


def test_spans_from_ends_reference():
    # student |ab|c|de| vs teacher |a|bc|de|: a common boundary at 3 and 5 only
    assert spans_from_ends([2, 3, 5], [1, 3, 5]) == [(0, 1, 0, 1), (2, 2, 2, 2)]
    # a zero-width and an unaligned (negative) token join the next span; an open tail is dropped
    assert spans_from_ends([-1, 2, 2, 4, 6], [2, 4, 5]) == [(0, 1, 0, 0), (2, 3, 1, 1)]
