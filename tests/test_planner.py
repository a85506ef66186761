"""Plot planning: rule-based splitting, story-file round trip, and the LLM path against a real local
HTTP server speaking the chat-completions protocol."""

from __future__ import annotations

import dataclasses
import json
import re
import socket
from pathlib import Path

import pytest
from fake_http import FakeServer
from pack_headers import write_pack_header

from storyreel.cli import build_parser
from storyreel.core.errors import UserError
from storyreel.story.format import Character, Entity, Plot, Story, load_story, resolved_plot_settings
from storyreel.story.planner import LLMOptions, parse_cast, plan_rule_based, plan_with_llm, split_events, write_story

CAST = {"Rex": "<rex>", "Mia": "<mia>"}


def test_four_sentences_give_four_plots_with_tokens():
    prose = ("Rex runs across the meadow. Mia opens the red door.\n"
             "Rex and mia watch the sunset together! The stars come out")
    story = plan_rule_based(prose, CAST, title="Evening")
    assert [p.text for p in story.plots] == [
        "Rex runs across the meadow.", "Mia opens the red door.",
        "Rex and mia watch the sunset together!", "The stars come out."]
    assert [p.prompt for p in story.plots] == [
        "<rex> runs across the meadow.", "<mia> opens the red door.",
        "<rex> and <mia> watch the sunset together!", "The stars come out."]
    assert [p.query for p in story.plots] == [p.text for p in story.plots]
    assert story.title == "Evening"
    assert story.characters == {"<rex>": Character(pack=Path("rex.safetensors"), name="Rex"),
                                "<mia>": Character(pack=Path("mia.safetensors"), name="Mia")}


def test_then_clauses_split_and_borrow_the_subject():
    prose = ("Rex sniffs the flowers, then chases a butterfly and then Mia laughs. Then, the rain starts. "
             "Mia sits, then reads, then sleeps. "
             "Rex and Mia run; then jump into the lake. Mr. Brown then waves. The dog barks and then he runs.")
    assert split_events(prose, tuple(CAST)) == [
        "Rex sniffs the flowers.", "Rex chases a butterfly.", "Mia laughs.", "The rain starts.",
        "Mia sits.", "Mia reads.", "Mia sleeps.",
        "Rex and Mia run.", "Rex and Mia jump into the lake.",
        "Mr. Brown then waves.",  # an abbreviation is no sentence end; a bare "then" is no split
        "The dog barks.", "He runs."]


def test_a_dangling_then_adds_no_plot():
    assert split_events("Rex runs. Then", tuple(CAST)) == ["Rex runs."]
    assert split_events("Mia sits. And then\n\nThen", tuple(CAST)) == ["Mia sits."]
    assert split_events("Rex barks and then", tuple(CAST)) == ["Rex barks."]


def test_empty_prose_is_a_user_error():
    with pytest.raises(UserError, match=r"^the story text has no sentences to plan$"):
        plan_rule_based(" \n\n ", CAST)


def test_write_then_load_round_trip(tmp_path):
    (tmp_path / "packs").mkdir()
    write_pack_header(tmp_path / "packs" / "rex.safetensors", "dog")
    story = Story(
        title="Round: trip", style="oil painting, 'quoted'", negative_prompt="",
        characters={"<rex>": Character(pack=(tmp_path / "packs" / "rex.safetensors"), name="Rex", word="dog",
                                       tau=0.25)},
        plots=[Plot(text="Rex runs: fast #1.", motion="zoom-in", frames=9, tau=0.0, seed=5, clip=3,
                    characters=["<rex>"]),
               Plot(text="Yes", query="null", prompt="true")],  # YAML look-alikes stay strings
    )
    first = tmp_path / "story.yaml"
    write_story(story, first)
    loaded = load_story(first)
    assert loaded == story
    assert "packs/rex.safetensors" in first.read_text()  # written relative to the story file

    second = tmp_path / "elsewhere" / "copy.yaml"
    write_story(loaded, second)
    again = load_story(second)
    assert again == story and again.characters["<rex>"].pack == (tmp_path / "packs" / "rex.safetensors")
    assert [resolved_plot_settings(again, i) for i in range(2)] == [resolved_plot_settings(story, i) for i in range(2)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "packs", "story.yaml"]  # no temp files


