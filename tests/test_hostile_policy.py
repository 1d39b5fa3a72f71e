"""Round 3, class 5 (issue 30's "policy servers that hang or crash vt"): the openai policy has a total
deadline per request (--policy-timeout), stops at the first 401/403/404, records malformed replies as
errors, and never holds a reply larger than its token budget can produce (vttrain.rollout.policy)."""
from __future__ import annotations

import socket
import threading
import time

import pytest
from PIL import Image

from fake_openai import FakeOpenAI, Reply
from vtdata.console import VtError
from vttrain.rollout.policy import GenRequest, make_policy


def _req(n=1, max_new_tokens=64):
    img = Image.new("RGB", (56, 56), (10, 20, 30))
    return GenRequest([{"role": "user", "content": [{"type": "image", "image": img}, {"type": "text", "text": "q"}]}],
                      n=n, max_new_tokens=max_new_tokens)


def _policy(url, **kw):
    kw.setdefault("max_retries", 0)
    kw.setdefault("concurrency", 1)
    return make_policy("openai:m", base_url=url, **kw)


class Dribble:
    """A server that answers with headers and then one byte every 0.5 s, for ever."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        self.stop = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn):
        try:
            conn.recv(1 << 20)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
            t0 = time.monotonic()
            while not self.stop and time.monotonic() - t0 < 20:  # gives up in the end (old code waits it out)
                conn.sendall(b" ")
                time.sleep(0.5)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self.stop = True
        self.sock.close()


def test_a_dribbling_server_cannot_hold_a_request_past_the_deadline():
    srv = Dribble()
    try:
        pol = _policy(srv.url, timeout_s=2.0)
        t0 = time.monotonic()
        try:
            gens = pol.generate([_req()])
        finally:
            pol.close()
        took = time.monotonic() - t0
    finally:
        srv.close()
    # the request's own clock (the first call also imports the HTTP stack, slow on a loaded machine)
    assert gens[0].error is not None and "timeout" in gens[0].error and gens[0].latency_s < 10, (took, gens)


def test_policy_timeout_flag_on_eval_and_score():
    from vtdata.config import build
    from vttrain.eval import EvalConfig
    from vttrain.score import ScoreConfig
    assert build(ScoreConfig, {"data": ".", "policy": "openai:m", "policy_timeout": "5"}).policy_timeout == 5.0
    assert "policy_timeout" in EvalConfig.__dataclass_fields__


@pytest.mark.parametrize("raw", [b'{"choices": ["x"]}', b'{"choices": [{"message": "x"}]}',
                                 b'{"choices": [{"message": {"content": "a"}}], "usage": {"completion_tokens": "many"}}',
                                 b'[1, 2]'])
def test_a_malformed_reply_is_a_recorded_error(raw):
    with FakeOpenAI() as srv:
        srv.push(Reply(raw=raw))
        pol = _policy(srv.url)
        try:
            gens = pol.generate([_req()])
        finally:
            pol.close()
    assert gens[0].error and gens[0].text == ""


def test_404_stops_at_the_first_request():
    with FakeOpenAI() as srv:
        srv.push(*[Reply(status=404)] * 40)
        pol = _policy(srv.url)
        try:
            with pytest.raises(VtError, match="404"):
                pol.generate([_req(n=8)])
        finally:
            pol.close()
        assert srv.requests == 1


def test_a_reply_larger_than_the_budget_is_refused_not_stored():
    with FakeOpenAI(lambda req: "y" * (20 << 20)) as srv:
        pol = _policy(srv.url)
        try:
            gens = pol.generate([_req(max_new_tokens=64)])
        finally:
            pol.close()
    assert gens[0].error and "larger" in gens[0].error and len(gens[0].text) == 0
