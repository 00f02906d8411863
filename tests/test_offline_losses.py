"""DPO's losses and SFT's, by hand; the sequences they are computed on; SFT's file reader.

The expected numbers are worked out here from the formulas (math.log, math.exp), not by calling the
code under test; tests/test_offline_vs_trl.py checks the same losses against TRL's DPOTrainer.
"""

from __future__ import annotations

import math

import pytest
import torch

from rlhf_workbench.core.errors import JobFailed
from rlhf_workbench.core.offline.data import collate, encode_pairs, encode_sequence, read_sft_file
from rlhf_workbench.core.offline.losses import chosen_nll, dpo_losses, pair_figures, token_logprobs
from rlhf_workbench.core.training.text import render

BETA = 0.1
# Three pairs: summed response log-probs under the policy and the reference, and token counts.
# Pair 0: the policy moved towards chosen; pair 1: towards rejected; pair 2: both up, chosen more.
POLICY_CHOSEN = [-10.0, -7.5, -20.0]
POLICY_REJECTED = [-12.0, -6.0, -18.0]
REFERENCE_CHOSEN = [-11.0, -7.0, -23.0]
REFERENCE_REJECTED = [-11.5, -6.5, -19.0]
CHOSEN_TOKENS = [4, 3, 8]
REJECTED_TOKENS = [5, 2, 6]


def _logsigmoid(x: float) -> float:
    return -math.log(1 + math.exp(-x))


def _by_hand(i: int) -> dict[str, float]:
    chosen_ratio = POLICY_CHOSEN[i] - REFERENCE_CHOSEN[i]
    rejected_ratio = POLICY_REJECTED[i] - REFERENCE_REJECTED[i]
    return {"chosen_ratio": chosen_ratio, "rejected_ratio": rejected_ratio, "delta": chosen_ratio - rejected_ratio}


def _losses(loss_type: str, label_smoothing: float = 0.0, **tensors):
    t = {
        "policy_chosen": torch.tensor(POLICY_CHOSEN), "policy_rejected": torch.tensor(POLICY_REJECTED),
        "reference_chosen": torch.tensor(REFERENCE_CHOSEN), "reference_rejected": torch.tensor(REFERENCE_REJECTED),
        **tensors,
    }
    return dpo_losses(t["policy_chosen"], t["policy_rejected"], t["reference_chosen"], t["reference_rejected"], beta=BETA,
                      loss_type=loss_type, label_smoothing=label_smoothing,
                      chosen_tokens=torch.tensor(CHOSEN_TOKENS, dtype=torch.float32),
                      rejected_tokens=torch.tensor(REJECTED_TOKENS, dtype=torch.float32))


def test_the_pairs_differ_in_sign():
    """So that each loss below is checked where it is large, small and in between."""
    assert [_by_hand(i)["delta"] > 0 for i in range(3)] == [True, False, True]


def test_sigmoid_is_dpo():
    losses, _, _ = _losses("sigmoid")
    expected = [-_logsigmoid(BETA * _by_hand(i)["delta"]) for i in range(3)]
    assert losses.tolist() == pytest.approx(expected, abs=1e-6)
    # Pair 0 by the numbers: delta = (1) - (-0.5) = 1.5, loss = log(1 + e^-0.15).
    assert float(losses[0]) == pytest.approx(math.log(1 + math.exp(-0.15)), abs=1e-6)


def test_sigmoid_with_label_smoothing_is_conservative_dpo():
    e = 0.2
    losses, _, _ = _losses("sigmoid", e)
    expected = [
        -(1 - e) * _logsigmoid(BETA * d) - e * _logsigmoid(-BETA * d) for d in (_by_hand(i)["delta"] for i in range(3))
    ]
    assert losses.tolist() == pytest.approx(expected, abs=1e-6)
    plain, _, _ = _losses("sigmoid")
    assert not torch.allclose(losses, plain)  # the smoothing acts
    # cDPO's loss is smallest where the model is (1 - e) sure, not at infinite margin: at
    # beta x delta = log((1 - e) / e) its derivative is 0.
    at = math.log((1 - e) / e) / BETA
    d = torch.tensor([at], requires_grad=True)
    (loss,), _, _ = dpo_losses(d, torch.zeros(1), torch.zeros(1), torch.zeros(1), beta=BETA, label_smoothing=e)
    loss.backward()
    assert float(d.grad) == pytest.approx(0.0, abs=1e-6)


