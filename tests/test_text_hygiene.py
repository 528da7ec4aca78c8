import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ticketsmith.runtime.errors import TicketError
from ticketsmith.runtime.text_hygiene import clean_ticket_text, keep_ends, strip_html

ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=300)


@given(ANY_TEXT, st.integers(min_value=1, max_value=400))
def test_any_text_is_cleaned_or_clearly_empty(text: str, limit: int) -> None:
    kept = keep_ends(text, limit)
    visible = any(not ch.isspace() and unicodedata.category(ch) not in {"Cc", "Zl", "Zp"} for ch in kept)
    try:
        cleaned, was_cut = clean_ticket_text(text, limit)
    except TicketError:
        assert not visible
        return
    assert cleaned == cleaned.strip() and cleaned
    assert was_cut == (len(text) > limit)
    cleaned.encode("utf-8")  # no lone surrogates left
    assert not any(unicodedata.category(ch) == "Cc" and ch not in "\n\t" for ch in cleaned)
    assert len(cleaned) <= limit


@given(st.text(max_size=300), st.integers(min_value=1, max_value=400))
def test_a_cut_keeps_the_start_and_the_end(text: str, limit: int) -> None:
    kept = keep_ends(text, limit)
    assert len(kept) <= limit
    if len(text) <= limit:
        assert kept == text
    else:
        tail = limit // 4
        assert kept.startswith(text[: limit - tail - 1]) and kept.endswith(text[len(text) - tail :])


def test_lone_surrogates_and_crlf() -> None:
    assert clean_ticket_text("a\ud800b\r\nc", 100) == ("a?b\nc", False)


@pytest.mark.parametrize("text", ["", " ", "\n\t\r", "\x00\x01", "\u2028"])
def test_empty(text: str) -> None:
    with pytest.raises(TicketError):
        clean_ticket_text(text, 100)


def test_html_mail_bodies_lose_their_style_and_script() -> None:
    outlook = (
        "<html><head><style>p.MsoNormal{margin:0cm;font-family:Calibri}</style><script>track()</script></head>"
        "<body><p class=MsoNormal>Cannot connect<br>since 8am</p><ul><li>VPN &amp; Wi-Fi</li></ul></body></html>"
    )
    text = strip_html(outlook)
    assert "MsoNormal" not in text and "track" not in text
    assert text.split("\n")[:2] == ["Cannot connect", "since 8am"] and "VPN & Wi-Fi" in text
    assert strip_html("CPU < 50% and load > 3") == "CPU < 50% and load > 3"  # not HTML: left as it is
