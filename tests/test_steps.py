"""Reading model output: steps, answers, claims."""

from engine.steps import answers_equal, extract_answer, merged_claim, normalize_answer, split_steps, step_claims


def test_the_last_stated_answer_is_the_answer():
    trace = ("Sub-question 1: How many?\nAnswer 1: 23 + 14 = 37. The answer is 37.\n"
             "Step 2: 37 - 9 = 28\nThe answer is 28.\n")
    assert extract_answer(trace) == "28"          # not the sub-answer 37
    assert extract_answer("Step 1: 2 + 2 = 4\n") is None
    assert extract_answer("so the final answer is 1,065.") == "1065"


def test_answers_compare_as_numbers():
    assert answers_equal("28", 28) and answers_equal("1,065", "1065") and answers_equal("4/2", "2")
    assert not answers_equal(None, "28") and not answers_equal("28", None)
    assert answers_equal("3.50", "7/2") and answers_equal("-3.5", "-7/2")
    assert normalize_answer("3.50") == "3.50" and extract_answer("The answer is -3.5.") == "-3.5"   # as written


def test_steps_and_claims():
    text = "Step 1: 23 + 14 = 37\n\nStep 2: 37 / 2 = 18\nThe answer is 18.\n"
    assert split_steps(text) == ["Step 1: 23 + 14 = 37", "Step 2: 37 / 2 = 18", "The answer is 18."]
    assert step_claims("Step 2: x2 = x1 - 9  # 37 - 9 = 28") == [(37, "-", 9, 28)]


def test_a_worked_chain_claims_its_last_number():
    assert step_claims("Step 2: 478 + 356 = 478 + 300 + 56 = 778 + 56 = 834") == [(478, "+", 356, 834)]
    assert step_claims("Answer 1: 7 * 23 = 7 * 20 + 7 * 3 = 140 + 21 = 161. The answer is 161.") \
        == [(7, "*", 23, 161)]
    assert step_claims("3 + 4 = 5 + 2") == []          # no bare number at the end: no claim


def test_a_merged_step_claims_both_events_and_the_result_read_left_to_right():
    assert merged_claim("Step 2: loses 230 and buys 40, 298 - 230 + 40 = 108") == (298, (("-", 230), ("+", 40)), 108)
    assert merged_claim("Step 3: (298 - 230) * 3 = 204") == (298, (("-", 230), ("*", 3)), 204)
    assert merged_claim("Step 3: (298 - 230 * 3 = 204") is None            # unbalanced bracket
    assert merged_claim("Step 1: 298 - 230 = 68") is None
    assert merged_claim("Step 1: 478 + 356 = 478 + 300 + 56 = 778 + 56 = 834") is None   # worked chain
