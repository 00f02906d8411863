"""Generating candidate pairs with a local causal LM (core/generate.py and `rlhf-workbench generate`).

A real project: a prompt list imported from a text file next to a few imported pairs; the models are
the real demo policy (built once for the module) and a copy of it with its weights nudged, saved
where a PPO checkpoint keeps its policy.
"""

from __future__ import annotations

import json

import pytest

from rlhf_workbench.core.cli import main
from rlhf_workbench.core.errors import ConfigError, Stopped, WorkbenchError
from rlhf_workbench.core.generate import GenerateConfig, generate_pairs, model_label, pick_prompts, sample_from
from rlhf_workbench.core.importing import import_file
from rlhf_workbench.core.project import Project
from rlhf_workbench.core.records import conversation_to_json

pytestmark = pytest.mark.timeout(600)

LISTED = ["Give me a fact about bicycles.", "Write something about birds.", "Sum 3 and 1.",
          "Help me understand cats.", "Give me a fact about snow."]
PAIRED = "Tell me about the moon."


@pytest.fixture
def listed(home, make_project, tmp_path):
    """A project with one imported pair (origin 'tests') and a prompt list of five prompts."""
    path = make_project("p", [(PAIRED, "It circles the Earth.", "I like trains.", "tests", None, None)])
    prompt_list = tmp_path / "prompts.txt"
    prompt_list.write_text("\n".join(LISTED) + "\n", encoding="utf-8")
    with Project.open(path) as project:
        import_file(project, prompt_list)
    return path


def generated_pairs(path, origin):
    with Project.open(path) as project:
        store = project.store
        return [store.pair(i) for i in store.pair_ids(origin=origin)]


@pytest.mark.slow
def test_listed_prompts_get_two_different_responses_first(listed):
    reports = []
    counts = generate_pairs(listed, GenerateConfig(n_prompts=4, max_new_tokens=24),
                            sink=lambda e: reports.append((e.step, e.total)))

    assert counts["origin"] == "generated:demo" and counts["prompts"] == 4
    assert counts["pairs_added"] + counts["identical"] + counts["empty"] == 4
    assert counts["pairs_added"] >= 1  # the demo policy knows few answers per topic: two draws may agree
    pairs = generated_pairs(listed, "generated:demo")
    assert len(pairs) == counts["pairs_added"]
    for pair in pairs:
        # Prompts waiting for responses come first: never the one that already had a pair.
        assert pair.prompt[-1].content in LISTED
        assert pair.response_a and pair.response_b and pair.response_a != pair.response_b
    assert reports[-1] == (8, 8)  # two responses for each of the four prompts
    with Project.open(listed) as project:
        meta = json.loads(project.store.conn.execute("SELECT meta FROM pairs WHERE origin = 'generated:demo'").fetchone()[0])
        sources = {row[0] for row in project.store.conn.execute(
            "SELECT DISTINCT r.source FROM responses r JOIN pairs p ON r.id IN (p.response_a_id, p.response_b_id) "
            "WHERE p.origin = 'generated:demo'")}
    assert meta["a"] == meta["b"] == "demo" and meta["temperature"] == 1.0 and meta["max_new_tokens"] == 24
    assert sources == {"model"}

    # Asked again: prompts still without any pair first, then those this model has not answered, then the rest.
    with Project.open(listed) as project:
        order = [c[-1].content for c in pick_prompts(project, None, "generated:demo", 10, seed=3)]
    answered = {pair.prompt[-1].content for pair in pairs}
    waiting = [text for text in LISTED if text not in answered]
    assert sorted(order[: len(waiting)]) == sorted(waiting)
    assert order[len(waiting)] == PAIRED
    assert sorted(order[len(waiting) + 1 :]) == sorted(answered)