def test_ipo_is_squared_on_per_token_averages():
    losses, _, _ = _losses("ipo")
    expected = []
    for i in range(3):
        h = _by_hand(i)
        average = h["chosen_ratio"] / CHOSEN_TOKENS[i] - h["rejected_ratio"] / REJECTED_TOKENS[i]
        expected.append((average - 1 / (2 * BETA)) ** 2)
    assert losses.tolist() == pytest.approx(expected, abs=1e-5)
    # Pair 0: 1/4 - (-0.5)/5 = 0.35; (0.35 - 5)^2 = 21.6225.
    assert float(losses[0]) == pytest.approx(21.6225, abs=1e-4)
    with pytest.raises(ValueError, match="token count"):
        dpo_losses(torch.zeros(1), torch.zeros(1), torch.zeros(1), torch.zeros(1), beta=BETA, loss_type="ipo")


def test_robust_is_unbiased_under_flipped_labels():
    e = 0.1
    losses, _, _ = _losses("robust", e)
    deltas = [_by_hand(i)["delta"] for i in range(3)]
    expected = [(-(1 - e) * _logsigmoid(BETA * d) + e * _logsigmoid(-BETA * d)) / (1 - 2 * e) for d in deltas]
    assert losses.tolist() == pytest.approx(expected, abs=1e-6)
    # rDPO's point: over labels flipped with probability e, its expectation is the clean DPO loss.
    flipped, _, _ = _losses("robust", e, policy_chosen=torch.tensor(POLICY_REJECTED),
                            policy_rejected=torch.tensor(POLICY_CHOSEN),
                            reference_chosen=torch.tensor(REFERENCE_REJECTED),
                            reference_rejected=torch.tensor(REFERENCE_CHOSEN))
    clean = [-_logsigmoid(BETA * d) for d in deltas]
    assert ((1 - e) * losses + e * flipped).tolist() == pytest.approx(clean, abs=1e-6)


def test_without_smoothing_sigmoid_and_robust_agree_and_no_margin_costs_log_2():
    sigmoid, _, _ = _losses("sigmoid")
    robust, _, _ = _losses("robust")
    assert torch.allclose(sigmoid, robust)
    zeros = torch.zeros(2)
    for loss_type, e in (("sigmoid", 0.0), ("sigmoid", 0.3), ("robust", 0.3)):
        losses, _, _ = dpo_losses(zeros, zeros, zeros, zeros, beta=BETA, loss_type=loss_type, label_smoothing=e)
        assert losses.tolist() == pytest.approx([math.log(2)] * 2, abs=1e-7), loss_type
    with pytest.raises(ValueError, match="unknown DPO loss type 'hinge'"):
        dpo_losses(zeros, zeros, zeros, zeros, beta=BETA, loss_type="hinge")


def test_the_gradient_weighs_each_pair_by_how_wrong_the_implicit_reward_is():
    """d loss / d log pi(chosen) = -beta x sigmoid(-beta x delta): DPO's own gradient."""
    chosen = torch.tensor(POLICY_CHOSEN, requires_grad=True)
    losses, _, _ = _losses("sigmoid", policy_chosen=chosen)
    losses.sum().backward()
    expected = [-BETA / (1 + math.exp(BETA * _by_hand(i)["delta"])) for i in range(3)]
    assert chosen.grad.tolist() == pytest.approx(expected, abs=1e-7)


def test_rewards_are_beta_times_the_log_ratios_detached():
    chosen = torch.tensor(POLICY_CHOSEN, requires_grad=True)
    losses, chosen_rewards, rejected_rewards = _losses("sigmoid", policy_chosen=chosen)
    assert chosen_rewards.tolist() == pytest.approx([BETA * _by_hand(i)["chosen_ratio"] for i in range(3)], abs=1e-6)
    assert rejected_rewards.tolist() == pytest.approx([BETA * _by_hand(i)["rejected_ratio"] for i in range(3)], abs=1e-6)
    assert losses.requires_grad and not chosen_rewards.requires_grad and not rejected_rewards.requires_grad


