"""Policy backends: answer chat messages with images, k samples each, behind one async interface.

    policy = make_policy("local:ckpt/tiny")                       # transformers generate, batched
    policy = make_policy("openai:Qwen/Qwen2.5-VL-7B-Instruct",    # any OpenAI-compatible vision API,
                         base_url="http://localhost:8000/v1")     # e.g. `vllm serve`
    gens = await policy.agenerate([GenRequest(messages, n=8, temperature=1.0, max_new_tokens=512)])

Messages are chat messages whose content is a string or a list of parts `{"type": "text", "text": ...}`
/ `{"type": "image", "image": PIL.Image}`. `agenerate` returns a flat list of `Generation`s in request
order, n per request, each tagged with its `request` and `index` (0..n-1). A generation that failed
(openai backend: the request kept failing) has `error` set and empty text: callers must not judge it.

- local: prompts are left-padded and batched (`batch_size` rows per `generate`, a row = one of the n
  samples of a request); sampling when temperature > 0, greedy at 0. Visual tokens are counted from the
  input ids (image pad tokens), generated tokens up to and including the end-of-turn token.
- openai: one chat completion per sample (n=1, so token usage is exact per sample), images inlined as
  base64 PNG data URLs, at most `concurrency` requests in flight, the client's retries on transient
  errors. `base_url` may name several servers, comma-separated (e.g. one `vllm serve` per GPU node):
  each request goes to the server with the fewest requests in flight. Visual tokens are computed for Qwen2.5-VL (a 28x28 pixel area per token) from the image sizes:
  start vLLM with `--mm-processor-kwargs '{"max_pixels": 16777216}'` so it does not shrink vt's views.
  The API key comes from the environment variable named by `api_key_env` (never from a file); with
  none named, $OPENAI_API_KEY goes to OpenAI's API only and a custom `base_url` gets no real key.
"""
from __future__ import annotations

import asyncio
import base64
import io
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from vtdata.console import VtError, debug, redact
from vtdata.resolution import visual_tokens
from vttrain.rollout.http import PolicyHTTPError, _chat_urls, _Post


@dataclass
class GenRequest:
    """One prompt to sample `n` answers for."""
    messages: list[dict]
    """The conversation: role + content (a string or text/image parts with PIL images)."""
    n: int = 1
    """Answers to sample for this prompt."""
    temperature: float = 1.0
    """Sampling temperature; 0 = greedy."""
    max_new_tokens: int = 512
    """Longest answer in tokens."""
    top_p: float = 1.0
    """Nucleus sampling threshold."""
    seeds: tuple[int, ...] | None = None
    """One seed per answer (the rollout engine derives them from the rollouts' keys, so that a resumed run
    asks the server for the same samples as an uninterrupted one); None = by position in the call. The
    openai policy sends `seed` (its --seed plus this) where it has a seed; the local policy seeds once."""


@dataclass
class Generation:
    """One sampled answer."""
    text: str
    """The decoded answer (special tokens removed); empty when `error` is set."""
    generated_tokens: int
    """Tokens generated, the end-of-turn token included."""
    visual_tokens: int
    """Image tokens in the prompt the answer was generated from."""
    latency_s: float
    """Wall time of the generate call (local: the whole batch) or of the request (openai)."""
    finish_reason: str = "stop"
    """'stop' | 'length' | 'error'."""
    request: int = 0
    """Position of its request in the `agenerate` call."""
    index: int = 0
    """Which of the request's n samples (0..n-1)."""
    error: str | None = None
    """Why the backend gave no answer (callers must not judge such a generation)."""


def as_request(r: Any) -> GenRequest:
    """A GenRequest from a GenRequest, a dict of its fields, or a (messages, n, temperature, max_new_tokens) tuple."""
    if isinstance(r, GenRequest):
        return r
    if isinstance(r, dict):
        return GenRequest(**r)
    if isinstance(r, (tuple, list)):
        return GenRequest(*r)
    raise TypeError(f"not a generation request: {type(r).__name__}")


def message_images(messages: Sequence[dict]) -> list:
    """The PIL images of a conversation, in order."""
    out = []
    for m in messages:
        if isinstance(m.get("content"), list):
            out += [p["image"] for p in m["content"] if p.get("type") == "image" or "image" in p]
    return out


