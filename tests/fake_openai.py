"""A loopback OpenAI-compatible server for tests and benchmarks (real HTTP on 127.0.0.1).

    with FakeOpenAI(latency=0.05) as srv:          # random free port, background thread
        client = openai.OpenAI(base_url=srv.url, api_key="x")
        srv.push(Reply(status=429, headers={"Retry-After": "1"}), Reply(status=500))  # next requests
        ...
        srv.requests, srv.connections, srv.max_in_flight, srv.replied, srv.reply_delay   # counters
        srv.auth                                                         # Authorization headers seen

Serves POST /v1/chat/completions. What a request gets:
  1. the next scripted `Reply` pushed with `push()` (faults: status codes with headers, `delay`
     seconds before answering (a slow reply), `raw` bytes (malformed JSON), `content` text);
  2. otherwise `responder(request_json)`: a str (the reply content) or a list of str (n choices) or
     a Reply. The default responder plays a judge: 'Verdict <tag>: 1' (the tag of the request's system
     prompt) if the text between <prediction> tags
     equals the ground-truth line (case-insensitively), else 'Verdict <tag>: 0'. Pass your own to fake a
     policy (it gets the whole request: messages with image parts, n, temperature, ...).
`latency` seconds are added to every reply. `python tests/fake_openai.py --latency 0.05` runs it
in its own process and prints its URL (bench/judge.py uses it with --stdin to tie its lifetime).
"""
from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class Reply:
    status: int = 200
    content: str | list[str] | None = None
    headers: dict = field(default_factory=dict)
    delay: float = 0.0
    raw: bytes | None = None
    error: str = "injected fault"


_PRED = re.compile(r"<prediction>\n(.*)\n</prediction>", re.DOTALL)
_GT = re.compile(r"\*\*Ground Truth Answer\*\*: (.*)")
_TAG = re.compile(r"^Verdict ([0-9a-f]+): 1$", re.MULTILINE)


def parts(request: dict) -> tuple[str, str, str, str]:
    """(the verdict tag from the system prompt, question line, ground truth, prediction) of a judge request."""
    system = next((m["content"] for m in request["messages"] if m["role"] == "system"), "")
    user = next((m["content"] for m in request["messages"] if m["role"] == "user"), "")
    tag, pred, gt = _TAG.search(system), _PRED.search(user), _GT.search(user)
    return (tag.group(1) if tag else "", user, gt.group(1).strip() if gt else "", pred.group(1) if pred else "")


def verdict(request: dict, score: int) -> str:
    """The verdict line an honest judge ends with: the format its system prompt asks for (the
    request's tagged line; `Score: x` for a prompt without a tag)."""
    tag = parts(request)[0]
    return f"Verdict {tag}: {score}" if tag else f"Score: {score}"


def judge_responder(request: dict) -> str:
    _, _, gt, pred = parts(request)
    ok = bool(pred and gt and pred.strip().lower() == gt.lower())
    return f"The prediction {'matches' if ok else 'does not match'}.\n{verdict(request, int(ok))}"


