"""Benchmark: LLM-judge throughput against a loopback OpenAI-compatible server with fixed latency.

    .venv/bin/python bench/judge.py [--n 2000] [--latency 0.05] [--concurrency 64] [--repeat 3]

Prints vt's throughput as a fraction of the ideal (concurrency / latency), the same for a baseline
measured in the same run (the released VisionThink way: a 100-thread pool over the synchronous
openai client, parsing with `'1' in reply`), their ratio, and the time of a fully cached rerun.
The server runs in its own process so it does not share the client's interpreter lock; its line
shows it is not the bottleneck (its CPU per request, and its request-to-reply delay: the latency).
vt's client is CPU-bound on one core (the interpreter lock): `client CPU` shows that bound, and
on a shared 2-core machine the load of other processes moves the result by several points.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def items(n: int, salt: str):
    from vtdata.judge import JudgeItem
    return [JudgeItem(f"{salt} question {i}: what is shown?", [f"answer {i}"],
                      f"<think>looking</think><answer>{'answer' if i % 3 else 'reply'} {i} (x)</answer>")
            for i in range(n)]


def baseline(url: str, its, threads: int = 100) -> float:
    import openai
    from vtdata import prompts
    client = openai.OpenAI(base_url=url, api_key="x", max_retries=0)
    system, user = prompts.load("judge_system"), prompts.load("judge_user")

    def one(it):
        reply = client.chat.completions.create(model="fake", temperature=0.0, messages=[
            {"role": "system", "content": system},
            {"role": "user", "content": user.format(question=it.question, ground_truth=it.answers[0],
                                                    prediction=it.response)}])
        return 1.0 if "1" in reply.choices[0].message.content else 0.0

    one(its[0])  # warm the connection pool like vt's warm-up below
    t, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, its))
    wall, cpu = time.perf_counter() - t, time.process_time() - cpu
    client.close()
    return wall, cpu


def server_stats(server) -> dict:
    """The loopback server's counters (requests, CPU seconds, replies and their summed delay)."""
    server.stdin.write("\n")
    server.stdin.flush()
    return json.loads(server.stdout.readline())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3, help="best of this many runs for vt and for the baseline")
    args = ap.parse_args()
    server = subprocess.Popen([sys.executable, str(ROOT / "tests" / "fake_openai.py"), "--latency", str(args.latency), "--stdin"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    url = server.stdout.readline().strip()
    from vtdata.judge import make_judge
    from vtdata.judge.llm import http_backend
    try:
        with tempfile.TemporaryDirectory() as tmp:
            db = os.path.join(tmp, "bench.duckdb")
            judge = make_judge("openai:fake", db=db, base_url=url, concurrency=args.concurrency, shortcut=False)
            judge.judge(items(args.concurrency, "warm-up"))  # client start, connection pool
            ideal = args.concurrency / args.latency
            vt_runs, base_runs, vt_cpu, base_cpu, server_runs = [], [], [], [], []
            for rep in range(args.repeat):  # best of N for both: the machine may be shared
                its = items(args.n, f"bench {rep}")
                s0, l0 = server_stats(server), judge.llm.request_latency
                t, cpu = time.perf_counter(), time.process_time()
                verdicts = judge.judge(its)
                vt_runs.append(time.perf_counter() - t)
                vt_cpu.append(time.process_time() - cpu)
                s1 = server_stats(server)
                server_runs.append(((s1["cpu_s"] - s0["cpu_s"]) / args.n,
                                    (s1["reply_delay_s"] - s0["reply_delay_s"]) / (s1["replied"] - s0["replied"]),
                                    (judge.llm.request_latency - l0) / args.n))
                assert all(v.status == "ok" and not v.cached for v in verdicts), judge.stats()
                wall, cpu = baseline(url, items(args.n, f"baseline {rep}"))
                base_runs.append(wall)
                base_cpu.append(cpu)
            vt_s, base_s = min(vt_runs), min(base_runs)
            vt_tput, base_tput = args.n / vt_s, args.n / base_s
            print(f"vt judge      n={args.n} concurrency={args.concurrency} latency={args.latency * 1000:.0f}ms "
                  f"(openai client over {http_backend()}): "
                  f"{vt_s:.2f}s, {vt_tput:.0f} req/s = {vt_tput / ideal:.2f} of ideal ({ideal:.0f} req/s)  "
                  f"[runs: {', '.join(f'{x:.2f}' for x in vt_runs)}s]")
            print(f"baseline      100-thread pool, sync openai client: {base_s:.2f}s, {base_tput:.0f} req/s "
                  f"= {base_tput / (100 / args.latency):.2f} of its ideal ({100 / args.latency:.0f} req/s)  "
                  f"[runs: {', '.join(f'{x:.2f}' for x in base_runs)}s]")
            print(f"ratio         vt / baseline throughput: {vt_tput / base_tput:.2f}x")
            scpu, sdelay, seen = server_runs[vt_runs.index(vt_s)]
            print(f"server        own process, in vt's best run: {1000 * scpu:.2f} ms CPU per request "
                  f"({100 * scpu * vt_tput:.0f}% of a core at vt's rate), request-to-reply {1000 * sdelay:.1f} ms "
                  f"(latency {args.latency * 1000:.0f} ms); vt saw {1000 * seen:.1f} ms per request")
            vc, bc = 1000 * min(vt_cpu) / args.n, 1000 * min(base_cpu) / args.n
            print(f"client CPU    per judgment: vt {vc:.2f} ms, baseline {bc:.2f} ms "
                  f"(one core bounds vt at {1000 / vc:.0f} req/s = {1000 / vc / ideal:.2f} of ideal); "
                  f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
            before = judge.stats()["requests"]
            t = time.perf_counter()
            again = judge.judge(its)
            cached_s = time.perf_counter() - t
            made = judge.stats()["requests"] - before
            assert all(v.cached for v in again) and [v.score for v in again] == [v.score for v in verdicts]
            assert made == 0
            print(f"cached rerun  n={args.n}: {cached_s:.3f}s, {made} requests "
                  f"(target < 1 s: {'met' if cached_s < 1 else 'MISSED'}; "
                  f"throughput target >= 0.85 of ideal: {'met' if vt_tput / ideal >= 0.85 else 'MISSED'})")
            judge.close()
    finally:
        server.stdin.close()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
