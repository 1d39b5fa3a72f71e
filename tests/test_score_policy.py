"""Policy backends: the openai backend against a loopback server (scripted, and serving the tiny model)."""
from __future__ import annotations

import subprocess
import sys

import pytest
from PIL import Image

from fake_openai import FakeOpenAI, Reply
from models_helpers import tiny_model, tiny_model_dir
from score_helpers import decode_data_url
from vtdata.console import VtError
from vttrain.models import build as models
from vttrain.rollout.policy import GenRequest, LocalPolicy, make_policy


def _msgs(image, question="How many dots?"):
    return [{"role": "system", "content": "Think, then answer."},
            {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": question}]}]


def _noise(size, seed):
    import numpy as np
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def test_openai_policy_inlines_images_and_maps_answers(monkeypatch):
    monkeypatch.setenv("VT_TEST_KEY", "sk-test")
    seen = []

    def responder(req):
        seen.append(req)
        url = req["messages"][1]["content"][0]["image_url"]["url"]
        w, h = decode_data_url(url).size
        return f"<answer>{w}x{h} {req['messages'][1]['content'][1]['text']}</answer>"

    imgs = [_noise((112, 56), 0), _noise((56, 56), 1)]
    with FakeOpenAI(responder) as srv:
        pol = make_policy("openai:served", base_url=srv.url, api_key_env="VT_TEST_KEY", max_retries=0)
        gens = pol.generate([GenRequest(_msgs(imgs[0], "q0"), n=3, temperature=0.7, max_new_tokens=17),
                             GenRequest(_msgs(imgs[1], "q1"), n=1, temperature=0.0, max_new_tokens=5)])
    assert len(seen) == 4 and all(r["n"] == 1 for r in seen)
    assert sorted((r["temperature"], r["max_tokens"]) for r in seen) == [(0.0, 5), (0.7, 17), (0.7, 17), (0.7, 17)]
    assert all(r["messages"][0] == {"role": "system", "content": "Think, then answer."} for r in seen)
    for r in seen:  # lossless: the server gets exactly the view's pixels
        q = r["messages"][1]["content"][1]["text"]
        sent = decode_data_url(r["messages"][1]["content"][0]["image_url"]["url"]).convert("RGB")
        assert sent.tobytes() == imgs[int(q[1])].tobytes()
    assert [(g.request, g.index) for g in gens] == [(0, 0), (0, 1), (0, 2), (1, 0)]
    assert [g.text for g in gens] == ["<answer>112x56 q0</answer>"] * 3 + ["<answer>56x56 q1</answer>"]
    assert all(g.generated_tokens > 0 and g.error is None for g in gens)
    _, proc = tiny_model()
    assert [g.visual_tokens for g in gens] == [models.visual_tokens(proc, (112, 56))] * 3 + \
        [models.visual_tokens(proc, (56, 56))]


def test_openai_policy_balances_several_servers(monkeypatch):
    """`--policy-base-url A,B`: every answer comes back once, and a slow server gets fewer requests."""
    monkeypatch.setenv("VT_TEST_KEY", "sk-test")
    with FakeOpenAI(lambda req: "<answer>fast</answer>") as fast, \
            FakeOpenAI(lambda req: "<answer>slow</answer>", latency=0.3) as slow:
        pol = make_policy("openai:served", base_url=f"{fast.url}, {slow.url}", api_key_env="VT_TEST_KEY",
                          max_retries=0, concurrency=4)
        gens = pol.generate([GenRequest(_msgs(_noise((56, 56), i)), n=3) for i in range(8)])
    assert len(gens) == 24 and all(g.error is None for g in gens)
    assert fast.requests + slow.requests == 24
    assert slow.requests >= 1 and fast.requests > 2 * slow.requests
    assert sorted(g.text for g in gens) == sorted(["<answer>fast</answer>"] * fast.requests
                                                  + ["<answer>slow</answer>"] * slow.requests)


def test_openai_policy_reuses_its_connections_across_calls(monkeypatch):
    """score-judge calls the policy once per chunk: the connections of the first call serve the next ones."""
    monkeypatch.setenv("VT_TEST_KEY", "sk-test")
    with FakeOpenAI(lambda req: "<answer>ok</answer>") as srv:
        pol = make_policy("openai:served", base_url=srv.url, api_key_env="VT_TEST_KEY", max_retries=0,
                          concurrency=2)
        for chunk in range(3):  # each call from a fresh event loop, as separate commands' chunks would
            gens = pol.generate([GenRequest(_msgs(_noise((56, 56), chunk)), n=4)])
            assert [g.text for g in gens] == ["<answer>ok</answer>"] * 4
        pol.close()
        pol.close()  # idempotent
    assert srv.requests == 12 and 1 <= srv.connections <= 2


def test_openai_policy_reports_failures_without_text(monkeypatch):
    monkeypatch.setenv("VT_TEST_KEY", "sk-test")
    with FakeOpenAI(lambda req: "<answer>ok</answer>") as srv:
        srv.push(Reply(status=500))
        pol = make_policy("openai:served", base_url=srv.url, api_key_env="VT_TEST_KEY", max_retries=0,
                          concurrency=1)
        gens = pol.generate([GenRequest(_msgs(_noise((56, 56), 2)), n=2)])
    assert sorted((g.error is None, g.text) for g in gens) == [(False, ""), (True, "<answer>ok</answer>")]
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(VtError, match="OPENAI_API_KEY"):
        make_policy("openai:gpt-4o")
    for bad in ("gpt-4o", "local:", "vllm:x"):
        with pytest.raises(VtError):
            make_policy(bad)


def test_openai_policy_serving_the_tiny_model_matches_local(monkeypatch):
    """A loopback server that runs the tiny model: same greedy text as the local backend."""
    monkeypatch.setenv("VT_TEST_KEY", "sk-test")
    model, proc = tiny_model()
    local = LocalPolicy(str(tiny_model_dir()), model=model, processor=proc)

    def serve(req):
        msgs = []
        for m in req["messages"]:
            c = m["content"]
            if isinstance(c, list):
                c = [{"type": "image", "image": decode_data_url(p["image_url"]["url"]).convert("RGB")}
                     if p["type"] == "image_url" else p for p in c]
            msgs.append({"role": m["role"], "content": c})
        g = local.generate([GenRequest(msgs, n=1, temperature=req["temperature"], max_new_tokens=req["max_tokens"])])
        return g[0].text

    reqs = [GenRequest(_msgs(_noise((112, 112), s), f"what is {s}?"), n=1, temperature=0.0, max_new_tokens=12)
            for s in range(3)]
    with FakeOpenAI(serve) as srv:
        remote = make_policy("openai:tiny", base_url=srv.url, api_key_env="VT_TEST_KEY").generate(reqs)
    direct = local.generate(reqs)
    assert [g.text for g in remote] == [g.text for g in direct]
    assert len({g.text for g in direct}) > 1  # the images matter
    assert [g.visual_tokens for g in remote] == [g.visual_tokens for g in direct]


def test_score_judge_cli_errors_are_one_line(tmp_path):
    from score_helpers import small_data
    data = small_data()
    cases = [["--data", str(tmp_path / "nope"), "--policy", f"local:{tiny_model_dir()}"],
             ["--data", str(data), "--policy", "bogus"],
             ["--data", str(data), "--policy", f"local:{tiny_model_dir()}", "--rollouts", "4", "--needs-high-gap", "5"],
             ["--data", str(data), "--policy", f"local:{tiny_model_dir()}", "--split", "test"],
             ["--data", str(data), "--policy", f"local:{tiny_model_dir()}", "--concurrency", "0"],
             ["--data", str(data), "--policy", f"local:{tiny_model_dir()}", "--judge-base-url", "http://h"]]
    for args in cases:
        r = subprocess.run([sys.executable, "-m", "vt", "score-judge", "--db", str(tmp_path / "x.duckdb"), *args],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.strip().startswith("error:") and "Traceback" not in r.stderr, r.stderr


def test_local_policy_samples_batches_and_counts_tokens():
    model, proc = tiny_model()
    local = LocalPolicy(str(tiny_model_dir()), model=model, processor=proc, batch_size=3)
    img_a, img_b = _noise((112, 56), 5), _noise((224, 112), 6)
    gens = local.generate([GenRequest(_msgs(img_a), n=5, temperature=1.0, max_new_tokens=10),
                           GenRequest(_msgs(img_b), n=3, temperature=0.0, max_new_tokens=10)])
    assert [(g.request, g.index) for g in gens] == [(0, i) for i in range(5)] + [(1, i) for i in range(3)]
    sampled, greedy = [g.text for g in gens[:5]], [g.text for g in gens[5:]]
    assert len(set(sampled)) > 1 and len(set(greedy)) == 1  # sampling vs greedy, across batch boundaries
    assert all(1 <= g.generated_tokens <= 10 and (g.finish_reason == "stop" or g.generated_tokens == 10)
               for g in gens)
    assert {g.visual_tokens for g in gens[:5]} == {models.visual_tokens(proc, img_a)}
    assert {g.visual_tokens for g in gens[5:]} == {models.visual_tokens(proc, img_b)} != {gens[0].visual_tokens}


def test_openai_policy_retries_transient_errors_and_sends_the_key(monkeypatch):
    """vttrain.rollout.policy._Post retries as the SDK did: 429 (its Retry-After) and 5xx, then the reply; 400 is final.
    The bearer key and the JSON body (with a per-sample seed) reach the server."""
    monkeypatch.setenv("VT_TEST_KEY", "sk-test")
    seen = []

    def responder(req):
        seen.append(req)
        return "<answer>ok</answer>"
    with FakeOpenAI(responder) as srv:
        srv.push(Reply(status=429, headers={"Retry-After": "0"}), Reply(status=500))
        pol = make_policy("openai:served", base_url=srv.url, api_key_env="VT_TEST_KEY", max_retries=2,
                          concurrency=1, seed=7)
        gens = pol.generate([GenRequest(_msgs(_noise((56, 56), 3)), n=2)])
        assert [(g.error, g.text) for g in gens] == [(None, "<answer>ok</answer>")] * 2
        assert srv.requests == 4
        srv.push(Reply(status=400))
        bad = pol.generate([GenRequest(_msgs(_noise((56, 56), 4)), n=1)])
        pol.close()
    assert bad[0].error.startswith("HTTP 400") and bad[0].text == "" and srv.auth == {"Bearer sk-test"}
    assert sorted(r["seed"] for r in seen) == [7, 8] and all(r["model"] == "served" and r["n"] == 1 for r in seen)
