"""The LLM judge against replies as real judge models write them (tests/judge_replies.py): every well-formed
variant is read with its score, no reply with a wrong tag ever scores, and the share of replies that cost a
retry is measured and reported (`judge_retry_share`)."""
import json
import random
import re
from collections import Counter

from typer.testing import CliRunner

from fake_openai import FakeOpenAI, parts
from judge_replies import CORPUS, WRONG_TAG, context, render
from vtdata.judge import JudgeItem, make_judge
from vtdata.judge.llm import PREDICTION_NOTE, TAG_BYTES, miscopied, new_tag, parse_verdict

TAGS_PER_ENTRY = 40


def _outcome(expect):
    return None if expect == "retry" else expect


def test_the_corpus_is_big_and_covers_every_outcome():
    names = [e[0] for e in CORPUS]
    assert len(names) == len(set(names)) and len(CORPUS) >= 60
    kinds = Counter("retry" if e[2] == "retry" else "score" for e in CORPUS)
    assert kinds["score"] >= 40 and kinds["retry"] >= 30 and len(WRONG_TAG) >= 15
    assert all(e[2] in (0, 1, "retry") for e in CORPUS)
    assert all(CORPUS[names.index(n)][2] == "retry" for n in WRONG_TAG)


def test_every_reply_gives_its_outcome_whatever_the_tag():
    """Each entry against many fresh tags (a miscopy is drawn anew each time): 100 % of the well-formed
    replies read with their score, 0 replies with a wrong tag scored."""
    rng = random.Random(0)
    accepted = wellformed = wrong_scored = 0
    failures = []
    for name, reply, expect, *_ in CORPUS:
        ctx = context((name, reply, expect, *_))
        for _ in range(TAGS_PER_ENTRY):
            tag = new_tag(ctx["question"], ctx["prediction"])
            text = render(reply, tag, rng)
            got = parse_verdict(text, tag, ctx["prediction"])
            if expect != "retry":
                wellformed += 1
                accepted += got == expect
            if name in WRONG_TAG and got is not None:
                wrong_scored += 1
            if got != _outcome(expect):
                failures.append((name, text, got))
    assert not failures, failures[:5]
    assert accepted == wellformed and wrong_scored == 0


def test_miscopies_are_told_from_foreign_tags():
    tag = "3f9a0c7e"
    for bad in ("3f9a0c7", "f9a0c7e", "3f9a07ce", "3f9a0c7ee", "33f9a0c7e", "3f9b0c7f"):
        assert miscopied(f"Verdict {bad}: 1", tag), bad
    for far in ("0badc0de", "3f9a", "3f9a0c7e11223344", "3f9a0c7e"):   # another tag, a piece, more digits, itself
        assert not miscopied(f"Verdict {far}: 1", tag), far
    assert parse_verdict("Verdict 3f9a0c7e11223344: 1", tag) is None    # more digits: not this tag either


def test_the_system_prompt_shows_the_exact_line_and_the_tag_is_8_hex():
    tag = new_tag()
    assert TAG_BYTES == 4 and re.fullmatch(r"[0-9a-f]{8}", tag)
    note = PREDICTION_NOTE.replace("{tag}", tag)
    lines = note.splitlines()
    assert f"Verdict {tag}: 1" in lines and f"Verdict {tag}: 0" in lines       # each alone on its line
    assert parse_verdict(f"Verdict {tag}: 1", tag) == 1
    assert "last line" in note and "{" not in note
    # never a tag found in the request's texts
    assert all(new_tag(t) != t for t in ["0" * 8] * 3)


def _corpus_lines():
    """One `vt judge` input line per corpus entry; the question carries the entry's number."""
    lines = []
    for k, entry in enumerate(CORPUS):
        ctx = context(entry)
        lines.append({"id": k, "question": f"{ctx['question']} (#{k})", "answer": ctx["answers"][0],
                      "prediction": ctx["prediction"]})
    return lines


def test_vt_judge_on_the_corpus_scores_errors_and_reports_the_retry_share(tmp_path):
    """Each corpus reply is what the judge says to its item on every attempt: well-formed ones score,
    the others cost a retry each and end `error`; the summary prints judge_retry_share."""
    from vt.cli import app
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(l) + "\n" for l in _corpus_lines()))
    rng = random.Random(1)

    def responder(req):
        tag, user, _, _ = parts(req)
        k = int(re.search(r"\(#(\d+)\)", user).group(1))
        return render(CORPUS[k][1], tag, rng) or ""
    out = tmp_path / "out.jsonl"
    with FakeOpenAI(responder=responder) as srv:
        res = CliRunner().invoke(app, ["judge", str(src), "--out", str(out), "--judge", "openai:fake",
                                       "--judge-base-url", srv.url, "--no-cache", "--no-shortcut",
                                       "--max-attempts", "2", "--extract", "none"])
        assert res.exit_code == 0, res.output
        requests = srv.requests
    rows = [json.loads(l) for l in out.read_text().splitlines()]
    for row in rows:
        name, _, expect, *_ = CORPUS[row["id"]]
        want = ("ok", float(expect)) if expect != "retry" else ("error", None)
        assert (row["status"], row["score"]) == want, (name, row["reason"])
    n_retry = sum(e[2] == "retry" for e in CORPUS)
    assert requests == len(CORPUS) + n_retry                    # each retry reply paid once more
    share = 2 * n_retry / requests
    shown = re.search(r"judge_retry_share\D*([0-9.]+)", res.output)
    assert shown and abs(float(shown.group(1)) - share) < 1e-3, res.output
    counts = re.search(r"\((\d+)/(\d+) replies, (\d+) miscopied tags\)", res.output)
    assert counts and [int(x) for x in counts.groups()] == [2 * n_retry, requests, 2 * len(_near())], res.output