# ---------------------------------------------------------------------------------------------
# The LLM path: a real HTTP server on 127.0.0.1 answering /v1/chat/completions.


class ChatServer(FakeServer):
    """Answers each POST with the next scripted assistant message (`status` other than 200: an error body)."""

    def __init__(self, replies: list[str], status: int = 200):
        self.replies, self.status = list(replies), status
        super().__init__("127.0.0.1", self._answer)

    def _answer(self, handler) -> None:
        body = json.loads(self.requests[-1]["body"])
        content = self.replies.pop(0)
        answer = {"id": "chatcmpl-1", "object": "chat.completion", "model": body["model"],
                  "choices": [{"index": 0, "finish_reason": "stop",
                               "message": {"role": "assistant", "content": content}}]}
        data = json.dumps(answer if self.status == 200 else {"error": content}).encode()
        handler.send_response(self.status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)


PROSE = "Rex chases a ball in the park. Mia calls him home."
STAGE1 = {
    "plots": [
        {"text": "Rex chases a ball in the park.", "query": "a dog chasing a ball on grass",
         "prompt": "<rex> chases a red ball across the lawn", "motion": "pan-right", "background": "a sunny park",
         "entities": ["Rex", "ball"], "tau": 0.3, "layout_strength": 0.5},
        {"text": "Mia calls Rex home.", "query": "a girl calling from a porch",
         "prompt": "Mia calls <rex> from the porch", "motion": None, "background": "a sunny park",
         "entities": ["Mia", "Rex"], "tau": 0.8, "layout_strength": None},
    ],
    "entities": {"Rex": "Rex", "Mia": "Mia", "ball": "a red ball"},
    "consistency": {"entities": {"Rex": [0, 1], "ball": [0], "Mia": [1]}, "backgrounds": {"park": [0, 1]}},
}
STAGE2 = {"layouts": [
    {"plot": 0, "boxes": {"Rex": {"0": [0.05, 0.42, 0.4, 0.95], "7": [0.5, 0.4, 0.9, 0.95]},
                          "ball": {"0": [0.5, 0.7, 0.6, 0.8]}}},
    {"plot": 1, "boxes": {"Mia": {"0": [0.1, 0.1, 0.4, 0.9]}, "Rex": {"3": [0.6, 0.5, 0.9, 0.9]}}},
]}
BAD_BOX = {"layouts": [{**STAGE2["layouts"][0], "boxes": {**STAGE2["layouts"][0]["boxes"],
                                                          "ball": {"0": [0.6, 0.7, 0.4, 0.8]}}},
                       STAGE2["layouts"][1]]}
BAD_GROUP = {**STAGE1, "consistency": {**STAGE1["consistency"], "entities": {"Rex": [0, 1], "cat": [1]}}}