def test_pair_figures_are_trls_means_and_a_tie_is_not_right():
    chosen_rewards = torch.tensor([0.1, -0.05, 0.3, 0.2])
    rejected_rewards = torch.tensor([-0.05, 0.05, 0.1, 0.2])  # pair 3 is a tie
    policy_chosen, policy_rejected = torch.tensor([-10.0, -7.5, -20.0, -4.0]), torch.tensor([-12.0, -6.0, -18.0, -4.0])
    figures = {k: float(v) for k, v in pair_figures(chosen_rewards, rejected_rewards, policy_chosen, policy_rejected).items()}
    assert figures == pytest.approx({
        "rewards/chosen": (0.1 - 0.05 + 0.3 + 0.2) / 4,
        "rewards/rejected": (-0.05 + 0.05 + 0.1 + 0.2) / 4,
        "rewards/accuracies": 2 / 4,
        "rewards/margins": (0.15 - 0.1 + 0.2 + 0.0) / 4,
        "logps/chosen": (-10 - 7.5 - 20 - 4) / 4,
        "logps/rejected": (-12 - 6 - 18 - 4) / 4,
    }, abs=1e-6)


def test_chosen_nll_is_the_mean_per_token_over_the_batch():
    """Not the mean of per-sequence means: a long response weighs by its tokens (TRL's `sft`)."""
    value = chosen_nll(torch.tensor([-10.0, -3.0, -20.0]), torch.tensor([4.0, 3.0, 8.0]))
    assert float(value) == pytest.approx((10.0 + 3.0 + 20.0) / (4 + 3 + 8), abs=1e-6)
    assert float(value) != pytest.approx((10 / 4 + 3 / 3 + 20 / 8) / 3, abs=1e-3)


def test_token_logprobs_are_log_softmax_at_the_target():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    targets = torch.tensor([0, 1])
    by_hand = [
        2.0 - math.log(math.exp(2.0) + math.exp(0.0) + math.exp(-1.0)),
        0.5 - math.log(2 * math.exp(0.5) + math.exp(3.0)),
    ]
    assert token_logprobs(logits, targets).tolist() == pytest.approx(by_hand, abs=1e-6)
    assert token_logprobs(logits.bfloat16(), targets).dtype == torch.float32


# -- sequences -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer():
    """The demo models' byte-level BPE tokenizer (trained here on the demo texts, small vocabulary)."""
    from rlhf_workbench.core.demo import demo_texts
    from rlhf_workbench.core.models import build_demo_tokenizer

    return build_demo_tokenizer(demo_texts(), 400)


def test_a_sequence_is_the_rendered_prompt_then_the_response_then_eos(tokenizer):
    prompt, response = "What is 2 + 2?", "2 + 2 = 4. I hope this helps."
    ids, start = encode_sequence(tokenizer, prompt, response, 256)
    text, boundary, _ = render(tokenizer, prompt, response)
    assert ids[-1] == tokenizer.eos_token_id and ids[:-1] == tokenizer(text)["input_ids"]
    assert tokenizer.decode(ids[:start]) == text[:boundary]  # "User: What is 2 + 2?\n\nAssistant:"
    assert tokenizer.decode(ids[start:-1]) == text[boundary:] == " " + response
    assert tokenizer.decode(ids[start - 1 : -1]) != text[boundary:]  # the start is exact, not one early


def test_a_long_sequence_keeps_the_prompts_start_the_responses_end_and_eos(tokenizer):
    prompt = "Please tell me everything about the sea, " * 10
    response = "The sea is salty and deep. " * 10 + "THE END."
    for max_length in (24, 40):
        ids, start = encode_sequence(tokenizer, prompt, response, max_length)
        assert len(ids) == max_length and ids[-1] == tokenizer.eos_token_id
        assert 1 <= start < max_length - 1
        assert tokenizer.decode(ids[:start]).startswith("User: Please tell me")
        assert tokenizer.decode(ids[start:-1]).endswith("THE END.")
        # Both long: the prompt keeps half the window (training/text.py's rule), the window being
        # max_length less the one token the EOS takes.
        assert start == (max_length - 1) // 2


