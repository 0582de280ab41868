import pytest

from edge_assistant.thinking.sentences import SentenceSplitter, clean_for_speech


def split_streamed(text: str, step: int = 3, first_clause: bool = False) -> list[str]:
    """Feed `text` in small pieces, as tokens arrive, and collect every sentence."""
    splitter = SentenceSplitter(first_clause=first_clause)
    sentences = []
    for start in range(0, len(text), step):
        sentences += splitter.feed(text[start : start + step])
    return sentences + splitter.flush()


@pytest.mark.parametrize(
    "text, expected",
    [
        ("It is sunny. Bring a hat! Want more?", ["It is sunny.", "Bring a hat!", "Want more?"]),
        ("Pi is about 3.14 today. Yes.", ["Pi is about 3.14 today.", "Yes."]),
        ("Dr. Smith met Mr. Jones at 5 p.m. yesterday. Fine.", ["Dr. Smith met Mr. Jones at 5 p.m. yesterday.", "Fine."]),
        ("J. R. R. Tolkien wrote it. Read it.", ["J. R. R. Tolkien wrote it.", "Read it."]),
        ("You need:\n1. A blanket\n2. Some food\n3. Sun cream", ["You need:", "A blanket", "Some food", "Sun cream"]),
        ("- **Bread**\n- Cheese", ["Bread", "Cheese"]),
        ("No final punctuation here", ["No final punctuation here"]),
        ("I counted 2. Then 3.", ["I counted 2.", "Then 3."]),
        ('He said "go." Then left.', ['He said "go."', "Then left."]),
        ("Wait... what?! Really.", ["Wait...", "what?!", "Really."]),
        ("e.g. apples are fine. Done.", ["e.g. apples are fine.", "Done."]),
        ("No. Paris is the capital.", ["No.", "Paris is the capital."]),
        ("I am. You are.", ["I am.", "You are."]),
        ("Take room No. 5 please. Thanks.", ["Take room No. 5 please.", "Thanks."]),
        ("Dr. Smith is in. Call him.", ["Dr. Smith is in.", "Call him."]),
        ("", []),
        ("...", []),
    ],
)
def test_sentences(text, expected):
    assert split_streamed(text) == expected
    assert split_streamed(text, step=1) == expected


def test_sentence_released_as_soon_as_the_next_one_starts():
    splitter = SentenceSplitter()
    assert splitter.feed("It is sunny") == []
    assert splitter.feed(".") == []  # could still be "sunny.com" or "3.14"
    assert splitter.feed(" B") == ["It is sunny."]


def test_no_is_released_once_the_next_word_shows_it_is_not_a_number():
    splitter = SentenceSplitter()
    assert splitter.feed("No. ") == []
    assert splitter.feed("P") == ["No."]


def test_long_run_without_a_full_stop_is_cut_at_a_comma():
    text = "word " * 40 + ", and then " + "more " * 10
    splitter = SentenceSplitter(long_sentence=100)
    first = splitter.feed(text)
    assert len(first) == 1 and first[0].endswith(",")


def test_clean_for_speech():
    assert clean_for_speech("## **Hello** `world`") == "Hello world"


@pytest.mark.parametrize(
    "text, expected",
    [
        # A long first sentence starts speaking at its first clause; later ones stay whole.
        ("The capital of France is Paris, a city known for its museums. It is big, old and busy.",
         ["The capital of France is Paris,", "a city known for its museums.", "It is big, old and busy."]),
        ("Here is what you need for pancakes: flour, eggs, milk and a pinch of salt.",
         ["Here is what you need for pancakes:", "flour, eggs, milk and a pinch of salt."]),
        # Short first sentences, and clauses of a word or two, are not cut.
        ("Yes, it is Paris, France. Enjoy.", ["Yes, it is Paris, France.", "Enjoy."]),
        ("Well, honestly, the capital of France has been Paris for a very long time.",
         ["Well, honestly, the capital of France has been Paris for a very long time."]),
        # Only a mark followed by a space is a clause: numbers and times are not cut.
        ("It costs 1,000 euros and leaves at 10:30 from the main station every day.",
         ["It costs 1,000 euros and leaves at 10:30 from the main station every day."]),
        ("The capital of France is Paris, a lovely city", ["The capital of France is Paris,", "a lovely city"]),
    ],
)
def test_first_clause_of_a_reply(text, expected):
    # The same whether the text streams in token by token or arrives at once.
    for step in (1, 3, len(text)):
        assert split_streamed(text, step, first_clause=True) == expected


def test_first_clause_only_when_asked():
    text = "The capital of France is Paris, a city known for its museums."
    assert split_streamed(text) == [text]