def test_llm_two_stage_plan_parses_into_a_story_file(tmp_path):
    packs = {}
    for token in CAST.values():
        packs[token] = tmp_path / f"{token.strip('<>')}.safetensors"
        write_pack_header(packs[token], "toy")
    with ChatServer(["Here is the plan:\n```json\n" + json.dumps(STAGE1) + "\n```", json.dumps(STAGE2)]) as server:
        story = plan_with_llm(PROSE, CAST, LLMOptions(server.url, "tiny-director", timeout=5), title="Walk",
                              packs=packs, frames=8)
    assert len(server.requests) == 2
    first, second = (json.loads(r["body"]) for r in server.requests)
    assert server.requests[0]["path"] == "/v1/chat/completions"
    assert first["model"] == "tiny-director" and first["temperature"] == 0
    assert [m["role"] for m in first["messages"]] == [m["role"] for m in second["messages"]] == ["system", "user"]
    assert first["messages"][1]["content"] == "Characters:\n- Rex: token <rex>\n- Mia: token <mia>\n\nStory:\n" + PROSE
    assert "frame indices from 0 to 7" in second["messages"][0]["content"]
    assert json.loads(second["messages"][1]["content"].split("Plan:\n", 1)[1])["plots"][0]["entities"] == {
        "Rex": "Rex", "ball": "a red ball"}
    assert story.title == "Walk"
    assert story.consistency == {"entities": {"Rex": [0, 1], "ball": [0], "Mia": [1]}, "backgrounds": {"park": [0, 1]}}
    assert story.plots == [
        Plot(text="Rex chases a ball in the park.", query="a dog chasing a ball on grass",
             prompt="<rex> chases a red ball across the lawn", motion="pan-right", tau=0.3, characters=["<rex>"],
             background="a sunny park", layout_strength=0.5,
             entities=[Entity("Rex", "Rex", {0: (0.05, 0.4, 0.4, 0.95), 7: (0.5, 0.4, 0.9, 0.95)}, "<rex>"),
                       Entity("ball", "a red ball", {0: (0.5, 0.7, 0.6, 0.8)})]),
        Plot(text="Mia calls Rex home.", query="a girl calling from a porch", prompt="<mia> calls <rex> from the porch",
             tau=0.8, characters=["<rex>", "<mia>"], background="a sunny park",
             entities=[Entity("Mia", "Mia", {0: (0.1, 0.1, 0.4, 0.9)}, "<mia>"),
                       Entity("Rex", "Rex", {3: (0.6, 0.5, 0.9, 0.9)}, "<rex>")]),
    ]
    write_story(story, tmp_path / "walk.yaml")  # the plan is a story file: it loads back as the same story
    text = (tmp_path / "walk.yaml").read_text()
    assert "0: [0.05, 0.4, 0.4, 0.95]" in text
    # it loads back as the same story, each character's class word read from its pack
    assert load_story(tmp_path / "walk.yaml") == dataclasses.replace(story, characters={
        token: dataclasses.replace(character, word="toy") for token, character in story.characters.items()})


@pytest.mark.parametrize("replies, what, problem", [
    (["I think the story has two scenes.", json.dumps(STAGE1), json.dumps(STAGE2)], "plan",
     "the reply must be one JSON object with keys 'plots', 'entities' and 'consistency'"),
    ([json.dumps(BAD_GROUP), json.dumps(STAGE1), json.dumps(STAGE2)], "plan",
     "consistency.entities['cat'] names an entity no plot lists"),
    ([json.dumps(STAGE1), json.dumps(BAD_BOX), json.dumps(STAGE2)], "layout",
     "plots[0].entities['ball'].boxes[0]: x0 0.6 >= x1 0.4"),
], ids=["not-json", "bad-group", "bad-box"])
def test_llm_invalid_reply_gets_one_retry_with_the_error(replies, what, problem):
    bad = replies[0] if what == "plan" else replies[1]
    with ChatServer(replies) as server:
        story = plan_with_llm(PROSE, CAST, LLMOptions(server.url + "/v1", "m", timeout=5), frames=8)
    assert len(server.requests) == 3
    retry = json.loads(server.requests[1 if what == "plan" else 2]["body"])["messages"]
    assert [m["role"] for m in retry] == ["system", "user", "assistant", "user"]
    assert retry[2]["content"] == bad
    assert retry[3]["content"] == f"That {what} is invalid: {problem}. Reply again with only the corrected JSON object."
    assert [p.motion for p in story.plots] == ["pan-right", None]
    assert story.plots[0].entities[1].boxes == {0: (0.5, 0.7, 0.6, 0.8)}


