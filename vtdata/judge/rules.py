"""Rule judges. Each takes the extracted prediction and the gold answers (first = canonical) and
returns a score in [0, 1]; the score is the MAX over gold answers unless said otherwise.

`auto` picks by the row's answer_type: open -> vqa, number -> relaxed, mc -> mc, math -> math,
anls -> anls. `math` runs math-verify in a worker process (see mathcheck.py), so it is async.
"""
from __future__ import annotations

import re

RULE_VERSION = "v1"  # bump when a rule's definition changes: part of the cache identity
BY_TYPE = {"open": "vqa", "number": "relaxed", "mc": "mc", "math": "math", "anls": "anls"}

_WS = re.compile(r"\s+")


def normalize(text: str) -> str:
    """Casefold, collapse whitespace, strip surrounding whitespace, quotes and a trailing period."""
    s = _WS.sub(" ", str(text).casefold()).strip()
    s = s.strip("\"'`“”‘’").strip()
    return s[:-1].rstrip() if s.endswith(".") else s


def exact(prediction: str, answers: list[str], choices=None) -> float:
    """1 if `normalize(prediction) == normalize(gold)` for some gold answer, else 0."""
    p = normalize(prediction)
    return float(any(p == normalize(a) for a in answers))


def contains(prediction: str, answers: list[str], choices=None) -> float:
    """OCRBench (lmms-eval's scoring): 1 if a gold answer, casefolded, stripped and with newlines as
    spaces, is a substring of the prediction treated the same way; an empty gold never matches."""
    def norm(t):
        return str(t).casefold().strip().replace("\n", " ")
    p = norm(prediction)
    return float(any(norm(a) and norm(a) in p for a in answers))


# ----------------------------------------------------------------------------- relaxed (ChartQA)
_NUM = re.compile(r"^[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[-+]?\d+)?$")


def _number_values(text: str) -> list[float] | None:
    """Readings of a numeric answer: '47%' -> [47, 0.47]; '1,234' -> [1234]; '$5' -> [5]."""
    s = normalize(text).replace(",", "").replace("$", "").replace("€", "").replace("£", "").strip()
    pct = s.endswith("%")
    s = s.rstrip("%").strip()
    if not _NUM.match(s):
        return None
    v = float(s)
    return [v, v / 100.0] if pct else [v]


def relaxed(prediction: str, answers: list[str], choices=None, tolerance: float = 0.05) -> float:
    """ChartQA relaxed accuracy: numbers are correct within 5 % relative error (|p - g| <= 0.05 |g|,
    boundary included; a gold 0 needs an exact 0); other answers need an `exact` match.

    A `%` sign is a unit, not a scale the model must guess: '47%' reads as 47 or 0.47, so '47%'
    against gold '47' (and against '0.47') is correct. (ChartQA's usual implementation divides a
    '%' prediction by 100 only, which scores '47%' against gold '47' wrong.) Thousands separators
    and currency signs are ignored.
    """
    pv = _number_values(prediction)
    for gold in answers:
        gv = _number_values(gold)
        if pv is not None and gv is not None:
            for p in pv:
                for g in gv:
                    if (g == 0 and p == 0) or (g != 0 and abs(p - g) <= tolerance * abs(g) + 1e-12):
                        return 1.0
        elif normalize(prediction) == normalize(gold):
            return 1.0
    return 0.0


# ----------------------------------------------------------------------------- anls (DocVQA)
def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def anls(prediction: str, answers: list[str], choices=None, tau: float = 0.5) -> float:
    """ANLS (DocVQA / ST-VQA): NL = levenshtein(p, g) / max(len(p), len(g)) on lowercased,
    whitespace-collapsed strings; the score is 1 - NL when NL < tau (= 0.5), else 0; max over golds.
    At exactly NL = 0.5 the score is 0 (the ST-VQA definition)."""
    p = " ".join(str(prediction).lower().split())
    best = 0.0
    for gold in answers:
        g = " ".join(str(gold).lower().split())
        longest = max(len(p), len(g))
        nl = levenshtein(p, g) / longest if longest else 0.0
        best = max(best, 1.0 - nl if nl < tau else 0.0)
    return best


# ----------------------------------------------------------------------------- vqa (VQAv2)
_NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
                 "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
_ARTICLES = {"a", "an", "the"}
# apostrophe-less spellings -> the form VQAv2 annotations use
_CONTRACTIONS = {w.replace("'", ""): w for w in (
    "aren't", "can't", "couldn't", "didn't", "doesn't", "don't", "hadn't", "hasn't", "haven't",
    "he'd", "he'll", "he's", "i'd", "i'll", "i'm", "i've", "isn't", "it'd", "it'll", "it's",
    "let's", "ma'am", "mightn't", "mustn't", "o'clock", "shan't", "she'd", "she'll", "she's",
    "shouldn't", "that's", "there's", "they'd", "they'll", "they're", "they've", "wasn't",
    "we'd", "we're", "we've", "weren't", "what's", "where's", "who's", "won't", "wouldn't",
    "y'all", "you'd", "you'll", "you're", "you've")}