def test_collate_marks_exactly_the_response_tokens(tokenizer):
    pairs = [("What is 2 + 2?", "2 + 2 = 4.", "Five."), ("Please explain bees to me.", "Sure! Bees make honey.", "No.")]
    encoded = encode_pairs(tokenizer, pairs, 256)
    rows = [c for c, _ in encoded] + [r for _, r in encoded]
    pad = tokenizer.pad_token_id
    batch = collate(rows, pad)
    width = max(len(ids) for ids, _ in rows)
    assert batch["input_ids"].shape == batch["targets"].shape == (4, width)
    for r, (ids, start) in enumerate(rows):
        assert batch["input_ids"][r, : len(ids)].tolist() == ids
        assert batch["input_ids"][r, len(ids) :].tolist() == [pad] * (width - len(ids))
        assert batch["attention_mask"][r].tolist() == [1] * len(ids) + [0] * (width - len(ids))
        marked = batch["targets"][r].nonzero()[:, 0].tolist()
        assert marked == list(range(start, len(ids)))  # the response and its EOS; no prompt, no padding
        assert tokenizer.decode(batch["input_ids"][r][batch["targets"][r]].tolist()) == (
            " " + pairs[r % 2][1 + r // 2] + tokenizer.eos_token)


# -- SFT's file ------------------------------------------------------------------------------------


def test_jsonl_and_csv_files_read_as_prompt_response_rows(tmp_path):
    jsonl = tmp_path / "data.jsonl"
    jsonl.write_text('{"prompt": "Hi?", "response": "Hello."}\n\n{"prompt": "2+2?", "completion": "4", "id": 7}\n',
                     encoding="utf-8")
    assert read_sft_file(jsonl) == [("Hi?", "Hello."), ("2+2?", "4")]
    csv_file = tmp_path / "data.csv"
    csv_file.write_text('prompt,response\nHi?,Hello.\n"Two lines?","One,\nTwo."\n', encoding="utf-8")
    assert read_sft_file(csv_file) == [("Hi?", "Hello."), ("Two lines?", "One,\nTwo.")]


def test_a_json_file_may_hold_one_array_or_json_lines(tmp_path):
    array = tmp_path / "records.json"
    array.write_text('[\n  {"prompt": "Hi?", "response": "Hello."},\n  {"prompt": "2+2?", "completion": "4"}\n]\n',
                     encoding="utf-8")
    assert read_sft_file(array) == [("Hi?", "Hello."), ("2+2?", "4")]
    lines = tmp_path / "lines.json"
    lines.write_text('{"prompt": "Hi?", "response": "Hello."}\n{"prompt": "2+2?", "response": "4"}\n', encoding="utf-8")
    assert read_sft_file(lines) == [("Hi?", "Hello."), ("2+2?", "4")]
    gap = tmp_path / "gap.json"
    gap.write_text('[{"prompt": "Hi?", "response": "Hello."}, {"prompt": "Bye?"}]', encoding="utf-8")
    assert _refused(gap) == f"sft_data: {gap}, record 2: 'response' is missing or empty (the row has: prompt)"
    strings = tmp_path / "strings.json"
    strings.write_text('["Hi?", "Hello."]', encoding="utf-8")
    assert _refused(strings) == f"sft_data: {strings}, record 1 of the array: expected an object with prompt and response"
    broken = tmp_path / "broken.json"
    broken.write_text('[{"prompt": "Hi?",\n "response": }]', encoding="utf-8")
    assert _refused(broken).startswith(f"sft_data: {broken}: not JSON (") and "line 2" in _refused(broken)


def test_a_csv_row_with_more_values_than_columns_is_refused(tmp_path):
    """A comma in an unquoted answer splits it: reading on would drop the answer's end unsaid."""
    csv_file = tmp_path / "data.csv"
    csv_file.write_text("prompt,response\nHi?,Hello.\nList three?,One, two, three.\n", encoding="utf-8")
    assert _refused(csv_file) == (f"sft_data: {csv_file}, line 3: 4 values, but the header names 2 columns "
                                  "(a comma in a value that is not in quotes?)")


def test_a_file_saved_with_a_byte_order_mark_reads(tmp_path):
    """As Excel's 'CSV UTF-8' and Windows editors save them (the project's importers accept it too)."""
    csv_file = tmp_path / "excel.csv"
    csv_file.write_bytes(b"\xef\xbb\xbfprompt,response\r\nHi?,Hello.\r\n")
    assert read_sft_file(csv_file) == [("Hi?", "Hello.")]
    jsonl = tmp_path / "notepad.jsonl"
    jsonl.write_bytes(b'\xef\xbb\xbf{"prompt": "Hi?", "response": "Hello."}\n')
    assert read_sft_file(jsonl) == [("Hi?", "Hello.")]


def _refused(path) -> str:
    with pytest.raises(JobFailed) as err:
        read_sft_file(path)
    return err.value.message


def test_a_missing_column_names_the_line_and_the_columns_there(tmp_path):
    jsonl = tmp_path / "data.jsonl"
    jsonl.write_text('{"prompt": "Hi?", "response": "Hello."}\n{"prompt": "Bye?", "answer": "Bye."}\n', encoding="utf-8")
    assert _refused(jsonl) == f"sft_data: {jsonl}, line 2: 'response' is missing or empty (the row has: answer, prompt)"
    csv_file = tmp_path / "data.csv"
    csv_file.write_text("question,response\nHi?,Hello.\n", encoding="utf-8")
    assert _refused(csv_file) == f"sft_data: {csv_file}, line 2: 'prompt' is missing or empty (the row has: question, response)"
    empty_value = tmp_path / "blank.jsonl"
    empty_value.write_text('{"prompt": "Hi?", "response": "  "}\n', encoding="utf-8")
    assert "line 1: 'response' is missing or empty" in _refused(empty_value)


def test_a_csv_error_names_the_line_in_the_file_past_multi_line_fields_and_blank_lines(tmp_path):
    csv_file = tmp_path / "data.csv"
    csv_file.write_text('prompt,response\n"Hi?","Hello,\nthere."\n\nBye?,\n', encoding="utf-8")
    assert "line 5: 'response' is missing or empty" in _refused(csv_file)


def test_bad_files_are_refused_saying_what_is_wrong(tmp_path):
    not_json = tmp_path / "bad.jsonl"
    not_json.write_text('{"prompt": "Hi?", "response": "Hello."}\n{"prompt": "Bye?", "response": \n', encoding="utf-8")
    assert _refused(not_json).startswith(f"sft_data: {not_json}, line 2: not JSON (")
    a_list = tmp_path / "list.jsonl"
    a_list.write_text('["Hi?", "Hello."]\n', encoding="utf-8")
    assert _refused(a_list) == f"sft_data: {a_list}, line 1: expected an object with prompt and response"
    text = tmp_path / "data.txt"
    text.write_text("prompt,response\nHi?,Hello.\n", encoding="utf-8")
    assert _refused(text) == f"sft_data: {text}: not a .jsonl, .json or .csv file"
    for name, content in (("empty.jsonl", ""), ("blank.jsonl", "\n  \n"), ("header.csv", "prompt,response\n")):
        (tmp_path / name).write_text(content, encoding="utf-8")
        assert _refused(tmp_path / name) == f"sft_data: {tmp_path / name}: holds no examples"
    latin = tmp_path / "latin.csv"
    latin.write_bytes("prompt,response\nCaf\xe9?,Oui.\n".encode("latin-1"))
    assert _refused(latin) == f"sft_data: {latin}: is not UTF-8 text"
    missing = tmp_path / "nothing.jsonl"
    with pytest.raises(JobFailed) as err:
        read_sft_file(missing)
    assert err.value.message == f"sft_data: {missing}: no such file" and "chosen" in err.value.hint
