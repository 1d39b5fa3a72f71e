"""LLM judge over any OpenAI-compatible chat API (OpenAI, Azure, vLLM, SGLang, Ollama).

Prompt: the paper's Table 3 (`judge_system` + `judge_user` templates, or the user's files). The
prediction is data, not instructions: it goes into the template between `<prediction>` and
`</prediction>` (any such tags inside it are defused) and the system prompt says so.

Verdict: a line `Verdict <tag>: 0|1`, where <tag> is 8 random hex digits drawn for each request
and shown only in its system prompt (see parse_verdict): the policy never sees the tag, so nothing
it writes, however the judge echoes it, can be read as a verdict. A reply without one, or an
ambiguous one, is retried (temperature + 0.2 per retry, like the release), then recorded as status
'error'.

Faults: asyncio with a concurrency bound (in-flight requests), an optional requests-per-minute
bound, a per-request timeout, and retries on 429 / 408 / 409 / 5xx / timeouts / connection errors /
unreadable replies with exponential backoff and jitter, honouring `Retry-After` (which pauses every
request of this judge, not just the one that got it), up to `max_attempts` attempts in all.
401/403/404 are fatal: every later item fails at once instead of paying for more requests.
"""
from __future__ import annotations

import asyncio
import email.utils
import hashlib
import os
import random
import time
from dataclasses import dataclass, field

from vtdata import prompts
from vtdata.console import VtError, debug

from vtdata.judge.verdict import (  # noqa: F401 - re-exported: the judge's public parsing names
    NEAR_MISS, PREDICTION_NOTE, TAG_BYTES, ground_truth, miscopied, new_tag, parse_release_score, parse_verdict, quote_prediction)


OPENAI_API = "https://api.openai.com/v1"  # where a key is sent when no base URL is given ($OPENAI_BASE_URL is not read)


def endpoints(base_urls) -> list[str]:
    """The server URLs to send requests to: the given ones, else OpenAI's API, named explicitly so that
    the openai client never falls back to $OPENAI_BASE_URL (which would get the OpenAI key)."""
    if isinstance(base_urls, str):
        base_urls = [u.strip() for u in base_urls.split(",") if u.strip()]
    return list(base_urls or []) or [OPENAI_API]


def api_key(api_key_env: str | None, base_url) -> str | None:
    """The API key to send to an OpenAI-compatible server (policy or judge). A named variable is
    read; with none named, $OPENAI_API_KEY goes to OpenAI's own API only: a custom base URL gets
    'EMPTY' (what local servers accept), so an OpenAI key is never sent to a server the user did not
    give it to. None: no key where one is needed."""
    from vtdata.console import add_secret, check_env_name
    check_env_name(api_key_env, "--api-key-env")
    key = (os.environ.get(api_key_env) or ("EMPTY" if base_url else None)) if api_key_env else \
        ("EMPTY" if base_url else os.environ.get("OPENAI_API_KEY"))
    if key != "EMPTY":
        add_secret(key)  # redacted wherever a server echoes it back
    return key


def require_key(api_key_env: str | None, base_url, who: str = "judge") -> str:
    """The key, or a VtError before anything runs: a judge without one could only fail every
    request (and with errors left out of accuracy, report the right answers alone)."""
    key = api_key(api_key_env, base_url)
    if key is None:
        raise VtError(f"the {who} needs an API key in ${api_key_env or 'OPENAI_API_KEY'} "
                      f"(or a --{who}-base-url of your own server)")
    return key


class Fatal(Exception):
    pass


TELEMETRY_HEADERS = ("X-Stainless-Lang", "X-Stainless-Package-Version", "X-Stainless-OS", "X-Stainless-Arch",
                     "X-Stainless-Runtime", "X-Stainless-Runtime-Version", "X-Stainless-Async")
HTTP_BACKEND = "auto"  # "auto" (aiohttp when installed) | "aiohttp" | "httpx"


