import pytest

from captcha_stream.eval import metrics as M


def test_equal_lengths():
    preds, truths = ["abcd", "abXd"], ["abcd", "abcd"]
    assert M.full_string_accuracy(preds, truths) == 0.5
    assert M.char_accuracy(preds, truths) == 7 / 8
    assert M.cer(preds, truths) == 1 / 8


def test_unequal_lengths_count_against_prediction():
    # Deletion: "abd" vs "abcd": positions a,b match, d is misaligned -> 2 of max(3, 4) = 4.
    assert M.char_accuracy(["abd"], ["abcd"]) == 2 / 4
    # Insertion: "abcde" vs "abcd": 4 match of max(5, 4) = 5.
    assert M.char_accuracy(["abcde"], ["abcd"]) == 4 / 5
    assert M.cer(["abd"], ["abcd"]) == 1 / 4
    assert M.cer(["abcde"], ["abcd"]) == 1 / 4


def test_empty_prediction():
    assert M.char_accuracy([""], ["abc"]) == 0.0
    assert M.cer([""], ["abc"]) == 1.0
    assert M.full_string_accuracy([""], ["abc"]) == 0.0


def test_case_insensitive():
    assert M.case_insensitive_accuracy(["aBc", "xyz"], ["abc", "XYW"]) == 0.5


def test_levenshtein():
    assert M.levenshtein("kitten", "sitting") == 3
    assert M.levenshtein("", "abc") == 3
    assert M.levenshtein("abc", "abc") == 0


def test_by_length_and_confusions():
    preds = ["abc", "abcd", "0bcd", "abcdO"]
    truths = ["abc", "abce", "Obcd", "abcd0"]
    assert M.accuracy_by_length(preds, truths) == {3: (1, 1.0), 4: (2, 0.0), 5: (1, 0.0)}
    conf = M.confusions(preds, truths)
    assert ("O", "0", 1) in conf and ("0", "O", 1) in conf and ("e", "d", 1) in conf
    # An insertion is not a substitution.
    assert M.substitutions("abXc", "abc") == []


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError):
        M.full_string_accuracy(["a"], [])


def test_wilson_interval():
    # Textbook values: 0 of 10 and 10 of 10 give (0, 0.2775) and (0.7225, 1), not a zero-width interval.
    low, high = M.wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)
    low, high = M.wilson_interval(10, 10)
    assert low == pytest.approx(0.7225, abs=1e-4) and high == pytest.approx(1.0)
    # classic36 over six sets (models/README.md): 66 wrong of 12000.
    low, high = M.wilson_interval(12000 - 66, 12000)
    assert (round(low, 4), round(high, 4)) == (0.9930, 0.9957)
    # Contains the estimate, narrows with more images.
    a, b = M.wilson_interval(1986, 2000)
    assert a < 0.993 < b and b - a > high - low
    assert M.full_string_interval(["ab", "cd"], ["ab", "cx"]) == M.wilson_interval(1, 2)
    with pytest.raises(ValueError):
        M.wilson_interval(3, 2)


def test_summary_keys():
    s = M.summary(["ab"], ["ab"])
    assert set(s) == {"n", "full_string_accuracy", "char_accuracy", "cer", "case_insensitive_accuracy"}


def test_report_lists_as_many_confusions_as_asked():
    from captcha_stream.eval.evaluation import Results, format_report

    labels = ["0v", "Ox", "ab"]
    res = Results(labels=labels, preds=["Ov", "0X", "ab"], confidences=[0.5, 0.5, 0.9])

    def listed(report):
        block = report.split("most confused (true -> predicted):\n")
        return block[1].split("\n\n")[0].splitlines() if len(block) > 1 else []

    assert len(listed(format_report(res, samples=0))) == 3
    assert listed(format_report(res, samples=0, confusions=2)) == ["  0 -> O  1", "  O -> 0  1"]
    assert listed(format_report(res, samples=0, confusions=0)) == []
