"""Reading real models' answers (engine/answers.py): a corpus of endings as chat, base and
distilled reasoning models write them, each with the answer a reader must find."""

import pytest

from engine.answers import answer_key, answers_equal, clean_answer, read_answer

ENDINGS = [
    # boxed, as Qwen2.5-Math / DeepSeek-R1-Distill end
    ("So she makes 9 * 2 = 18 dollars.\n\n\\boxed{18}", "18"),
    ("The final answer is $\\boxed{18}$.", "18"),
    ("The final answer is $\\boxed{18}$. I hope it is correct.", "18"),
    ("Therefore, the answer is \\(\\boxed{42}\\).", "42"),
    ("\\[\n\\boxed{\\frac{1}{2}}\n\\]", "\\frac{1}{2}"),
    ("Thus $x = \\boxed{\\frac{\\sqrt{3}}{2}}$.", "\\frac{\\sqrt{3}}{2}"),               # nested braces
    ("The area is \\boxed{2\\sqrt{3}} square units.", "2\\sqrt{3}"),
    ("\\boxed{\\$18.50}", "18.50"),                                                    # money inside a box
    ("\\boxed{18 \\text{ apples}}", "18"),                                              # units inside a box
    ("\\boxed{1,200}", "1200"),
    ("\\boxed{-3.5}", "-3.5"),                                                          # decimals stay as written
    ("\\boxed{x^2 + 1}", "x^2 + 1"),
    ("\\boxed{3x + 2}", "3x + 2"),                                                      # a letter after the digits
    ("\\boxed{2\\pi}", "2\\pi"),
    ("\\boxed{(2, 3)}", "(2, 3)"),
    ("First \\boxed{12}, but wait, I double counted. \\boxed{10}", "10"),               # the last counts
    ("\\fbox{7}", "7"),
    # GSM8K's own gold format and models trained on it
    ("Natalia sold 48/2 = 24 clips in May.\n#### 72", "72"),
    ("#### 1,065", "1065"),
    ("#### $18", "18"),
    ("#### -4", "-4"),
    # "The answer is"
    ("The answer is 18.", "18"),
    ("The answer is: 18", "18"),
    ("So the answer is $18.", "18"),
    ("The final answer is $18$.", "18"),
    ("The final answer is 18 dollars per day.", "18"),
    ("The answer is 0.5.", "0.5"),
    ("the answer is -7/2", "-7/2"),
    ("The answer is 85%.", "85%"),
    ("The answer is 3 hours and she is done.", "3"),
    ("The answer is $\\frac{3}{4}$.", "\\frac{3}{4}"),
    ("The answer is 5. Wait, I forgot the tax. The answer is 7.", "7"),                # several: the last
    ("The answer is Paris.", "Paris"),
    ("The answer is 2 * 2 * 2 = 8 apples.", "8"),                                      # an equation: its result
    ("\\boxed{x = 5}", "5"),
    ("The answer is 1,000,000.", "1000000"),
    ("The answer is −12.", "-12"),                                                       # a Unicode minus
    # labels
    ("Answer: 18", "18"),
    ("**Answer:** 18", "18"),
    ("**Answer: 18**", "18"),
    ("**Final Answer:** $\\boxed{250}$", "250"),
    ("Final Answer: The final answer is 6. I hope it is correct.", "6"),
    ("### Final Answer\n\nAnswer: 64 cookies", "64"),
    ("Answer: $1,234.56", "1234.56"),
    ("So, 4 + 5 = 9.\nAnswer: 9 marbles.", "9"),
    # nothing stated: no answer, not a guess
    ("She has 9 marbles left.", None),
    ("Step 1: 4 + 5 = 9", None),
    ("", None),
    ("\\boxed{12", None),                                                               # never closed
]


@pytest.mark.parametrize("text,expected", ENDINGS, ids=[f"ending{i}" for i in range(len(ENDINGS))])
def test_real_model_endings_are_read(text, expected):
    assert read_answer(text) == expected


def test_the_corpus_has_at_least_40_endings():
    assert len(ENDINGS) >= 40


def test_embedded_models_answer_lines_read_the_same():
    assert read_answer("Step 1: 6 * 16 = 96\nStep 2: 96 / 2 = 48\nThe answer is 48.\n") == "48"
    assert read_answer("Answer 2: 23 + 14 = 37. The answer is 37.") == "37"


@pytest.mark.parametrize("a,b", [
    ("0.5", "1/2"), ("18", "18.00"), ("1,065", "1065"), ("$18", "18"), ("-3.5", "-7/2"), (".5", "0.5"),
    ("\\frac{1}{2}", "0.5"), ("2\\sqrt{3}", "\\sqrt{12}"), ("x^2 + 1", "1 + x^2"), ("Paris", "Paris"),
])
def test_equal_values_are_equal_answers(a, b):
    assert answers_equal(a, b) and answers_equal(b, a)


@pytest.mark.parametrize("a,b", [("18", "19"), ("0.5", "1/3"), ("\\frac{1}{2}", "0.25"), ("Paris", "Lyon"),
                                 ("18", None), (None, None)])
def test_different_values_are_different_answers(a, b):
    assert not answers_equal(a, b)


def test_votes_group_equal_numbers():
    assert answer_key("18.00") == answer_key("18") == "18"
    assert answer_key("0.5") == answer_key("1/2") == "1/2"
    assert answer_key("\\frac{1}{2}") == "\\frac{1}{2}"


def test_clean_answer_keeps_expressions_whole_and_reads_an_equation_by_its_result():
    assert clean_answer(" 3 + 4 = 7") == "7"
    assert clean_answer("18\\sqrt{2}") == "18\\sqrt{2}" and clean_answer("x^2 + 1") == "x^2 + 1"