class FakeOpenAI:
    def __init__(self, responder: Callable[[dict], object] | None = None, latency: float = 0.0,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.responder = responder or judge_responder
        self.latency = latency
        self.host, self.port = host, port
        self.script: deque[Reply] = deque()
        self.requests = 0
        self.connections = 0          # TCP connections accepted
        self.in_flight = 0
        self.max_in_flight = 0
        self.replied = 0              # 200 replies written, and the sum of their delays from request to reply
        self.reply_delay = 0.0
        self.log: list[dict] = []
        self.auth: set[str] = set()   # Authorization headers seen (API keys sent to this server)
        self.keep_log = True
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def push(self, *replies: Reply) -> None:
        """Script the next requests' replies (in arrival order)."""
        with self._lock:
            self.script.extend(replies)

    def reset(self) -> None:
        with self._lock:
            self.requests = self.max_in_flight = self.replied = 0
            self.reply_delay = 0.0
            self.log.clear()
            self.script.clear()

    # -- server -------------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, v in
                           (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.auth.add(headers.get("authorization", ""))
                await self._respond(method, path, body, writer)
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _respond(self, method: str, path: str, body: bytes, writer) -> None:
        if method != "POST" or not path.rstrip("/").endswith("/chat/completions"):
            return self._send(writer, 404, json.dumps({"error": {"message": f"no route {path}"}}).encode())
        t0 = time.monotonic()
        with self._lock:
            self.requests += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            scripted = self.script.popleft() if self.script else None
        try:
            req = json.loads(body)
            if self.keep_log:
                self.log.append(req)
            reply = scripted
            if reply is None:
                out = self.responder(req)
                reply = out if isinstance(out, Reply) else Reply(content=out)
            if self.latency or reply.delay:
                await asyncio.sleep(self.latency + reply.delay)
            if reply.raw is not None:
                return self._send(writer, reply.status, reply.raw, reply.headers)
            if reply.status != 200:
                err = {"error": {"message": reply.error, "type": "fake", "code": reply.status}}
                return self._send(writer, reply.status, json.dumps(err).encode(), reply.headers)
            if reply.content is None:
                out = self.responder(req)
                reply.content = out.content if isinstance(out, Reply) else out
            contents = reply.content if isinstance(reply.content, list) else [reply.content] * int(req.get("n") or 1)
            prompt_tokens = sum(len(str(m.get("content", ""))) for m in req.get("messages", [])) // 4
            completion = sum(len(c) // 4 + 1 for c in contents)
            data = {"id": f"chatcmpl-{self.requests}", "object": "chat.completion", "created": int(time.time()),
                    "model": req.get("model", "fake"),
                    "choices": [{"index": i, "message": {"role": "assistant", "content": c}, "finish_reason": "stop"}
                                for i, c in enumerate(contents)],
                    "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
                              "total_tokens": prompt_tokens + completion}}
            self._send(writer, 200, json.dumps(data).encode(), reply.headers)
            self.replied += 1
            self.reply_delay += time.monotonic() - t0
        finally:
            with self._lock:
                self.in_flight -= 1

    @staticmethod
    def _send(writer, status: int, body: bytes, headers: dict | None = None) -> None:
        reason = {200: "OK", 404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error"}.get(status, "Status")
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(body)}\r\n{extra}\r\n".encode("latin-1") + body)

    async def _serve(self, started: threading.Event) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        started.set()
        async with self._server:
            await self._server.serve_forever()

    def start(self) -> "FakeOpenAI":
        started = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run():
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(self._serve(started))
            except asyncio.CancelledError:
                pass
        self._thread = threading.Thread(target=run, name="fake-openai", daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("fake OpenAI server did not start")
        return self

    def stop(self) -> None:
        if self._loop:
            def _close():
                self._server.close()
                for task in asyncio.all_tasks(self._loop):
                    task.cancel()
            self._loop.call_soon_threadsafe(_close)
            self._thread.join(timeout=5)
            self._loop = None

    def __enter__(self) -> "FakeOpenAI":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":  # a standalone server process (benchmarks, trying `vt judge` offline)
    import argparse
    import sys
    ap = argparse.ArgumentParser(description="loopback OpenAI-compatible judge server")
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--stdin", action="store_true", help="answer each stdin line with the counters; exit at EOF")
    ap.add_argument("--reply", help="answer every request with this text (a policy) instead of judging")
    args = ap.parse_args()
    srv = FakeOpenAI(responder=(lambda _req: args.reply) if args.reply is not None else None,
                     latency=args.latency, port=args.port)
    srv.keep_log = False
    srv.start()
    print(srv.url, flush=True)
    try:
        if args.stdin:
            for line in sys.stdin:
                print(json.dumps({"requests": srv.requests, "max_in_flight": srv.max_in_flight,
                                  "cpu_s": time.process_time(), "replied": srv.replied,
                                  "reply_delay_s": srv.reply_delay}), flush=True)
        else:
            threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        srv.stop()