@pytest.mark.parametrize("replies, message", [
    (["{}", "no json here"], "an invalid plan twice: the reply must be one JSON object with keys 'plots', "
                             "'entities' and 'consistency'"),
    ([json.dumps(BAD_GROUP)] * 2, "an invalid plan twice: consistency.entities['cat'] names an entity no plot lists"),
    ([json.dumps(STAGE1), json.dumps(BAD_BOX), json.dumps(BAD_BOX)],
     "an invalid layout twice: plots[0].entities['ball'].boxes[0]: x0 0.6 >= x1 0.4"),
    ([json.dumps({**STAGE1, "plots": [{**STAGE1["plots"][0], "prompt": "<rex> chases a ball"},
                                      STAGE1["plots"][1]]})] * 2,
     "an invalid plan twice: plots[0].prompt must contain entity 'ball' as its description 'a red ball', "
     "word for word"),
], ids=["not-json", "bad-group", "bad-box", "phrase-not-in-prompt"])
def test_llm_invalid_twice_is_a_one_line_error(replies, message):
    with ChatServer(replies) as server:
        with pytest.raises(UserError) as info:
            plan_with_llm(PROSE, CAST, LLMOptions(server.url + "/v1/chat/completions", "m", timeout=5), frames=8)
    assert len(server.requests) == len(replies)
    assert str(info.value) == f"LLM m at {server.url}/v1/chat/completions returned {message}"


def test_llm_server_down_is_a_one_line_error():
    with socket.socket() as probe:  # a port nobody listens on: bind, read it, close
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(UserError) as info:
        plan_with_llm(PROSE, CAST, LLMOptions(f"http://127.0.0.1:{port}", "m", timeout=5))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"cannot reach LLM server http://127.0.0.1:{port}/v1/chat/completions (")
    assert message.endswith("); start it or leave out --llm")
    assert "refused" in message.lower()


def test_llm_http_error_is_a_one_line_error():
    with ChatServer(["model not loaded"], status=404) as server:
        with pytest.raises(UserError) as info:
            plan_with_llm(PROSE, CAST, LLMOptions(server.url, "m", timeout=5))
    assert str(info.value) == (f"LLM server {server.url}/v1/chat/completions answered HTTP 404: "
                               '{"error": "model not loaded"}')


# ---------------------------------------------------------------------------------------------
# `storyreel plan`


def run_plan(*argv: str) -> int:
    """`storyreel plan ARGV` in this process (so exceptions and network use can be observed)."""
    args = build_parser().parse_args(["plan", *argv])
    return args.run(args)


def test_run_plan_rule_based_writes_a_loadable_story_and_sends_nothing(tmp_path, monkeypatch, capsys):
    def no_network(*args, **kwargs):
        raise AssertionError("the rule-based planner must not open connections")

    monkeypatch.setattr("http.client.HTTPConnection.connect", no_network)
    (tmp_path / "tale.txt").write_text("Rex barks, then runs. The sun sets.")
    write_pack_header(tmp_path / "rex.safetensors", "dog")
    out = tmp_path / "out" / "tale.yaml"
    code = run_plan(str(tmp_path / "tale.txt"), "--out", str(out),
                    "--character", "Rex=<rex>=" + str(tmp_path / "rex.safetensors"),
                    "--character", "Mia=<mia>", "--json")
    assert code == 0
    captured = capsys.readouterr()
    printed = json.loads(captured.out)
    assert printed["out"] == str(out) and printed["planner"] == "rules" and printed["title"] == "tale"
    assert [p["prompt"] for p in printed["plots"]] == ["<rex> barks.", "<rex> runs.", "The sun sets."]
    mia_pack = out.parent.resolve() / "mia.safetensors"
    assert captured.err == (f"note: {out}: pack for <mia> not found yet ({mia_pack}); make it with "
                            "`storyreel character train IMAGES_DIR --token '<mia>' --init-word WORD "
                            f"--out {mia_pack}`\n")
    text = out.read_text()
    assert "pack: ../rex.safetensors" in text and "pack: mia.safetensors" in text
    assert "entities" not in text and "boxes" not in text  # no layout control unless asked
    laid_out = tmp_path / "out" / "laid_out.yaml"
    assert run_plan(str(tmp_path / "tale.txt"), "--out", str(laid_out), "--layout", "--quiet",
                    "--character", "Rex=<rex>=" + str(tmp_path / "rex.safetensors")) == 0
    assert [[(e.name, e.boxes) for e in p.entities or []] for p in load_story(laid_out).plots] == [
        [("Rex", {0: (0.05, 0.25, 0.95, 0.95)})], [("Rex", {0: (0.05, 0.25, 0.95, 0.95)})], []]

    write_pack_header(mia_pack, "girl")  # once the pack exists the story loads
    story = load_story(out)
    assert [p.text for p in story.plots] == ["Rex barks.", "Rex runs.", "The sun sets."]


