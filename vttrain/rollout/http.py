"""The openai policy's transport: request bodies encoded once and posted over one aiohttp session per event
loop, to the server with the fewest requests in flight, with retries on transient statuses, a total deadline
per request and a stop at the first 401/403/404 (vttrain.rollout.policy.OpenAIPolicy uses it)."""
from __future__ import annotations

import asyncio
import json


class PolicyHTTPError(Exception):
    """A policy request that failed after its retries (status, connection or timeout); `status` the HTTP
    status when the server answered."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


RETRY_STATUS = (408, 409, 429, 500, 502, 503, 504)


def _chat_urls(base_urls) -> list[str]:
    return [str(u).rstrip("/") + "/chat/completions" for u in base_urls]


class _Post:
    """POST of a pre-encoded chat-completion body over one aiohttp session (made on the policy's loop).

    The openai SDK's request path (options, headers, httpx request and response models around its aiohttp
    transport) was about half of the client's CPU per rollout (bench/score.py, profiled); this sends the same
    request (bearer auth, JSON body) directly. Retries as the SDK does: on connection errors, timeouts and
    408/409/429/5xx, up to max_retries, exponential backoff from 0.5 s (at most 8 s, jittered) or the
    server's Retry-After when it asks for at most 60 s."""

    def __init__(self, key: str, url: str, timeout: float, max_retries: int, concurrency: int):
        import aiohttp
        self.url, self.max_retries = url, max(0, int(max_retries))
        self.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=timeout),
            connector=aiohttp.TCPConnector(limit=max(1, int(concurrency))),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json",
                     "Accept": "application/json"})

    async def post(self, body: bytes, cap: int) -> dict:
        """The JSON reply; its bytes are read in chunks and more than `cap` (what the token budget can produce)
        is a ValueError, never held whole in memory."""
        import random

        import aiohttp
        for attempt in range(self.max_retries + 1):
            wait = None
            try:
                async with self.session.post(self.url, data=body) as resp:
                    if resp.status < 400:
                        buf = bytearray()
                        async for chunk in resp.content.iter_chunked(65536):
                            buf += chunk
                            if len(buf) > cap:
                                raise ValueError(f"reply larger than {cap} bytes, more than its max_tokens can "
                                                 f"produce")
                        return json.loads(bytes(buf))
                    text = (await resp.text(errors="replace"))[:200]
                    err = PolicyHTTPError(f"HTTP {resp.status}: {text}", resp.status)
                    if resp.status not in RETRY_STATUS:
                        raise err
                    try:
                        wait = float(resp.headers.get("retry-after", ""))
                    except ValueError:
                        wait = None
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
                err = PolicyHTTPError(f"{type(e).__name__}: {str(e)[:200] or 'connection failed'}")
            if attempt == self.max_retries:
                raise err
            if wait is None or not 0 <= wait <= 60:
                wait = min(0.5 * 2 ** attempt, 8.0) * (1 - 0.25 * random.random())
            await asyncio.sleep(wait)
        raise PolicyHTTPError("unreachable")

    async def close(self) -> None:
        await self.session.close()
