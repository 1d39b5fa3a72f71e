"""API key scope: $OPENAI_API_KEY goes to OpenAI's API only. A custom base URL (a local vLLM, someone
else's server) gets a key only when the user names the variable that holds it."""
from PIL import Image

from fake_openai import FakeOpenAI
from vtdata.judge import JudgeItem, make_judge
from vttrain.rollout.policy import GenRequest, make_policy

FAST = dict(backoff_base=0.01, backoff_max=0.05, timeout=5)


def _ask_policy(url, **kw):
    msgs = [{"role": "user", "content": [{"type": "image", "image": Image.new("RGB", (56, 56))},
                                         {"type": "text", "text": "q"}]}]
    return make_policy("openai:served", base_url=url, max_retries=0, **kw).generate([GenRequest(msgs, n=1)])


def _ask_judge(url, **kw):
    j = make_judge("openai:m", base_url=url, shortcut=False, **FAST, **kw)
    v = j.judge([JudgeItem("q?", ["a"], "<answer>b</answer>")])
    j.close()
    return v


def test_openai_key_is_not_sent_to_a_custom_base_url(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-secret")
    monkeypatch.setenv("VT_LOCAL_KEY", "sk-local")
    with FakeOpenAI(lambda req: "<answer>a</answer>") as srv:
        assert _ask_policy(srv.url)[0].error is None
        assert srv.auth == {"Bearer EMPTY"}
        _ask_policy(srv.url, api_key_env="VT_LOCAL_KEY")            # named: sent
        assert srv.auth == {"Bearer EMPTY", "Bearer sk-local"}
    with FakeOpenAI() as srv:
        assert _ask_judge(srv.url)[0].status == "ok"
        assert srv.auth == {"Bearer EMPTY"}
        _ask_judge(srv.url, api_key_env="VT_LOCAL_KEY")
        assert srv.auth == {"Bearer EMPTY", "Bearer sk-local"}
    # OpenAI's own API (no base URL) still gets $OPENAI_API_KEY; a named variable is used as named
    from vtdata.judge.llm import api_key
    assert api_key(None, None) == "sk-openai-secret" and api_key("VT_LOCAL_KEY", None) == "sk-local"
    monkeypatch.delenv("OPENAI_API_KEY")
    assert api_key(None, None) is None and api_key("VT_UNSET_KEY", "http://x") == "EMPTY"