def test_run_plan_user_errors(tmp_path):
    (tmp_path / "tale.txt").write_text("Rex barks.")
    with pytest.raises(UserError, match=r"^--llm needs --llm-model NAME"):
        run_plan(str(tmp_path / "tale.txt"), "--out", str(tmp_path / "t.yaml"), "--llm", "http://127.0.0.1:9")
    with pytest.raises(UserError, match=r"^--character 'Rex': expected NAME=TOKEN or NAME=TOKEN=PACK"):
        run_plan(str(tmp_path / "tale.txt"), "--out", str(tmp_path / "t.yaml"), "--character", "Rex")
    with pytest.raises(UserError, match=r"missing\.txt: cannot read the story text"):
        run_plan(str(tmp_path / "missing.txt"), "--out", str(tmp_path / "t.yaml"))
    assert not (tmp_path / "t.yaml").exists()


# ---------------------------------------------------------------------------------------------
# One front door: `storyreel plan` and the web app's Plan button make the same story


def test_parse_cast_reads_name_token_pack_specs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cast = parse_cast([" Rex = <rex> = packs/rex.safetensors ", "", "Mia=<mia>"])
    assert cast.tokens == {"Rex": "<rex>", "Mia": "<mia>"}
    assert cast.packs == {"<rex>": tmp_path / "packs" / "rex.safetensors"}  # relative to the current folder
    assert parse_cast(["Rex=<rex>=r.safetensors"], resolve_pack=lambda text: Path("/packs") / text).packs == {
        "<rex>": Path("/packs/r.safetensors")}
    for spec in ("Rex", "=<rex>", "Rex=", "Rex=<big rex>"):
        with pytest.raises(UserError, match=rf"^character line {re.escape(repr(spec))}: expected NAME=TOKEN or "
                                            r"NAME=TOKEN=PACK, e\.g\. Rex=<rex>$"):
            parse_cast([spec], "character line")


@pytest.mark.parametrize("planner", ["rules", "llm"])
def test_cli_plan_and_ui_plan_make_the_same_story(tmp_path, planner, capsys):
    from storyreel.cli import main
    from storyreel.ui.app import StoryreelApp, UIConfig

    (tmp_path / "tale.txt").write_text(PROSE, encoding="utf-8")
    write_pack_header(tmp_path / "rex.safetensors", "dog")
    out = tmp_path / "tale.yaml"
    characters = ["Rex=<rex>=" + str(tmp_path / "rex.safetensors"), "Mia=<mia>"]
    with ChatServer([json.dumps(STAGE1), json.dumps(STAGE2)] * 2) as server:
        llm_flags = ["--llm", server.url, "--llm-model", "m"] if planner == "llm" else []
        code = main(["plan", str(tmp_path / "tale.txt"), "--out", str(out), "--models", "tiny", "--quiet",
                     *[f"--character={spec}" for spec in characters], *llm_flags])
        assert code == 0, capsys.readouterr().err
        app = StoryreelApp(UIConfig(out=tmp_path, preset="tiny", temp_dir=tmp_path / "ui-temp"))
        shown, text = app.plan(str(out), PROSE, "\n".join(characters), *(llm_flags[1::2] or ["", ""]))
    assert len(server.requests) == (4 if planner == "llm" else 0)
    layout_requests = [json.loads(r["body"])["messages"][0]["content"] for r in server.requests[1::2]]
    assert all("frame indices from 0 to 15" in request for request in layout_requests)  # both: the preset's 16
    assert shown == "Planned 2 plots: check them, then Save."
    assert text == out.read_text(encoding="utf-8")
    assert "pack: rex.safetensors" in text and "title: tale" in text
    write_pack_header(tmp_path / "mia.safetensors", "girl")  # the story loads once every pack exists
    assert load_story(out).defaults["frames"] == 16  # the tiny preset's, which the LLM's boxes were asked for