def _near():
    """The WRONG_TAG entries whose tag is a near miss (counted as miscopied tags)."""
    return {"drop-last-digit", "drop-first-digit", "drop-middle-digit", "swap-adjacent", "wrong-digit",
            "two-wrong-digits", "extra-digit-after", "extra-digit-before", "miscopy-in-code-fence",
            "miscopy-lower-case", "miscopy-beside-right-agreeing", "miscopy-beside-right-conflicting"}


def test_a_judge_that_miscopies_the_tag_now_and_then(tmp_path):
    """A judge that drops a digit of the tag on 10 % of its replies: about 10 % of the replies cost a
    retry, an item ends `error` only when all its attempts miscopied, and no miscopied reply scores."""
    rng = random.Random(7)
    sent: dict[str, list[bool]] = {}

    def sloppy(req):
        tag, user, gt, pred = parts(req)
        bad = rng.random() < 0.10
        sent.setdefault(user, []).append(bad)
        shown = tag[:3] + tag[4:] if bad else tag
        return f"{'Correct' if pred == gt else 'Incorrect'}.\n**Verdict {shown}: {int(pred == gt)}**"
    n, attempts = 300, 3
    with FakeOpenAI(responder=sloppy) as srv:
        j = make_judge("openai:sloppy", base_url=srv.url, max_attempts=attempts, backoff_base=0.001,
                       backoff_max=0.002, shortcut=False)
        got = j.judge([JudgeItem(f"q{i}", [f"a{i}"], f"<answer>{'a' if i % 2 else 'b'}{i}</answer>")
                       for i in range(n)])
        stats = j.stats()
        j.close()
    bad = sum(b for v in sent.values() for b in v)
    replies = sum(len(v) for v in sent.values())
    assert stats["replies"] == replies and stats["unread_replies"] == bad == stats["miscopied_tags"]
    assert stats["judge_retry_share"] == bad / replies and 0.05 < bad / replies < 0.15
    all_bad = sum(all(v) and len(v) == attempts for v in sent.values())
    assert stats["errors"] == all_bad
    for i, v in enumerate(got):
        if v.status == "ok":
            assert v.score == float(i % 2 == 1)                 # the right verdict, never a miscopied one


def test_training_logs_the_retry_share_of_each_batch():
    """`vt train`'s accuracy reward logs judge_retry_share beside judge_error_share, for batches that got
    judge replies only."""
    from fake_openai import verdict
    from vttrain.grpo.train import logs_retry_share
    from vttrain.grpo.trainer import make_reward_funcs
    seen = []

    def first_unread(req):
        seen.append(req)
        return "Looks right to me." if len(seen) == 1 else verdict(req, 1)
    with FakeOpenAI(responder=first_unread) as srv:
        judge = make_judge("openai:m", base_url=srv.url, max_attempts=2, backoff_base=0.001, backoff_max=0.002,
                           concurrency=1)
        reward = logs_retry_share(make_reward_funcs(judge)[0], judge)
        logged = {}

        def log_metric(name, value):
            logged.setdefault(name, []).append(value)
        turns = [[{"role": "assistant", "content": f"<answer>{a}</answer>"}] for a in ("Roma", "Rome city")]
        scores = reward([None] * 2, turns, question=["Capital of Italy?"] * 2, answers=[["Rome"]] * 2,
                        log_metric=log_metric)
        assert scores == [1.0, 1.0] and srv.requests == 3
        assert logged["judge_retry_share"] == [1 / 3] and logged["judge_error_share"] == [0.0]
        exact = [[{"role": "assistant", "content": "<answer>Rome</answer>"}]]    # the shortcut: no reply
        reward([None], exact, question=["Capital of Italy?"], answers=[["Rome"]], log_metric=log_metric)
        assert logged["judge_retry_share"] == [1 / 3] and len(logged["judge_error_share"]) == 2
        judge.close()
    assert reward.__name__ == "accuracy"                      # TRL names the reward column after it
