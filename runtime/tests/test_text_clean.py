"""Text cleaning keeps meaning (issue 9, kind 7): joiners in many scripts stay, hiding characters go."""

from __future__ import annotations

import pytest

from runtime.models import Turn
from runtime.tests.test_chat_api import post
from runtime.text import text_clean

ZWJ, ZWNJ = "\u200d", "\u200c"

KEPT = {
    "family emoji": "👨" + ZWJ + "👩" + ZWJ + "👧",
    "rainbow flag": "🏳\ufe0f" + ZWJ + "🌈",
    "skin tone + profession": "👩🏽" + ZWJ + "💻",
    "persian ZWNJ": "می" + ZWNJ + "خواهم",
    "persian plural": "کتاب" + ZWNJ + "ها",
    "hindi half form (ZWJ)": "क्" + ZWJ + "ष",
    "hindi ZWNJ": "क्" + ZWNJ + "ष",
    "sinhala ශ්‍රී": "ශ්" + ZWJ + "රී",
    "malayalam chillu (old encoding)": "അവന്" + ZWJ + " വന്നു",  # after a virama, even at a word's end
    "korean": "안녕하세요, 고객님!",
    "japanese": "ご注文ありがとうございます。",
    "thai": "สวัสดีครับ",
    "hebrew with RLM": "שלום\u200f (עברית)",
    "arabic with ALM": "مرحبا\u061c 123",
    "england flag (tags)": "🏴\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f",
    "variation selector": "☺\ufe0f",
    "soft hyphen": "Donau\u00addampf",
    "keycap": "1\ufe0f\u20e3",
}


@pytest.mark.parametrize("text", list(KEPT.values()), ids=list(KEPT))
def test_meaning_is_kept(text):
    assert text_clean(text) == text


def test_joiners_survive_inside_a_sentence():
    sentence = "가족 " + KEPT["family emoji"] + " and " + KEPT["persian ZWNJ"] + " " + KEPT["hindi half form (ZWJ)"]
    assert text_clean(sentence) == sentence


@pytest.mark.parametrize(
    "dirty,clean",
    [
        ("pass" + "\u200b" + "word", "password"),  # zero-width space
        ("\ufeffhello", "hello"),  # BOM
        ("a" + ZWJ + "b", "ab"),  # a joiner between ASCII hides nothing but a split
        ("ad" + ZWNJ + "min", "admin"),
        (ZWJ + "안녕", "안녕"),  # at an edge
        ("안녕 " + ZWJ + "하세요", "안녕 하세요"),  # next to a space
        ("invoice_\u202egpj.exe", "invoice_gpj.exe"),  # right-to-left override
        ("\u2066x\u2069 \u202ay\u202c", "x y"),  # isolates and embeddings
        ("a\x00b\x07c\x1bd", "abcd"),  # controls, NUL
        ("hi\U000e0049\U000e0047\U000e004e", "hi"),  # tag characters smuggling "IGN"
        ("x\u2060y\u2062z", "xyz"),  # word joiner, invisible times
        ("line1\r\nline2\u2028line3", "line1\nline2\nline3"),
        ("lone \ud800 surrogate", "lone  surrogate"),
        ("\u1112\u1161\u11ab", "한"),  # conjoining jamo: NFC
    ],
)
def test_what_hides_or_reorders_text_is_removed(dirty, clean):
    assert text_clean(dirty) == clean


def test_the_api_stores_joiners(client, api_key, offline_llm):
    text = "주문한 " + KEPT["family emoji"] + " 세트와 " + KEPT["persian ZWNJ"]
    response = post(client, {"message": text}, api_key)
    assert response.status_code == 200
    assert Turn.objects.get().user_text == text