class Policy:
    identity: str = "policy"

    async def agenerate(self, requests: Sequence[GenRequest]) -> list[Generation]:
        raise NotImplementedError

    def generate(self, requests: Sequence[GenRequest]) -> list[Generation]:
        """Blocking form of `agenerate`; safe to call from inside a running event loop."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.agenerate(requests))
        box: dict = {}

        def work():
            try:
                box["r"] = asyncio.run(self.agenerate(requests))
            except BaseException as err:  # re-raised in the caller's thread
                box["e"] = err
        t = threading.Thread(target=work)
        t.start()
        t.join()
        if "e" in box:
            raise box["e"]
        return box["r"]

    def close(self) -> None:
        pass


class LocalPolicy(Policy):
    """transformers `generate` on a checkpoint loaded with `vttrain.models.build.load`."""

    def __init__(self, path: str, device: str | None = None, dtype: Any = None, batch_size: int = 16,
                 seed: int = 0, chat_template: str | None = None, model=None, processor=None):
        import torch
        from vttrain.models import build as models
        if model is None:
            model, processor = models.load(path, device=device, dtype=dtype)
        self.model, self.processor = model, processor
        self.batch_size = max(1, int(batch_size))
        self.chat_template = chat_template
        local = Path(path)
        self.identity = f"local:{local.resolve() if local.is_dir() else path}"
        self.device = next(model.parameters()).device
        torch.manual_seed(seed)
        tok = processor.tokenizer
        self.image_pad = tok.convert_tokens_to_ids("<|image_pad|>")
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        gc = getattr(model, "generation_config", None)
        eos = gc.eos_token_id if gc is not None and gc.eos_token_id is not None else tok.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])
        self._lock = threading.Lock()  # one generate at a time on this model

    async def agenerate(self, requests):
        reqs = [as_request(r) for r in requests]
        return await asyncio.to_thread(self._generate_all, reqs)

    def _generate_all(self, reqs: list[GenRequest]) -> list[Generation]:
        rows = [(i, j) for i, r in enumerate(reqs) for j in range(r.n)]
        # rows of one batch share the sampling settings
        by_setting: dict[tuple, list] = {}
        for i, j in rows:
            r = reqs[i]
            by_setting.setdefault((r.temperature, r.top_p, r.max_new_tokens), []).append((i, j))
        done: dict[tuple, Generation] = {}
        with self._lock:
            for (temp, top_p, max_new), group in by_setting.items():
                for s in range(0, len(group), self.batch_size):
                    chunk = group[s:s + self.batch_size]
                    for (i, j), g in zip(chunk, self._generate_batch([reqs[i].messages for i, _ in chunk],
                                                                      temp, top_p, max_new)):
                        g.request, g.index = i, j
                        done[(i, j)] = g
        return [done[k] for k in rows]

    def _generate_batch(self, conversations, temperature, top_p, max_new_tokens) -> list[Generation]:
        import torch
        proc = self.processor
        kw = {"chat_template": self.chat_template} if self.chat_template else {}
        texts = [proc.apply_chat_template(c, add_generation_prompt=True, tokenize=False, **kw) for c in conversations]
        images = [im for c in conversations for im in message_images(c)]
        batch = proc(text=texts, images=images or None, return_tensors="pt", padding=True)
        batch = {k: (v.to(self.device) if hasattr(v, "to") else v) for k, v in batch.items()}
        gen_kw = dict(max_new_tokens=int(max_new_tokens), pad_token_id=self.pad_id)
        if temperature and temperature > 0:
            gen_kw.update(do_sample=True, temperature=float(temperature), top_p=float(top_p), top_k=0)
        else:
            gen_kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = self.model.generate(**batch, **gen_kw)
        latency = time.perf_counter() - t0
        prompt_len = batch["input_ids"].shape[1]
        visual = (batch["input_ids"] == self.image_pad).sum(dim=1).tolist()
        gens = []
        for row, vt in zip(out[:, prompt_len:].tolist(), visual):
            n, finish = len(row), "length"
            for k, tid in enumerate(row):
                if tid in self.eos_ids:
                    n, finish = k + 1, "stop"
                    break
            text = proc.tokenizer.decode(row[:n], skip_special_tokens=True)
            gens.append(Generation(text=text, generated_tokens=n, visual_tokens=int(vt), latency_s=latency,
                                   finish_reason=finish))
        return gens


def image_data_url(image) -> str:
    """A lossless PNG data URL; compression level 1: the same pixels for a fraction of the default level's
    CPU (the client's largest cost per request on demo-size views; bench/score.py)."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def to_openai_messages(messages: Sequence[dict]) -> list[dict]:
    """vt chat messages -> OpenAI chat messages with images inlined as base64 data URLs."""
    out = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            parts = []
            for p in content:
                if p.get("type") == "image" or "image" in p:
                    parts.append({"type": "image_url", "image_url": {"url": image_data_url(p["image"])}})
                else:
                    parts.append({"type": "text", "text": p.get("text", "")})
            content = parts
        out.append({"role": "user" if m["role"] == "tool" else m["role"], "content": content})
    return out


REPLY_BYTES = 64 << 10          # a reply's envelope (ids, usage, JSON), whatever the budget
REPLY_BYTES_PER_TOKEN = 64      # a token is a few characters; JSON-escaped bytes at most ~6 each: ample


async def _deadline(coro, seconds: float):
    """`coro` within a total deadline (connect, retries and every byte of the reply): a server that sends
    one byte now and then cannot hold a request past it."""
    if hasattr(asyncio, "timeout"):
        async with asyncio.timeout(seconds):
            return await coro
    return await asyncio.wait_for(coro, seconds)


def parse_reply(reply) -> tuple[str, int, str]:
    """(text, completion tokens, finish reason) of a chat completion; a ValueError naming what is wrong
    for anything else (`{"choices": ["x"]}`, a non-integer token count), recorded as an error."""
    if not isinstance(reply, dict):
        raise ValueError(f"reply is {type(reply).__name__}, not an object")
    choices = reply.get("choices")
    if not isinstance(choices, list) or not choices:
        raise ValueError("empty response (no choices)")
    choice = choices[0]
    if not isinstance(choice, dict) or not isinstance(choice.get("message") or {}, dict):
        raise ValueError("choices[0] is not a chat completion choice")
    text = (choice.get("message") or {}).get("content") or ""
    if not isinstance(text, str):
        raise ValueError(f"message content is {type(text).__name__}, not text")
    usage = reply.get("usage") or {}
    if not isinstance(usage, dict):
        raise ValueError("usage is not an object")
    n_tok = usage.get("completion_tokens") or 0
    if isinstance(n_tok, bool) or not isinstance(n_tok, int) or not 0 <= n_tok < 2**31:
        raise ValueError(f"usage.completion_tokens is {str(n_tok)[:40]!r}, not a token count")
    finish = choice.get("finish_reason") or "stop"
    return text, n_tok, finish if isinstance(finish, str) else "stop"


class OpenAIPolicy(Policy):
    """An OpenAI-compatible vision chat endpoint (OpenAI, vLLM, SGLang, ...).

    Requests go through `_Post` (aiohttp, one session per server URL): its sessions live on the policy's own
    event loop thread for the life of the policy, so connections are reused from one chunk of a command to
    the next; `close()` ends them."""

    def __init__(self, model: str, base_url: str | None = None, api_key_env: str | None = None,
                 concurrency: int = 32, timeout_s: float = 600.0, max_retries: int = 3, seed: int | None = None):
        self.model, self.base_url = model, base_url
        from vtdata.judge.llm import endpoints, require_key
        self.base_urls = endpoints(base_url)
        self.api_key_env, self.concurrency = api_key_env, max(1, int(concurrency))
        self.timeout_s, self.max_retries, self.seed = timeout_s, max_retries, seed
        self._key = require_key(api_key_env, base_url, who="policy")
        self.identity = f"openai:{model}"  # the server URL is transport: moving it keeps the rollouts
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clients: list[list] | None = None  # [client, URL, requests in flight] per client
        self._lock = threading.Lock()
        self._fatal: str | None = None  # 401/403/404: every later request fails at once, the command stops
        if not 0 < float(timeout_s) < float("inf"):
            raise VtError(f"--policy-timeout must be a positive number of seconds, got {timeout_s!r}")

    async def agenerate(self, requests):
        from vtdata.judge import start_loop
        with self._lock:
            if self._loop is None:
                self._loop, self._thread = start_loop("vt-policy")
        fut = asyncio.run_coroutine_threadsafe(self._generate([as_request(r) for r in requests]), self._loop)
        try:
            return await asyncio.wrap_future(fut)
        except asyncio.CancelledError:
            fut.cancel()
            raise

    def close(self) -> None:
        """Close the clients and the loop thread. Idempotent."""
        loop = self._loop
        if loop is None:
            return

        async def shutdown():
            for client, _, _ in self._clients or []:
                await client.close()
            self._clients = None
        from vtdata.judge import stop_loop
        try:
            stop_loop(loop, self._thread, shutdown(), timeout=30)
        finally:
            self._loop = None

    async def _generate(self, reqs: list[GenRequest]) -> list[Generation]:
        if self._clients is None:  # on the policy's loop, once
            self._clients = [[_Post(self._key, url, self.timeout_s, self.max_retries, self.concurrency), url, 0]
                             for url in _chat_urls(self.base_urls)]
            self._sem = asyncio.Semaphore(self.concurrency)
        jobs = []
        for i, r in enumerate(reqs):
            msgs = to_openai_messages(r.messages)  # images encoded once per request, not per sample
            visual = sum(visual_tokens(*im.size) for im in message_images(r.messages))
            # the request body JSON-encoded once for its n samples (only the seed differs)
            head = json.dumps(dict(model=self.model, messages=msgs, n=1, temperature=float(r.temperature),
                                   top_p=float(r.top_p), max_tokens=int(r.max_new_tokens)))
            cap = REPLY_BYTES + REPLY_BYTES_PER_TOKEN * int(r.max_new_tokens)
            for j in range(r.n):
                seed = None if self.seed is None else \
                    (self.seed + (r.seeds[j] if r.seeds else 1000 * i + j)) % 2 ** 31
                body = head if seed is None else f'{head[:-1]}, "seed": {seed}}}'
                jobs.append(self._one(body.encode(), cap, visual, i, j))
        out = list(await asyncio.gather(*jobs))
        if self._fatal:  # the server refuses every request: stop instead of recording errors for all of them
            raise VtError(f"policy server: {self._fatal}")
        return out

    async def _one(self, body: bytes, cap: int, visual: int, i: int, j: int) -> Generation:
        async with self._sem:
            if self._fatal:
                return Generation("", 0, visual, 0.0, "error", i, j, error=self._fatal)
            pick = min(self._clients, key=lambda c: c[2])  # the least busy server
            pick[2] += 1
            t0 = time.perf_counter()
            try:
                reply = await _deadline(pick[0].post(body, cap), self.timeout_s)
                text, n_tok, finish = parse_reply(reply)
            except PolicyHTTPError as err:
                msg = redact(str(err)[:240])
                if err.status in (401, 403, 404):
                    self._fatal = f"{msg}; check --policy, --policy-base-url and the key"
                debug(f"policy request failed: {msg}")
                return Generation("", 0, visual, time.perf_counter() - t0, "error", i, j, error=msg)
            except asyncio.TimeoutError:
                return Generation("", 0, visual, time.perf_counter() - t0, "error", i, j,
                                  error=f"no complete reply within --policy-timeout {self.timeout_s:g}s")
            except (ValueError, TypeError, AttributeError, KeyError, IndexError) as err:  # not a chat completion
                return Generation("", 0, visual, time.perf_counter() - t0, "error", i, j,
                                  error=redact(f"bad reply: {type(err).__name__}: {str(err)[:120]}"))
            finally:
                pick[2] -= 1
        return Generation(text, n_tok, visual, time.perf_counter() - t0, finish, i, j)


def make_policy(spec: str, base_url: str | None = None, **opts) -> Policy:
    """`local:PATH` (a checkpoint dir or hub id) or `openai:MODEL` (+ base_url, api_key_env, concurrency); a
    plain existing directory is `local:DIR`."""
    if spec and ":" not in spec and Path(spec).is_dir():
        spec = f"local:{spec}"
    kind, _, target = (spec or "").partition(":")
    if not target:
        raise VtError(f"policy {spec!r} must be `local:PATH` or `openai:MODEL`")
    if kind == "local":
        if base_url:
            raise VtError("--policy-base-url applies to `openai:` policies only")
        keep = {k: v for k, v in opts.items() if k in ("device", "dtype", "batch_size", "seed", "chat_template")}
        return LocalPolicy(target, **keep)
    if kind == "openai":
        keep = {k: v for k, v in opts.items() if k in ("api_key_env", "concurrency", "timeout_s", "max_retries", "seed")}
        return OpenAIPolicy(target, base_url=base_url, **keep)
    raise VtError(f"unknown policy kind {kind!r} in {spec!r}: use `local:PATH` or `openai:MODEL`")
