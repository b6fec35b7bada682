import numpy as np
import pytest

from bench.measure.accuracy import compare
from bench.measure.inputs import inputs_digest, make_inputs, padding_share
from bench.measure.reference import InputsMismatch, check_inputs, load_reference, save_reference
from bench.plan.suite import DEFAULT_TOLERANCES

FP32, BF16, INT8 = (DEFAULT_TOLERANCES[p] for p in ("fp32", "bf16", "int8"))
PRECISIONS = pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])


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
    assert (ids[mask == 1] != 7).all() and (ids[mask == 0] == 7).all()
    assert (mask[:, :1] == 1).all()  # right padding
    assert padding_share(make_inputs(1, 64, 100, 0, padding_ratio=0.3)["attention_mask"]) == 0


def test_the_inputs_digest_changes_with_any_token_the_mask_or_the_shape():
    inputs = make_inputs(2, 16, 500, 0, padding_ratio=0.25, seed=3)
    digest = inputs_digest(inputs)
    assert digest == inputs_digest({k: v.astype(np.int32) for k, v in inputs.items()})  # values, not dtypes
    one_token = {**inputs, "input_ids": inputs["input_ids"].copy()}
    one_token["input_ids"][1, 3] += 1
    unmasked = {**inputs, "attention_mask": np.ones_like(inputs["attention_mask"])}
    reshaped = {k: v.reshape(4, 8) for k, v in inputs.items()}
    assert len({digest, inputs_digest(one_token), inputs_digest(unmasked), inputs_digest(reshaped)}) == 4


def test_the_reference_keeps_outputs_mask_and_inputs_digest_and_refuses_other_inputs(tmp_path):
    path = tmp_path / "refs" / "r.npz"
    inputs = make_inputs(2, 3, 500, 0, seed=1)
    save_reference(str(path), {"logits": np.arange(4.0).reshape(2, 2)}, inputs)
    reference = load_reference(path)
    assert list(reference.outputs) == ["logits"] and reference.outputs["logits"].dtype == np.float32
    assert np.array_equal(reference.mask, inputs["attention_mask"]) and reference.numpy_version == np.__version__
    assert list(path.parent.iterdir()) == [path]
    check_inputs(reference, make_inputs(2, 3, 500, 0, seed=1), path)
    other = make_inputs(2, 3, 500, 0, seed=2)
    with pytest.raises(InputsMismatch) as raised:
        check_inputs(reference, other, path)
    message = str(raised.value)
    assert inputs_digest(inputs) in message and inputs_digest(other) in message and str(path) in message


def test_identical_outputs_pass_and_the_figures_are_exact():
    ref = {"logits": np.array([[1.0, 2.0], [3.0, -1.0]])}
    got = {"logits": ref["logits"] + [[0, 1e-4], [0, 0]]}
    result = compare(got, ref, np.ones((2, 4)), "text-classification", FP32)
    spread = np.linalg.norm(ref["logits"] - 1.25)
    assert result["relative_error"] == pytest.approx(1e-4 / spread)
    assert result["max_abs_diff"] == pytest.approx(1e-4) and result["mean_abs_diff"] == pytest.approx(2.5e-5)
    assert result["passed"] and result["top1"]["agreement"] == 1.0 and result["top1"]["decided"] == 2


def test_a_shared_offset_neither_hides_an_unrelated_output_nor_fails_a_faithful_one():
    """Logits around -100: the plain cosine of two unrelated draws is 0.998; the centred error sees them apart."""
    rng = np.random.default_rng(0)
    ref = {"logits": -100 + 4 * rng.standard_normal((64, 10))}
    unrelated = {"logits": -100 + 4 * rng.standard_normal((64, 10))}
    faithful = {"logits": ref["logits"] + 1e-3 * rng.standard_normal((64, 10))}
    for tolerance in (FP32, BF16, INT8):
        result = compare(unrelated, ref, np.ones((64, 8)), "text-classification", tolerance)
        assert result["cosine"] > 0.99 and result["relative_error"] > 1.2, result
        assert not result["passed"] and result["failures"][0].startswith("logits relative error 1.")
    assert compare(faithful, ref, np.ones((64, 8)), "text-classification", BF16)["passed"]


@PRECISIONS
def test_a_batch_1_two_class_head_with_a_moved_logit_fails(precision):
    ref, got = {"logits": np.array([[0.30, -0.05]])}, {"logits": np.array([[0.30, -0.10]])}
    result = compare(got, ref, np.ones((1, 8)), "text-classification", DEFAULT_TOLERANCES[precision])
    assert result["relative_error"] == pytest.approx(0.05 / np.hypot(0.175, 0.175))
    assert result["top1"]["agreement"] == 1.0 and result["cosine"] > 0.98
    assert not result["passed"] and result["failures"] == [
        f"logits relative error 0.202 > {DEFAULT_TOLERANCES[precision]['max_relative_error']:g}"
    ]


@PRECISIONS
def test_a_wrong_scale_and_a_shuffled_output_fail(precision):
    rng = np.random.default_rng(1)
    mask = np.ones((2, 16), dtype=np.int64)
    ref = {"last_hidden_state": rng.standard_normal((2, 16, 32)) + 0.5}
    tolerance = DEFAULT_TOLERANCES[precision]
    scaled = {"last_hidden_state": ref["last_hidden_state"] * 1.25}
    shuffled = {"last_hidden_state": ref["last_hidden_state"][:, rng.permutation(16)]}
    for got in (scaled, shuffled):
        result = compare(got, ref, mask, "feature-extraction", tolerance)
        assert not result["passed"] and result["relative_error"] > 0.25, result