def http_backend() -> str:
    """The openai client's HTTP transport: its aiohttp one when the `openai[aiohttp]` extra is
    installed, else its default httpx2 one (HTTP_BACKEND forces one)."""
    if HTTP_BACKEND != "auto":
        return HTTP_BACKEND
    import importlib.util

    import openai
    return "aiohttp" if hasattr(openai, "DefaultAioHttpClient") and importlib.util.find_spec("aiohttp") else "httpx"


def openai_clients(key: str, base_urls, timeout: float, concurrency: int, max_retries: int = 0) -> list[tuple]:
    """[(openai client, its absolute chat/completions URL)] for the judge and the openai policy (create
    them on the event loop that will use them; reuse them across calls). HTTP goes through the SDK's
    aiohttp transport (`openai.DefaultAioHttpClient`, the `openai[aiohttp]` extra) when it is installed:
    less CPU per request than the default httpx2 transport (README, judge benchmark), and CPU is what
    bounds throughput at high concurrency on few cores. One client per URL then; with httpx2, one client
    per 2 concurrent requests, because its connection pool scans every connection on each request (small
    pools keep that cost flat). Callers post with `client.post(url, cast_to=httpx2.Response, body=...)`:
    same auth, URL handling, retries and error types as chat.completions.create, without its per-request
    type transforms and response models."""
    import openai
    aio = http_backend() == "aiohttp"
    shards = 1 if aio else max(1, -(-concurrency // 2))

    def http():
        return openai.DefaultAioHttpClient(timeout=timeout) if aio else None
    # the SDK's telemetry headers (OS, CPU, Python and package versions, sent with every request)
    # are left out (less client CPU per request); auth and content headers are unchanged
    quiet = {h: openai.Omit() for h in TELEMETRY_HEADERS} if hasattr(openai, "Omit") else None
    clients = [openai.AsyncOpenAI(api_key=key, base_url=u, max_retries=max_retries, timeout=timeout,
                                  http_client=http(), default_headers=quiet)
               for _ in range(shards) for u in base_urls]
    # (client, absolute URL): the client then parses the URL once instead of merging a path into its base
    return [(c, str(c.base_url).rstrip("/") + "/chat/completions") for c in clients]


def _connection_cause(err: BaseException) -> BaseException | None:
    """The aiohttp transport reports a refused or dropped connection as a timeout: find it."""
    seen = 0
    e = err.__cause__ or err.__context__
    while e is not None and seen < 8:
        if type(e).__module__.startswith("aiohttp") and not isinstance(e, asyncio.TimeoutError):
            return e
        e, seen = e.__cause__ or e.__context__, seen + 1
    return None


@dataclass
class LLMResult:
    score: float | None
    reason: str
    latency_s: float = 0.0
    tokens: int = 0


@dataclass
class LLMJudge:
    """Settings of the LLM judge (all are flags of `vt judge`)."""
    model: str
    base_urls: list[str] = field(default_factory=list)  # empty: the client's default (OpenAI)
    api_key_env: str | None = None        # None: $OPENAI_API_KEY for OpenAI's API, no key to base_urls
    system_prompt: str = "judge_system"   # shipped prompt name or a file path
    user_prompt: str = "judge_user"
    temperature: float = 0.0
    max_tokens: int = 512
    concurrency: int = 64
    rpm: float | None = None
    timeout: float = 60.0
    max_attempts: int = 5
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    max_retry_after: float = 120.0
    release_input: bool = False  # the release's request: the judge prompts as they are (no note, the
    #                              prediction unquoted); a verdict is every `Score: x` of the reply agreeing

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.max_attempts < 1 or not 0 < self.timeout < float("inf") or self.max_tokens < 1:
            raise VtError("judge concurrency, max_attempts, max_tokens and timeout must be positive")
        if self.rpm is not None and not 0 < self.rpm < float("inf"):
            raise VtError("judge rpm must be positive (or unset for no bound)")
        require_key(self.api_key_env, self.base_urls)
        self.system = prompts.load(self.system_prompt) + ("" if self.release_input else PREDICTION_NOTE)
        self.template = prompts.load(self.user_prompt)
        try:
            self.template.format(question="q", ground_truth="g", prediction="p")
        except (KeyError, IndexError, ValueError) as err:
            raise VtError(f"judge user prompt must be a str.format template with {{question}}, "
                          f"{{ground_truth}} and {{prediction}} only ({err!r})") from None
        version = hashlib.sha256((self.system + "\0" + self.template).encode()).hexdigest()[:10]
        from vtdata.console import redact
        # the server is part of the judge: verdicts of a stub (or another deployment) serving the same model
        # name are never reused against the real one (the cache key and the stored verdicts' judge name)
        server = ",".join(sorted(redact(u).rstrip("/") for u in endpoints(self.base_urls)))
        self.identity = (f"openai:{self.model}|prompt={version}|t={self.temperature:g}|max_tokens={self.max_tokens}"
                         + ("|input=release" if self.release_input else "") + f"|server={server}")
        self.requests = 0
        self.tokens = 0
        self.request_latency = 0.0
        self.replies = 0          # replies that came back (HTTP 200, readable JSON)
        self.unread_replies = 0   # ... without a readable verdict: each is paid again (a retry) or ends as an error
        self.miscopied_tags = 0   # ... of those, the ones whose verdict tag was a near miss of the request's
        self._clients: list[tuple] | None = None
        self._next = 0
        self._sem: asyncio.Semaphore | None = None
        self._pause_until = 0.0
        self._next_slot = 0.0
        self._fatal: str | None = None

    # -- plumbing (everything below runs on the judge's own event loop) --------------------------
    def _client(self):
        """Round-robin over the base URLs' clients (created on the judge's loop at first use)."""
        if self._clients is None:
            self._clients = self._make_clients()
            self._sem = asyncio.Semaphore(self.concurrency)
        pick = self._clients[self._next % len(self._clients)]
        self._next += 1
        return pick

    def _make_clients(self) -> list[tuple]:
        """openai clients with the SDK's own retries off (vt retries): `openai_clients`."""
        key = require_key(self.api_key_env, self.base_urls)
        return openai_clients(key, endpoints(self.base_urls), self.timeout, self.concurrency)

    async def _gate(self) -> None:
        """Wait for a global Retry-After pause and for the requests-per-minute slot."""
        now = time.monotonic()
        if self._pause_until > now:
            await asyncio.sleep(self._pause_until - now)
        if self.rpm:
            now = time.monotonic()
            slot = max(now, self._next_slot)
            self._next_slot = slot + 60.0 / self.rpm
            if slot > now:
                await asyncio.sleep(slot - now)

    def _retry_after(self, err) -> float | None:
        headers = getattr(getattr(err, "response", None), "headers", None)
        if not headers:
            return None
        ms = headers.get("retry-after-ms")
        if ms:
            try:
                return float(ms) / 1000.0
            except ValueError:
                pass
        value = headers.get("retry-after")
        if not value:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:  # an HTTP date
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError, OverflowError):
            return None

    def _backoff(self, attempt: int) -> float:
        cap = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))
        return random.uniform(cap / 2, cap)  # "equal jitter"

    async def _call(self, messages, temperature: float):
        import httpx2
        client, url = self._client()
        async with self._sem:
            if self._fatal:  # decided while this request waited for a slot
                raise Fatal(self._fatal)
            await self._gate()
            self.requests += 1
            t0 = time.monotonic()
            try:
                # the client's low-level post: same auth, URL handling and error types as
                # chat.completions.create, without its per-request type transforms and response
                # models (less CPU per request, which bounds throughput at high concurrency)
                request = client.post(url, cast_to=httpx2.Response, body={
                    "model": self.model, "messages": messages, "temperature": temperature,
                    "max_tokens": self.max_tokens})
                if hasattr(asyncio, "timeout"):  # python >= 3.11: a deadline without an extra task
                    async with asyncio.timeout(self.timeout):
                        raw = await request
                else:
                    raw = await asyncio.wait_for(request, self.timeout)
                reply = raw.json()
            finally:
                self.request_latency += time.monotonic() - t0
        usage = reply.get("usage") or {}
        tokens = int(usage.get("total_tokens") or 0)
        self.tokens += tokens
        content = reply["choices"][0]["message"]["content"]
        return content, tokens

    async def judge(self, question: str, answers: list[str], prediction: str) -> LLMResult:
        """One verdict; never raises (failures are LLMResult(score=None, reason='error: ...'))."""
        import openai
        if self._fatal:
            return LLMResult(None, f"error: {self._fatal}")
        user = self.template.format(question=question, ground_truth=ground_truth(answers),
                                    prediction=prediction if self.release_input else quote_prediction(prediction))
        t0, tokens, last = time.monotonic(), 0, "no attempt"
        for attempt in range(1, self.max_attempts + 1):
            wait = None
            tag = new_tag(question, user, prediction)  # a fresh tag per attempt: nothing seen before can carry it
            messages = [{"role": "system", "content": self.system.replace("{tag}", tag)},
                        {"role": "user", "content": user}]
            try:
                content, used = await self._call(messages, self.temperature + 0.2 * (attempt - 1) * (last.startswith("no verdict")))
                tokens += used
                # the release's prompt has no tag: its `Score:` line is forgeable, as the release's was
                score = parse_release_score(content) if self.release_input else parse_verdict(content, tag, prediction)
                self.replies += 1
                if score is None:
                    self.unread_replies += 1
                else:
                    return LLMResult(float(score), f"llm: Score: {score}", time.monotonic() - t0, tokens)
                shown = str(content)[-80:].replace(tag, "<tag>")
                bad_tag = not self.release_input and isinstance(content, str) and miscopied(content, tag)
                self.miscopied_tags += bad_tag
                why = ("its verdict tag miscopied" if bad_tag
                       else "one 'Verdict <tag>: 0|1' line wanted, nothing contradicting it")
                last = f"no verdict ({why}) in reply {shown!r}"
            except Fatal as err:
                self._fatal = str(err)
                return LLMResult(None, f"error: {err}", time.monotonic() - t0, tokens)
            except openai.APIStatusError as err:
                code = err.status_code
                last = f"HTTP {code}"
                if code in (401, 403, 404):
                    self._fatal = f"HTTP {code} from the judge server ({err.message[:120]}); check model, URL and key"
                    return LLMResult(None, f"error: {self._fatal}", time.monotonic() - t0, tokens)
                if code not in (408, 409, 429) and code < 500:
                    return LLMResult(None, f"error: HTTP {code}: {err.message[:120]}", time.monotonic() - t0, tokens)
                wait = self._retry_after(err)
            except (asyncio.TimeoutError, openai.APITimeoutError) as err:
                cause = _connection_cause(err)
                last = f"connection error: {cause}" if cause else f"timeout after {self.timeout:g}s"
            except openai.APIConnectionError as err:
                last = f"connection error: {err}"
            except Exception as err:  # unreadable reply (malformed JSON, missing fields)
                last = f"bad reply: {type(err).__name__}: {str(err)[:80]}"
            if attempt == self.max_attempts:
                break
            if wait is not None:
                wait = min(wait, self.max_retry_after) * random.uniform(1.0, 1.1)
                self._pause_until = max(self._pause_until, time.monotonic() + wait)
            else:
                wait = self._backoff(attempt)
            debug(f"judge retry {attempt}/{self.max_attempts - 1} in {wait:.2f}s: {last}")
            await asyncio.sleep(wait)
        return LLMResult(None, f"error: {last} ({self.max_attempts} attempts)", time.monotonic() - t0, tokens)

    async def aclose(self) -> None:
        for c, _ in self._clients or []:
            try:
                await c.close()
            except Exception:
                pass
        self._clients = None