_PUNCT = re.compile(r"[;/\[\]\"{}()=+\\_\-><@`,?!*#%&:|~^$]")
_DIGIT_COMMA = re.compile(r"(?<=\d),(?=\d)")
_PERIOD = re.compile(r"(?<!\d)\.|\.(?!\d)")


def vqa_normalize(text: str) -> str:
    """VQAv2 answer normalisation: lowercase; commas between digits dropped ('1,000' -> '1000');
    other punctuation -> space; periods dropped unless between digits ('3.5' stays); number words
    zero..ten -> digits; articles a/an/the dropped; apostrophe-less contractions restored
    ('dont' -> "don't"); whitespace collapsed."""
    s = str(text).lower().replace("\n", " ").replace("\t", " ")
    s = _DIGIT_COMMA.sub("", s)
    s = _PUNCT.sub(" ", s)
    s = _PERIOD.sub("", s)
    words = []
    for w in s.split():
        w = _NUMBER_WORDS.get(w, w)
        if w in _ARTICLES:
            continue
        words.append(_CONTRACTIONS.get(w, w))
    return " ".join(words)


def vqa(prediction: str, answers: list[str], choices=None) -> float:
    """VQAv2 accuracy on normalised answers (`vqa_normalize`). With >= 3 gold answers (human
    annotations) it is the official min(1, matches / 3) averaged over the leave-one-annotator-out
    subsets; with 1 or 2 golds it is 1 if the prediction matches one of them, else 0."""
    p = vqa_normalize(prediction)
    golds = [vqa_normalize(a) for a in answers]
    if len(golds) < 3:
        return float(p in golds)
    accs = []
    for i in range(len(golds)):
        others = golds[:i] + golds[i + 1:]
        accs.append(min(1.0, sum(g == p for g in others) / 3.0))
    return sum(accs) / len(accs)


# ----------------------------------------------------------------------------- mc
def _letters(choices) -> str:
    n = len(choices) if choices else 10
    return "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[:max(1, min(n, 26))]


def mc_letter(text: str, choices=None) -> str | None:
    """The choice letter a prediction selects. Explicit formats are preferred, in tiers, and within
    the first tier that matches the LAST match wins:
      1. the whole answer is a letter: 'B', '(B)', 'B.', 'B)';
      2. explicit forms: '(B)', 'answer: B', 'answer is B', 'option B', 'choice B', a line
         starting 'B.' / 'B)' / 'B:';
      3. a standalone capital letter ('I pick B'; an 'A' followed by a lowercase word is read as
         the article);
      4. the text of exactly one choice (case-insensitive; the last one mentioned wins).
    Only letters of existing choices count (A..J without choices)."""
    L = _letters(choices)
    s = str(text).strip()
    m = re.fullmatch(rf"\(?\s*([{L}])\s*[).:]?", s)
    if m:
        return m.group(1)
    explicit = (rf"\(([{L}])\)|(?i:answer\s*(?:is|:)?|option|choice)\s*:?\s*\(?([{L}])\b"
                rf"|(?m:^\s*([{L}])\s*[.):])")
    hits = [next(g for g in m.groups() if g) for m in re.finditer(explicit, s)]
    if hits:
        return hits[-1]
    hits = [m.group(1) for m in re.finditer(rf"\b([{L}])\b", s)
            if not (m.group(1) == "A" and re.match(r"\s+[a-z]", s[m.end():]))]
    if hits:
        return hits[-1]
    if choices:
        low = s.lower()
        found = []
        for i, c in enumerate(choices):
            c = str(c).strip().lower()
            if c and re.search(rf"(?<!\w){re.escape(c)}(?!\w)", low):
                found.append((low.rfind(c), i))
        if found:
            return L[max(found)[1]]
    return None


def mc(prediction: str, answers: list[str], choices=None) -> float:
    """1 if the letter `mc_letter` reads from the prediction is the gold letter. A gold answer is a
    letter, or the text of a choice (mapped to its letter); without choices a gold that is no
    letter falls back to an `exact` match."""
    pred = mc_letter(prediction, choices)
    L = _letters(choices)
    for gold in answers:
        g = str(gold).strip()
        gl = re.fullmatch(rf"\(?([{L}])\)?\.?", g)
        if gl:
            letter = gl.group(1)
        elif choices and normalize(g) in [normalize(c) for c in choices]:
            letter = L[[normalize(c) for c in choices].index(normalize(g))]
        else:
            if exact(prediction, [g]):
                return 1.0
            continue
        if pred == letter:
            return 1.0
    return 0.0


SYNC_RULES = {"exact": exact, "contains": contains, "relaxed": relaxed, "anls": anls, "vqa": vqa, "mc": mc}
RULES = tuple(SYNC_RULES) + ("math",)