def test_top1_is_gated_only_where_the_reference_margin_is_decisive():
    ref = {"logits": np.array([[2.0, -2.0], [0.01, 0.0], [-1.0, 1.0], [0.5, -0.5]])}
    near_tie_flips = {"logits": np.array([[2.0, -2.0], [0.0, 0.01], [-1.0, 1.0], [0.5, -0.5]])}
    tolerance = {"max_relative_error": None, "top1_margin": 0.5, "min_top1_agreement": 1.0}
    result = compare(near_tie_flips, ref, np.ones((4, 8)), "text-classification", tolerance)
    assert result["top1"] == {"agreement": 0.75, "predictions": 4, "margin": 0.5, "decided": 3, "decided_agreement": 1.0}
    assert result["passed"]
    clear_flip = {"logits": ref["logits"] * [[1, 1], [1, 1], [-1, -1], [1, 1]]}
    result = compare(clear_flip, ref, np.ones((4, 8)), "text-classification", tolerance)
    assert result["failures"] == [
        "top-1 agreement 0.667 < 1 on the 3 prediction(s) whose reference margin is at least 0.5 times the output's"
        " root mean square"
    ]


def test_the_margin_at_one_prediction_of_two_labels_tells_a_near_tie_from_a_clear_choice():
    tolerance = {"max_relative_error": None, "top1_margin": 0.5, "min_top1_agreement": 1.0}
    found = []
    for logits in ([[0.5001, 0.4999]], [[2.0, -2.0]], [[3.0, 1.0]]):
        ref = {"logits": np.array(logits)}
        found.append(compare(ref, ref, np.ones((1, 8)), "text-classification", tolerance)["top1"]["decided"])
    assert found == [0, 1, 1]  # with the standard deviation as the scale, all three read a margin of exactly 2


def test_padding_positions_are_ignored_everywhere():
    mask = np.array([[1, 1, 0, 0]])
    rng = np.random.default_rng(2)
    ref = {"last_hidden_state": rng.standard_normal((1, 4, 3))}
    got = {"last_hidden_state": ref["last_hidden_state"].copy()}
    got["last_hidden_state"][0, 2:] = 99.0
    result = compare(got, ref, mask, "feature-extraction", FP32)
    assert result["relative_error"] == 0.0 and result["max_abs_diff"] == 0.0 and result["passed"]


def test_question_answering_top1_ignores_padding_and_nan_fails():
    mask = np.array([[1, 1, 1, 0]])
    ref = {"start_logits": np.array([[0.0, 3.0, 1.0, 5.0]]), "end_logits": np.array([[2.0, 1.0, 0.0, 9.0]])}
    got = {"start_logits": np.array([[0.0, 3.0, 1.0, -5.0]]), "end_logits": np.array([[2.0, 1.0, 0.0, 0.0]])}
    result = compare(got, ref, mask, "question-answering", FP32)
    assert result["top1"]["agreement"] == 1.0 and result["relative_error"] == 0.0 and result["passed"]
    got["end_logits"] = np.array([[np.nan, 1.0, 0.0, 0.0]])
    result = compare(got, ref, mask, "question-answering", FP32)
    assert result["failures"] == ["outputs contain NaN or infinity"] and result["outputs"]["end_logits"]["finite"] is False


def test_the_hidden_state_is_gated_when_given_and_its_absence_is_recorded():
    mask = np.ones((1, 4), dtype=np.int64)
    rng = np.random.default_rng(3)
    ref = {"logits": np.array([[0.3, -0.1]]), "last_hidden_state": rng.standard_normal((1, 4, 8))}
    broken = {"logits": ref["logits"], "last_hidden_state": ref["last_hidden_state"][:, ::-1]}
    result = compare(broken, ref, mask, "text-classification", BF16)
    assert result["outputs"]["logits"]["relative_error"] == 0.0
    assert [f.split(" relative")[0] for f in result["failures"]] == ["last_hidden_state"]
    reason = {"last_hidden_state": "the ONNX graph's outputs are ['logits']"}
    result = compare({"logits": ref["logits"]}, ref, mask, "text-classification", BF16, not_compared=reason)
    assert result["passed"] and result["not_compared"] == reason and list(result["outputs"]) == ["logits"]
    assert not compare({"logits": ref["logits"]}, ref, mask, "text-classification", BF16)["passed"]


def test_shape_mismatch_and_missing_output_fail():
    ref = {"logits": np.zeros((1, 2))}
    assert compare({"logits": np.zeros((1, 3))}, ref, np.ones((1, 2)), "text-classification", FP32)["failures"] == [
        "output logits has shape [1, 3], the reference [1, 2]"
    ]
    missing = {"last_hidden_state": "not exposed"}
    assert not compare({}, ref, np.ones((1, 2)), "text-classification", FP32, not_compared=missing)["passed"]


def test_retired_bounds_are_refused_with_the_new_name():
    from pydantic import ValidationError

    from bench.plan.suite import Tolerance

    with pytest.raises(ValidationError, match="min_cosine is no longer a bound: the gate is max_relative_error"):
        Tolerance.model_validate({"min_cosine": 0.97})