@pytest.mark.slow
def test_two_models_answer_the_same_prompts(listed, tmp_path):
    import torch

    from rlhf_workbench.core.models import quiet_transformers
    from rlhf_workbench.core.training.policy import load_policy

    model, tokenizer = load_policy("demo")
    with torch.no_grad():
        generator = torch.Generator().manual_seed(1)
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.3)
    checkpoint = listed / "runs" / "ppo-test" / "checkpoints" / "step-000007" / "policy"
    with quiet_transformers():
        model.save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    assert model_label(str(checkpoint), listed) == "ppo-test/step-7"

    config = GenerateConfig(model=str(checkpoint), model_b="demo", n_prompts=5, max_new_tokens=24, temperature=0.7)
    with Project.open(listed) as project:
        order = pick_prompts(project, None, "generated:ppo-test/step-7 vs demo", 5, seed=0)
    counts = generate_pairs(listed, config)
    assert counts["origin"] == "generated:ppo-test/step-7 vs demo"
    assert counts["pairs_added"] >= 1
    pairs = generated_pairs(listed, counts["origin"])
    with Project.open(listed) as project:
        meta = json.loads(project.store.conn.execute(
            "SELECT meta FROM pairs WHERE origin = ?", (counts["origin"],)).fetchone()[0])
        source = project.store.conn.execute(
            "SELECT r.source FROM responses r JOIN pairs p ON r.id = p.response_a_id WHERE p.origin = ?",
            (counts["origin"],)).fetchone()[0]
    assert meta["a"] == str(checkpoint) and meta["b"] == "demo"
    assert source == "checkpoint"
    # Response B is the demo policy's own answer: the demo policy alone, given the same prompts in
    # the same order with the same settings, writes exactly the B responses.
    settings = dict(max_new_tokens=24, temperature=0.7, top_p=0.95, max_prompt_length=1024, batch_size=16, seed=0,
                    device="cpu", precision="fp32", trust_remote_code=False)
    alone = sample_from("demo", order, what="the model", settings=settings, on_sampled=lambda n: None,
                        stop=lambda: False)
    written_b = {pair.prompt: pair.response_b for pair in pairs}
    assert [alone[order.index(prompt)] for prompt in written_b] == list(written_b.values())


@pytest.mark.slow
def test_cancel_and_bad_settings_add_nothing(listed):
    before = generated_pairs(listed, "generated:demo")
    with pytest.raises(Stopped, match="nothing was added"):
        generate_pairs(listed, GenerateConfig(n_prompts=3, max_new_tokens=8), stop=lambda: True)
    with pytest.raises(WorkbenchError, match="The model cannot be loaded: .*no-such-model"):
        generate_pairs(listed, GenerateConfig(model=str(listed / "no-such-model"), n_prompts=3))
    with pytest.raises(ConfigError, match="model_b: is the same model"):
        generate_pairs(listed, GenerateConfig(model="demo", model_b=" demo "))
    with pytest.raises(ConfigError, match="top_p"):
        generate_pairs(listed, GenerateConfig(top_p=0.0))
    with pytest.raises(WorkbenchError, match="no prompts of pairs whose origin starts with 'hh'"):
        generate_pairs(listed, GenerateConfig(prompt_origin="hh"))
    assert generated_pairs(listed, "generated:demo") == before


@pytest.mark.slow
def test_prompt_origin_narrows_the_prompts(listed):
    counts = generate_pairs(listed, GenerateConfig(prompt_origin="tes", n_prompts=10, max_new_tokens=16))
    assert counts["prompts"] == 1  # only the paired prompt: listed prompts have no origin
    for pair in generated_pairs(listed, "generated:demo"):
        assert pair.prompt[-1].content == PAIRED


def test_an_empty_project_is_told_to_import_prompts(home, make_project):
    path = make_project("empty")
    with pytest.raises(WorkbenchError, match="There are no prompts in this project: import some first"):
        generate_pairs(path, GenerateConfig())


def test_held_out_prompts_get_no_candidates(listed):
    """A pair on a held-out prompt trains nothing: Generate… leaves those prompts to Evaluate."""
    from rlhf_workbench.core.generate import pick_prompts

    with Project.open(listed) as project:
        assert project.store.hold_out_prompts(4) == 4
        held = set(project.store.prompt_messages(project.store.heldout_prompt_ids()).values())
        picked = pick_prompts(project, None, "generated:demo", 10, 0)
        assert len(picked) == 2 and not {conversation_to_json(p) for p in picked} & held
        project.store.hold_out_prompts(2)
        with pytest.raises(WorkbenchError, match="no prompts in this project but held-out ones"):
            pick_prompts(project, None, "generated:demo", 10, 0)


@pytest.mark.slow
def test_cli_generate(listed, capsys):
    assert main(["generate", str(listed), "-n", "2", "--set", "max_new_tokens=16", "--set", "temperature=0.9"]) == 0
    out = capsys.readouterr().out
    assert "pairs for 2 prompts (origin generated:demo)" in out
    assert main(["generate", str(listed), "-n", "1", "--json", "--set", "seed=5", "--set", "max_new_tokens=8"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts["prompts"] == 1 and counts["origin"] == "generated:demo"

    assert main(["generate", str(listed), "--set", "temperature=0"]) == 1
    assert "temperature: must be between 0.01 and 10, not 0" in capsys.readouterr().err
    assert main(["generate", str(listed), "--set", "tempreature=1"]) == 1
    assert "unknown setting 'tempreature'" in capsys.readouterr().err
