import numpy as np
import pytest

from bench.accuracy import compare, load_reference, save_reference
from bench.inputs import make_inputs, padding_share

FP32 = {"max_abs_diff": 1e-3, "min_cosine": 0.99999, "min_argmax_agreement": 1.0}


def test_inputs_are_deterministic_and_within_the_vocabulary():
    a = make_inputs(2, 16, vocab_size=500, pad_token_id=0, seed=3)
    b = make_inputs(2, 16, vocab_size=500, pad_token_id=0, seed=3)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert a["input_ids"].dtype == np.int64 and a["input_ids"].shape == (2, 16)
    assert a["input_ids"].min() >= 1 and a["input_ids"].max() < 500
    assert a["attention_mask"].all()
    assert not np.array_equal(a["input_ids"], make_inputs(2, 16, 500, 0, seed=4)["input_ids"])


def test_padding_ratio_pads_to_the_longest_with_the_pad_token():
    inputs = make_inputs(8, 128, vocab_size=30522, pad_token_id=7, padding_ratio=0.3, seed=0)
    mask, ids = inputs["attention_mask"], inputs["input_ids"]
    lengths = mask.sum(1)
    assert lengths.max() == 128 and lengths.min() < 128
    assert padding_share(mask) == pytest.approx(0.3, abs=0.03)
    assert (ids[mask == 0] == 7).all()
    assert (mask[:, :1] == 1).all()  # right padding
    assert padding_share(make_inputs(1, 64, 100, 0, padding_ratio=0.3)["attention_mask"]) == 0


def test_identical_outputs_pass_and_the_figures_are_exact():
    ref = {"logits": np.array([[1.0, 2.0], [3.0, -1.0]])}
    mask = np.ones((2, 4), dtype=np.int64)
    result = compare({"logits": ref["logits"] + [[0, 1e-4], [0, 0]]}, ref, mask, "text-classification", FP32)
    assert result["passed"] and result["argmax_agreement"] == 1.0
    assert result["max_abs_diff"] == pytest.approx(1e-4)
    assert result["mean_abs_diff"] == pytest.approx(2.5e-5)


def test_a_flipped_prediction_and_a_large_difference_fail_with_reasons():
    ref = {"logits": np.array([[1.0, 2.0], [3.0, -1.0]])}
    got = {"logits": np.array([[2.5, 2.0], [3.0, -1.0]])}
    result = compare(got, ref, np.ones((2, 3)), "text-classification", FP32)
    assert not result["passed"]
    assert result["argmax_agreement"] == 0.5
    assert result["failures"][0] == "max |diff| 1.5 > 0.001"
    assert "argmax agreement 0.500 < 1" in result["failures"]


def test_padding_positions_are_ignored():
    mask = np.array([[1, 1, 0, 0]])
    ref = {"last_hidden_state": np.ones((1, 4, 3))}
    got = {"last_hidden_state": np.ones((1, 4, 3))}
    got["last_hidden_state"][0, 2:] = 99.0
    assert compare(got, ref, mask, "feature-extraction", FP32)["max_abs_diff"] == 0.0


def test_question_answering_argmax_ignores_padding_and_nan_fails():
    mask = np.array([[1, 1, 0]])
    ref = {"start_logits": np.array([[0.0, 1.0, 5.0]]), "end_logits": np.array([[2.0, 1.0, 9.0]])}
    got = {"start_logits": np.array([[0.0, 1.0, -5.0]]), "end_logits": np.array([[2.0, 1.0, 0.0]])}
    assert compare(got, ref, mask, "question-answering", FP32)["argmax_agreement"] == 1.0
    got["end_logits"] = np.array([[np.nan, 1.0, 0.0]])
    assert "outputs contain NaN or infinity" in compare(got, ref, mask, "question-answering", FP32)["failures"]


def test_shape_mismatch_and_missing_output_fail():
    ref = {"logits": np.zeros((1, 2))}
    assert compare({"logits": np.zeros((1, 3))}, ref, np.ones((1, 2)), "text-classification", FP32)["failures"] == [
        "output logits has shape [1, 3], the reference [1, 2]"
    ]
    assert not compare({}, ref, np.ones((1, 2)), "text-classification", FP32)["passed"]


def test_reference_round_trip(tmp_path):
    path = tmp_path / "refs" / "r.npz"
    save_reference(str(path), {"logits": np.arange(4.0).reshape(2, 2)}, np.ones((2, 3), np.int64))
    outputs, mask = load_reference(path)
    assert outputs["logits"].dtype == np.float32 and mask.shape == (2, 3)
    assert list(path.parent.iterdir()) == [path]
