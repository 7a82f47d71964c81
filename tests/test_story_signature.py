"""Story signatures (stories/signature.py): copies of one story meet, different stories
from one press-release template do not, and signatures are plain, stable data."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from watchdesk import stories as sg

CORPUS = Path(os.environ.get("WATCHDESK_CORPUS", Path(__file__).resolve().parents[2] / "shared" / "corpus"))

# Two releases from one U.S. Attorney's Office: the same lede formula and boilerplate
# paragraphs, two different fentanyl cases in two cities.
OFFICE = [
    "This case is part of Operation Take Back America, a nationwide initiative that marshals the full "
    "resources of the Department of Justice to achieve the total elimination of cartels and transnational "
    "criminal organizations and to protect our communities from the perpetrators of violent crime.",
    "This effort is part of an Organized Crime Drug Enforcement Task Forces (OCDETF) operation. OCDETF "
    "identifies, disrupts, and dismantles the highest-level criminal organizations that threaten the United "
    "States using a prosecutor-led, intelligence-driven, multi-agency approach.",
    "United States Attorney Margaret L. Whitfield commended the investigation by the Drug Enforcement "
    "Administration and the {police} Police Department. Assistant United States Attorney {ausa} is "
    "representing the United States in this case.",
    "A charge is merely an allegation, and all defendants are presumed innocent until proven guilty beyond a "
    "reasonable doubt in a court of law.",
]
LEDE = (
    "{city} – {name}, {age}, of {town}, {outcome} for possessing fentanyl with intent to distribute it, "
    "announced United States Attorney Margaret L. Whitfield."
)
DAYTON = dict(
    city="DAYTON, Ohio",
    name="Marcus Hale",
    age=37,
    town="Columbus",
    outcome="was sentenced today to 168 months in federal prison",
    police="Dayton",
    ausa="Rachel Stimson",
    title="Columbus man sentenced to 14 years for hauling fentanyl on Interstate 75",
    case=[
        "According to court documents, on March 14, 2025, officers with the Dayton Police Department stopped a "
        "gray Nissan Altima on Interstate 75 for a lane violation. A drug-detection dog alerted to the vehicle, "
        "and officers found a hidden compartment behind the rear seat containing four kilograms of fentanyl "
        "powder packaged in vacuum-sealed bags.",
        "Hale told officers he had been paid $5,000 to drive the car from Phoenix to Columbus. Text messages "
        "recovered from his phone showed he had made at least six similar trips since the previous summer, each "
        "time handing the car to an unknown man in a grocery store parking lot.",
        "Investigators estimated that the fentanyl seized from the Altima was enough to produce more than two "
        "million lethal doses. Hale pleaded guilty in November.",
    ],
)
CINCINNATI = dict(
    city="CINCINNATI, Ohio",
    name="Tasha Greene",
    age=31,
    town="Norwood",
    outcome="was sentenced today to 96 months in federal prison",
    police="Cincinnati",
    ausa="Daniel Ortega",
    title="Norwood woman sentenced to eight years after fentanyl pill seizure in apartment",
    case=[
        "Investigators began watching an apartment on Montgomery Road in Norwood in the spring of 2024, after an "
        "informant reported that blue pills stamped M30 were being sold from it to customers who arranged each "
        "purchase through Snapchat. Agents made four controlled purchases of the pills, which laboratory tests "
        "showed were counterfeit oxycodone tablets pressed with fentanyl.",
        "A search of the apartment in July turned up about 6,200 pills hidden in cereal boxes, a money counter, "
        "$41,000 in cash and a stolen handgun under a couch cushion. Greene admitted she collected the pills "
        "from a courier in Louisville twice a month and resold them in batches of one hundred.",
        "Two of her customers were hospitalized after overdoses that spring; both survived.",
    ],
)
LOCAL = (
    "In Montgomery County, where the car was stopped, the sheriff's office said deputies answered 212 overdose "
    "calls last year, and the county health district now hands out naloxone kits at every public library branch."
)
WORDS = ["the", "officials", "said", "county", "police", "reported", "new", "state", "federal", "agents"]


def release(case: dict[str, object]) -> tuple[str, list[str]]:
    fill = {k: v for k, v in case.items() if isinstance(v, (str, int))}
    paragraphs = [LEDE.format(**fill), *case["case"], *(p.format(**fill) for p in OFFICE)]  # type: ignore[misc]
    return str(case["title"]), paragraphs


def dress_ap(paragraphs: list[str]) -> list[str]:
    return [
        f"COLUMBUS, Ohio (AP) — {paragraphs[0]}",
        *paragraphs[1:],
        "Copyright 2026 The Associated Press. All rights reserved. This material may not be published, "
        "broadcast, rewritten or redistributed without permission.",
    ]


def edit(paragraphs: list[str], share: float, seed: int) -> list[str]:
    """`share` of the words substituted, inserted or deleted, seeded."""
    rng = random.Random(seed)
    out = []
    for paragraph in paragraphs:
        words: list[str] = []
        for word in paragraph.split():
            if rng.random() >= share:
                words.append(word)
            else:
                op = rng.randrange(3)
                words.extend([rng.choice(WORDS)] if op == 0 else [rng.choice(WORDS), word] if op == 1 else [])
        out.append(" ".join(words))
    return out


def tokens(article: tuple[str, list[str]]) -> list[str]:
    return sg.tokens_of(article[0], "\n".join(article[1]))


def sig_of(title: str, paragraphs: list[str]) -> bytes:
    sig = sg.signature(sg.tokens_of(title, "\n".join(paragraphs)))
    assert sig is not None
    return sig


def copies() -> dict[str, tuple[str, list[str]]]:
    title, paragraphs = release(DAYTON)
    # the release's own paragraphs end with the office boilerplate: the copy cuts the case's last one
    cut = [p for p in paragraphs if p != DAYTON["case"][-1]]  # type: ignore[index]
    return {
        "dressed": (title, dress_ap(paragraphs)),
        "headline rewritten": (
            "Ohio man gets 14 years after troopers find fentanyl in car",
            dress_ap(paragraphs),
        ),
        "last paragraph cut": (title, dress_ap(cut)),
        "local paragraph added": (title, dress_ap([*paragraphs[:3], LOCAL, *paragraphs[3:]])),
        "5% of words edited": (title, dress_ap(edit(paragraphs, 0.05, seed=7))),
    }


def test_the_articles_are_realistic_lengths() -> None:
    for case in (DAYTON, CINCINNATI):
        words = tokens(release(case))
        assert 250 <= len(words) <= 400, len(words)


@pytest.mark.parametrize("kind", list(copies()))
def test_a_copy_is_the_same_story(kind: str) -> None:
    original = sig_of(*release(DAYTON))
    copy = sig_of(*copies()[kind])
    assert sg.similarity(original, copy) >= sg.DEFAULT_SIMILARITY
    assert set(sg.band_keys(original)) & set(sg.band_keys(copy)), "a copy must be an LSH candidate"


def test_two_releases_from_one_template_are_different_stories() -> None:
    dayton, cincinnati = sig_of(*release(DAYTON)), sig_of(*release(CINCINNATI))
    score = sg.similarity(dayton, cincinnati)
    assert score < sg.DEFAULT_SIMILARITY - 0.15, score  # far below, not just below
    assert not set(sg.band_keys(dayton)) & set(sg.band_keys(cincinnati))
    # and a wire copy of one is no closer to the other
    assert sg.similarity(sig_of(*copies()["dressed"]), cincinnati) < sg.DEFAULT_SIMILARITY - 0.15


def test_the_lsh_threshold_sits_below_the_confirm_threshold() -> None:
    assert sg.BANDS * sg.ROWS <= sg.NUM_PERM
    assert sg.lsh_threshold() < sg.DEFAULT_SIMILARITY - 0.1
    # a pair at the confirm threshold is a candidate with high probability
    assert 1 - (1 - sg.DEFAULT_SIMILARITY**sg.ROWS) ** sg.BANDS > 0.98


def test_a_teaser_is_flagged() -> None:
    teaser = sg.tokens_of("Fentanyl seized in Dayton", "Police seized four kilograms of fentanyl. Read more.")
    assert sg.is_teaser(teaser)
    assert not sg.is_teaser(tokens(release(DAYTON)))
    assert len(sg.tokens_of("", " ".join(["word"] * sg.MIN_WORDS))) == sg.MIN_WORDS
    assert not sg.is_teaser(["word"] * sg.MIN_WORDS)
    assert sg.is_teaser(["word"] * (sg.MIN_WORDS - 1))
    assert sg.signature(["alone"]) is None  # too few tokens for one shingle
    assert sg.signature([]) is None


def test_signatures_and_band_keys_are_plain_data() -> None:
    sig = sig_of(*release(DAYTON))
    assert isinstance(sig, bytes) and len(sig) == sg.SIGNATURE_BYTES == sg.NUM_PERM * 2
    keys = sg.band_keys(sig)
    assert len(keys) == sg.BANDS
    assert all(type(k) is int and 0 <= k < 2**63 for k in keys)  # SQLite INTEGER, signed 64-bit
    assert [k >> 56 for k in keys] == list(range(sg.BANDS))  # the band index is in the key
    assert sg.similarity(sig, sig) == 1.0
    assert isinstance(sg.SIGNATURE_VERSION, int)
    with pytest.raises(ValueError):
        sg.similarity(sig, sig[:-2])
    with pytest.raises(ValueError):
        sg.band_keys(sig[: sg.ROWS])


def test_signatures_do_not_depend_on_order_or_repetition_of_shingles() -> None:
    words = [*tokens(release(DAYTON)), "m30", "pills", "m30"]
    repeated = [*words, "pills", "m30"]  # no new word pair: the same shingle set
    assert sg.signature(words) == sg.signature(repeated)
    assert sg.signature(words) != sg.signature(words[::-1])  # but word order makes the shingles


_CHILD = """
import hashlib, json, sys
from watchdesk import stories as sg
title, paragraphs = json.loads(sys.stdin.read())
sig = sg.signature(sg.tokens_of(title, "\\n".join(paragraphs)))
print(json.dumps([sig.hex(), sg.band_keys(sig), sg.SIGNATURE_VERSION]))
"""


def test_signatures_are_the_same_in_every_process() -> None:
    article = release(DAYTON)
    sig = sig_of(*article)
    expected = [sig.hex(), sg.band_keys(sig), sg.SIGNATURE_VERSION]
    for seed in ("0", "12345", "random"):
        child = subprocess.run(
            [sys.executable, "-c", _CHILD],
            input=json.dumps(article),
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
            timeout=60,
            check=True,
        )
        assert json.loads(child.stdout) == expected, f"PYTHONHASHSEED={seed}"


def test_golden_signature() -> None:
    """A rensa (or parameter) change that alters signatures must change SIGNATURE_VERSION:
    when this fails, bump signature._PARAMETERS (stored signatures no longer compare)."""
    sig = sig_of(*release(DAYTON))
    assert sg.SIGNATURE_VERSION == 102
    assert hashlib.sha256(sig).hexdigest()[:16] == GOLDEN_SIGNATURE
    assert hashlib.sha256(json.dumps(sg.band_keys(sig)).encode()).hexdigest()[:16] == GOLDEN_KEYS


GOLDEN_SIGNATURE = "c9a0cf5130391016"
GOLDEN_KEYS = "3a3938f06e2bf506"


def test_corpus_copies_meet_and_distinct_articles_do_not() -> None:
    """The ScrapingHub pages' annotated bodies: every pair of different articles stays far
    below the threshold; a wire-dressed copy of each with its last paragraph cut meets it."""
    folder = CORPUS / "articles" / "scrapinghub"
    if not folder.is_dir():
        pytest.skip(f"corpus not found at {CORPUS} (set WATCHDESK_CORPUS to run corpus tests)")
    articles = []
    for truth in sorted(folder.glob("*.json")):
        body = json.loads(truth.read_text()).get("article_body") or ""
        paragraphs = [p for p in body.splitlines() if p.strip()]
        if len(paragraphs) >= 3 and not sg.is_teaser(sg.tokens_of("", body)):
            articles.append(paragraphs)
    assert len(articles) >= 30
    sigs = [sig_of("", paragraphs) for paragraphs in articles]
    highest = max(sg.similarity(a, b) for i, a in enumerate(sigs) for b in sigs[i + 1 :])
    assert highest < sg.DEFAULT_SIMILARITY - 0.3, highest
    for paragraphs, sig in zip(articles, sigs, strict=True):
        short = len(paragraphs[-1]) * 5 < sum(map(len, paragraphs))  # cut it when it is under a fifth
        copy = sig_of("", dress_ap(paragraphs[:-1] if short else paragraphs))
        assert sg.similarity(sig, copy) >= sg.DEFAULT_SIMILARITY
        assert set(sg.band_keys(sig)) & set(sg.band_keys(copy))
