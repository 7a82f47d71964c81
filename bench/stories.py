"""One alert per story: MinHash signatures of syndicated copies against distinct articles.

    python bench/stories.py [--corpus DIR] [--copies 3] [--seed 1]
    python bench/stories.py --sweep            # exact Jaccard by shingle size, then LSH layouts
    python bench/stories.py --shingle 3 --num-perm 128 --bands 32 --rows 4 --similarity 0.5

Prints figures; asserts nothing. The parameters are watchdesk.stories.signature's (what
ships) unless an option overrides them. The datasketch timing needs datasketch installed
(it is not a dependency: `pip install datasketch`, or put it on PYTHONPATH); without it
that line says so.

Articles: every page of the shared corpus (../shared/corpus/articles, or
$WATCHDESK_CORPUS/articles) through watchdesk.ingest.extract_page, the text the daemon
gets (a page whose extracted text has fewer than MIN_WORDS tokens but whose ground truth
has an article_body takes that instead; pages still under MIN_WORDS are teasers and left
out, as the pipeline leaves them out), plus eight synthetic U.S. Attorney's Office
press releases about fentanyl cases built from one office's template (the same lede
formula and boilerplate paragraphs, a different case narrative each), in two versions:
the office's usual boilerplate, and a heavier one with two more paragraphs.

Same story (each against a "wire" version of the article carrying one outlet's dressing):
copies dressed by another outlet (a dateline and credit line "(AP) —", "Copyright 2026
The Associated Press", "Reporting by ...", a "Related:" line, a republication note) with
0, 2, 5, 10 or 15% of their words edited (substitutions, insertions and deletions of
corpus words, seeded), and copies with the headline rewritten, the last paragraph cut,
a local paragraph added, and all three with 5% edits.

Distinct: every pair of distinct articles (each dressed by a random outlet, and again
both by the same outlet), every pair of press releases from one template, the case
narratives alone (same topic: fentanyl seizures in different cities), and a weekly
column: one headline, one standfirst and sign-off around different corpus texts.

A pair merges when the two signatures share a band key (LSH candidate) and their
estimated similarity reaches the threshold: what the pipeline does. The goals: no false
merge among the distinct pairs, then recall >= 0.95 over the copies with at most 10% of
their words edited, a rewritten headline, the last paragraph cut or a local paragraph
added. Reported outside the goals: copies with 15% edited or all three changes plus 5%
(stress), and the heavy template (a limit probe: where similarity of content can no
longer tell two stories apart).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from itertools import combinations
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from watchdesk import stories as sg  # noqa: E402
from watchdesk.ingest import extract_page  # noqa: E402

DEFAULT_CORPUS = ROOT.parent / "shared" / "corpus"
LEVELS = (0.0, 0.02, 0.05, 0.10, 0.15)
# Reported, outside the recall goal (copies with at most 10% of their words edited):
STRESS_COPIES = ("edit 15%", "all three + 5%")
# Reported, outside the precision goal: where similarity of content stops telling stories apart.
PROBE = "same template, heavy"


@dataclass(frozen=True)
class Doc:
    id: str
    title: str
    paragraphs: tuple[str, ...]
    kind: str = "corpus"  # corpus | release | heavy-release | narrative | column
    template_words: int = 0  # a press release: tokens of its office boilerplate paragraphs


@dataclass(frozen=True)
class Params:
    shingle: int
    num_perm: int
    bands: int
    rows: int
    similarity: float


# --- The press releases: one office's template, eight cases --------------------------------

CASES = [
    dict(
        city="DAYTON, Ohio",
        name="Marcus Hale",
        age=37,
        town="Columbus",
        outcome="was sentenced today to 168 months in federal prison",
        charge="possessing with intent to distribute 400 grams or more of fentanyl",
        field="Columbus",
        police="Dayton",
        ausa="Rachel Stimson",
        narrative="""According to court documents, on March 14, 2025, officers with the Dayton Police Department stopped a gray Nissan Altima on Interstate 75 for a lane violation. A drug-detection dog alerted to the vehicle, and officers found a hidden compartment behind the rear seat containing four kilograms of fentanyl powder packaged in vacuum-sealed bags.
The driver, Hale, told officers he had been paid $5,000 to drive the car from Phoenix to Columbus. Text messages recovered from his phone showed he had made at least six similar trips since the previous summer, each time handing the car to an unknown man in a grocery store parking lot.
Investigators estimated that the fentanyl seized from the Altima was enough to produce more than two million lethal doses. Hale pleaded guilty in November to one count of possession with intent to distribute.""",
    ),
    dict(
        city="TUCSON, Ariz.",
        name="Elena Ruiz",
        age=29,
        town="Tucson",
        outcome="pleaded guilty today",
        charge="operating a pill press that produced counterfeit oxycodone tablets containing fentanyl",
        field="Tucson",
        police="Tucson",
        ausa="Daniel Ortega",
        narrative="""Agents executed a search warrant at a house on the south side of Tucson on June 2 after a months-long investigation into counterfeit pills sold through social media. In the garage they found a commercial pill press, bags of binding agents, blue dye and stamps imprinted with the letter M and the number 30, the markings of genuine oxycodone tablets.
Laboratory tests showed the roughly 38,000 pills recovered in the house contained fentanyl. Ruiz, who rented the house, admitted that she pressed pills three nights a week and sold them in batches of 1,000 to buyers who contacted her on Snapchat and paid through Cash App. Records from the payment service showed more than $410,000 in deposits over eighteen months.
Two of her customers were later charged in connection with the overdose death of a 19-year-old college student in Flagstaff.""",
    ),
    dict(
        city="ANCHORAGE, Alaska",
        name="Trevor Mikkelsen",
        age=44,
        town="Wasilla",
        outcome="was sentenced today to 97 months in federal prison",
        charge="conspiracy to distribute fentanyl pills shipped through the mail",
        field="Anchorage",
        police="Wasilla",
        ausa="Karen Lowell",
        narrative="""The investigation began when postal inspectors in Anchorage flagged a parcel mailed from California that was heavier than its declared contents of children's clothing. A search warrant revealed two pounds of fentanyl pills wrapped in carbon paper and hidden inside stuffed animals.
Inspectors made a controlled delivery to an apartment in Wasilla, where Mikkelsen signed for the box. A search of the apartment found a second package, a digital scale, $23,600 in cash and a loaded pistol in a bedroom closet.
Mikkelsen told investigators that a cousin in Sacramento had sent him packages every two weeks since January and that he resold the pills in Anchorage and Fairbanks for as much as $60 each, about twelve times the price in California. He admitted he knew the pills were laced with fentanyl.""",
    ),
    dict(
        city="PORTLAND, Ore.",
        name="Daniel Okafor",
        age=32,
        town="Beaverton",
        outcome="was sentenced today to 15 years in federal prison",
        charge="selling fentanyl-laced counterfeit pills on a darknet marketplace",
        field="Portland",
        police="Beaverton",
        ausa="Gregory Pak",
        narrative="""Investigators identified Okafor as the operator of a vendor account on a darknet marketplace that advertised counterfeit Xanax and oxycodone pills shipped anywhere in the United States. Between 2022 and 2024 the account completed more than 3,100 sales and received positive reviews from buyers in forty-one states. Undercover agents ordered pills from the account on five occasions; each shipment contained fentanyl or a nitazene analogue.
Agents traced the packages to a self-storage unit in Beaverton, where they seized 11,000 pills, a vacuum sealer, shipping envelopes and a laptop logged in to the vendor account.
Blockchain analysis linked the account's earnings to a cryptocurrency wallet holding about $1.2 million that Okafor had used to buy a house and two cars. He agreed to forfeit the house, the cars and the cryptocurrency as part of his plea agreement.""",
    ),
    dict(
        city="KNOXVILLE, Tenn.",
        name="Jerome Whitaker",
        age=41,
        town="Knoxville",
        outcome="was convicted today by a federal jury",
        charge="distributing fentanyl resulting in death",
        field="Knoxville",
        police="Knoxville",
        ausa="Laura Benning",
        narrative="""The charges stem from the death of a 24-year-old Knoxville woman who was found unresponsive in her apartment on September 9, 2024. Detectives found a folded dollar bill containing a gray powder next to her bed, and messages on her phone showed she had arranged to buy what she believed was heroin from a man she knew as Slim. Toxicology tests determined that she died of acute fentanyl and xylazine intoxication.
Investigators identified Slim as Whitaker, a man with two prior drug convictions, and arranged three controlled purchases from him over the following month. When officers arrested Whitaker in October, they found 86 grams of a fentanyl and xylazine mixture in the center console of his pickup truck.
Distribution of fentanyl resulting in death carries a mandatory minimum of twenty years in prison.""",
    ),
    dict(
        city="SAN DIEGO, Calif.",
        name="Rosa Delgado Mendez",
        age=29,
        town="Tijuana, Mexico",
        outcome="was charged today in a federal complaint",
        charge="importing fentanyl and methamphetamine through the Otay Mesa port of entry",
        field="San Diego",
        police="Chula Vista",
        ausa="Nicole Ferris",
        narrative="""Customs and Border Protection officers at the Otay Mesa port of entry referred a 2019 Ford Escape for secondary inspection on the morning of February 21 after a license plate reader flagged the car's frequent crossings. A scan of the vehicle revealed anomalies in the gas tank, where officers found 62 packages containing roughly 31 kilograms of fentanyl pills and 4 kilograms of methamphetamine.
The driver, Delgado Mendez, said she had been told she was carrying money. Her phone contained photographs of the packages taken the night before and messages arranging her payment of $3,000 per crossing.
Prosecutors said the seizure was among the largest at the port this year and that the pills would have sold for more than $900,000 on the streets of Los Angeles.""",
    ),
    dict(
        city="HARTFORD, Conn.",
        name="Anthony Reyes",
        age=38,
        town="Hartford",
        outcome="was sentenced today to 210 months in federal prison",
        charge="leading a drug trafficking organization that supplied fentanyl across central Connecticut",
        field="Hartford",
        police="Hartford",
        ausa="Michael Tran",
        narrative="""Members of a regional task force had been watching a multi-family house on Zion Street in Hartford for three months, after informants reported that a crew led by Reyes was supplying fentanyl to dealers across central Connecticut. Wiretaps authorized by a federal judge captured Reyes discussing prices and deliveries with at least fourteen customers.
On the morning of August 5, agents searched the house and two cars parked behind it and seized 2.5 kilograms of fentanyl, 700 grams of cocaine, five firearms including a rifle with an obscured serial number, and about $180,000 in cash hidden in a kitchen wall.
Eight members of the crew were arrested the same day in Hartford, New Britain and Waterbury. Reyes and four co-defendants have pleaded guilty; the others await trial.""",
    ),
    dict(
        city="BILLINGS, Mont.",
        name="Kyle Brandt",
        age=33,
        town="Hardin",
        outcome="was sentenced today to 84 months in federal prison",
        charge="possessing fentanyl pills and methamphetamine with intent to distribute",
        field="Billings",
        police="Billings",
        ausa="Sara Lindqvist",
        narrative="""A Yellowstone County sheriff's deputy stopped a car outside Billings on April 30 for speeding and smelled marijuana. A search of the trunk turned up a backpack holding 1,900 fentanyl pills and a pound of methamphetamine.
The passenger, Brandt, admitted the drugs were his and said he had bought them in Denver to resell on the Crow and Northern Cheyenne reservations. Investigators later linked him to the sale of pills that caused two nonfatal overdoses in Hardin.""",
    ),
]

LEDE = "{city} – {name}, {age}, of {town}, {outcome} for {charge}, announced United States Attorney Margaret L. Whitfield."
BOILERPLATE = [
    "This case is part of Operation Take Back America, a nationwide initiative that marshals the full resources of the Department of Justice to repel the invasion of illegal immigration, achieve the total elimination of cartels and transnational criminal organizations, and protect our communities from the perpetrators of violent crime. Operation Take Back America streamlines efforts and resources from the Department's Homeland Security Task Forces and Project Safe Neighborhoods.",
    "This effort is part of an Organized Crime Drug Enforcement Task Forces (OCDETF) operation. OCDETF identifies, disrupts, and dismantles the highest-level criminal organizations that threaten the United States using a prosecutor-led, intelligence-driven, multi-agency approach. Additional information about the OCDETF Program can be found at www.justice.gov/OCDETF.",
    "The Drug Enforcement Administration's {field} Resident Office investigated the case with the {police} Police Department, with assistance from the state police. Assistant United States Attorney {ausa} is prosecuting the case.",
    "Fentanyl is a synthetic opioid that is up to 50 times more potent than heroin and 100 times more potent than morphine. Just two milligrams of fentanyl, the amount that fits on the tip of a pencil, can be lethal. Anyone with information about the distribution of fentanyl in our communities is encouraged to contact the DEA tip line at 1-877-792-2873.",
    "A charge is merely an allegation, and all defendants are presumed innocent until proven guilty beyond a reasonable doubt in a court of law. Any sentence is determined by a federal district court judge after considering the U.S. Sentencing Guidelines and other statutory factors.",
]
HEAVY_BOILERPLATE = [
    "The United States Attorney's Office is committed to reducing violent crime and the flow of deadly drugs into our neighborhoods. Working with our federal, state, local and tribal partners, the office prosecutes the traffickers who profit from addiction and the violence that follows them, and supports prevention, treatment and reentry programs that help families and communities recover.",
    "One Pill Can Kill: counterfeit pills made to look like prescription oxycodone, hydrocodone, Xanax and Adderall are widely available and often contain deadly amounts of fentanyl or methamphetamine. The only safe medications are those prescribed by a licensed medical professional and dispensed by a licensed pharmacist. Learn more at www.dea.gov/onepill.",
]


def press_release(case: dict[str, object], heavy: bool) -> Doc:
    fill = {k: v for k, v in case.items() if k != "narrative"}
    boiler = [p.format(**fill) for p in BOILERPLATE + (HEAVY_BOILERPLATE if heavy else [])]
    name = str(case["name"])
    title = f"{name.split()[-1]} {str(case['outcome']).replace('today ', '')} for {case['charge']}"
    paragraphs = [LEDE.format(**fill), *str(case["narrative"]).split("\n"), *boiler]
    kind = "heavy-release" if heavy else "release"
    shared = len(sg.tokens_of("", "\n".join(boiler)))
    return Doc(f"{kind}:{name}", title[:1].upper() + title[1:], tuple(paragraphs), kind, shared)


def narrative(case: dict[str, object]) -> Doc:
    """The case alone, as a reporter's story: the same topic, no shared template."""
    title = f"Fentanyl case in {str(case['city']).split(',')[0].title()}"
    return Doc(f"narrative:{case['name']}", title, tuple(str(case["narrative"]).split("\n")), "narrative")


COLUMN_TITLE = "The Week in Numbers: what the data says about this week's news"
COLUMN_HEAD = "Every Friday our data desk looks past the headlines at the numbers behind one of the week's stories, where they come from and what they can and cannot tell us."
COLUMN_FOOT = "Have a question for the data desk or a number you want us to check? Write to numbers@example.com. The Week in Numbers appears every Friday in print and online, and past columns are collected on our website."


def column(body: Doc) -> Doc:
    return Doc(f"column:{body.id}", COLUMN_TITLE, (COLUMN_HEAD, *body.paragraphs, COLUMN_FOOT), "column")


# --- Outlets: how a copy is dressed ---------------------------------------------------------

CITIES = ["WASHINGTON", "NEW YORK", "CHICAGO", "LOS ANGELES", "PHOENIX", "MIAMI", "DENVER", "ATLANTA"]
OUTLETS = ["The Daily Ledger", "Riverside Herald", "Valley News Network", "Coastal Tribune", "Metro Post"]
PEOPLE = ["Jonathan Allen", "Maria Santos", "David Brunnstrom", "Leslie Adler", "Chris Reese", "Tim Ahmann"]
LOCAL = [
    "Locally, the {county} County sheriff's office said it had seen a rise in similar cases over the past year. Deputies responded to {n} overdose calls in {month} alone, and the county health department has begun handing out naloxone kits at libraries and fire stations. Residents can find the nearest distribution site on the county's website.",
    "In {county} County, officials said the news would be discussed at the commission's meeting on {month} {day}. Commissioner Pat Doyle said residents had asked for more information, and the county will hold a public forum at the community center. About {n} people attended the last forum, organisers said.",
]


def dress(doc: Doc, style: int, rng: random.Random) -> tuple[str, list[str]]:
    """The title and paragraphs of `doc` as one outlet publishes it."""
    title, paras = doc.title, list(doc.paragraphs)
    city = rng.choice(CITIES)
    if style == 0:  # AP
        paras[0] = f"{city} (AP) — {paras[0]}"
        paras.append(
            "Copyright 2026 The Associated Press. All rights reserved. This material may not be "
            "published, broadcast, rewritten or redistributed without permission."
        )
    elif style == 1:  # Reuters
        paras[0] = (
            f"{city}, {rng.choice(['March', 'June', 'Oct'])} {rng.randint(1, 28)} (Reuters) - {paras[0]}"
        )
        paras.append(f"Reporting by {rng.choice(PEOPLE)}; Editing by {rng.choice(PEOPLE)}")
    elif style == 2:  # a partner republishing with a related link and a note
        paras[0] = f"{city} — {paras[0]}"
        paras.insert(
            min(2, len(paras)),
            f"Related: {rng.choice(['Police', 'Officials', 'Experts'])} say more is coming",
        )
        paras.append(
            f"This article originally appeared in {rng.choice(OUTLETS)} and is republished here with permission."
        )
    elif style == 3:  # an aggregator
        paras[0] = f"(AP) — {paras[0]}"
        paras.append(
            f"Follow {rng.choice(OUTLETS)} on Facebook and X for the latest news. "
            "Sign up for our daily newsletter to get the top stories in your inbox."
        )
    else:  # the wire's own site: a byline
        paras.insert(0, f"By {rng.choice(PEOPLE)} and {rng.choice(PEOPLE)}")
    return title, paras


STYLES = 5


def edit(paras: list[str], share: float, rng: random.Random, vocabulary: Sequence[str]) -> list[str]:
    """`share` of the words substituted, inserted or deleted (a third each), seeded."""
    words = [p.split() for p in paras]
    where = [(i, j) for i, ws in enumerate(words) for j in range(len(ws))]
    count = round(share * len(where))
    ops: dict[tuple[int, int], int] = {pos: rng.randrange(3) for pos in rng.sample(where, count)}
    out = []
    for i, ws in enumerate(words):
        new: list[str] = []
        for j, w in enumerate(ws):
            op = ops.get((i, j))
            if op is None:
                new.append(w)
            elif op == 0:  # substitution
                new.append(rng.choice(vocabulary))
            elif op == 1:  # insertion before the word
                new.extend((rng.choice(vocabulary), w))
            # op == 2: deletion
        out.append(" ".join(new))
    return [p for p in out if p]


def rewrite_headline(title: str, rng: random.Random, vocabulary: Sequence[str]) -> str:
    """A new headline of as many words, none of the old one's (the worst case)."""
    return " ".join(rng.choice(vocabulary) for _ in range(max(6, len(title.split()))))


def cut_last(paras: list[str]) -> list[str]:
    """The story's last paragraph cut; when that is more than a fifth of the words (the
    extractor ran paragraphs together), its last fifth of the words instead."""
    words = sum(len(p.split()) for p in paras)
    last = paras[-1].split()
    if len(paras) >= 2 and len(last) * 5 <= words:
        return paras[:-1]
    keep = max(0, len(last) - words // 5)
    return [*paras[:-1], " ".join(last[:keep])] if keep else paras[:-1]


def add_local(paras: list[str], rng: random.Random) -> list[str]:
    local = rng.choice(LOCAL).format(
        county=rng.choice(["Maricopa", "Pima", "Hamilton", "Knox", "Yellowstone"]),
        n=rng.randint(12, 300),
        month=rng.choice(["January", "May", "August"]),
        day=rng.randint(1, 28),
    )
    at = rng.randint(1, max(1, len(paras) - 1))
    return paras[:at] + [local] + paras[at:]


# --- The corpus ----------------------------------------------------------------------------


def load_corpus(corpus: Path) -> tuple[list[Doc], list[str], float]:
    """The corpus articles (teasers left out), the teasers' ids, and extraction time."""
    docs: list[Doc] = []
    teasers: list[str] = []
    t0 = time.perf_counter()
    for truth_file in sorted(corpus.glob("*/*.json")):
        if truth_file.name == "INDEX.json":
            continue
        truth = json.loads(truth_file.read_text())
        page = (truth_file.parent / truth["file"]).read_bytes()
        if truth["file"].endswith(".gz"):
            page = gzip.decompress(page)
        extraction = extract_page(page, truth.get("url"))
        title, text = extraction.title or "", extraction.text
        if sg.is_teaser(sg.tokens_of(title, text)) and truth.get("article_body"):
            text = truth["article_body"]
        if sg.is_teaser(sg.tokens_of(title, text)):
            teasers.append(truth["id"])
            continue
        paragraphs = tuple(line for line in text.splitlines() if line.strip())
        docs.append(Doc(truth["id"], title, paragraphs))
    return docs, teasers, time.perf_counter() - t0


# --- Pairs ---------------------------------------------------------------------------------


@dataclass
class Version:
    doc: Doc
    label: str
    title: str
    paragraphs: list[str]
    tokens: list[str]


def version(doc: Doc, label: str, title: str, paras: list[str]) -> Version:
    return Version(doc, label, title, paras, sg.tokens_of(title, "\n".join(paras)))


def build(
    docs: list[Doc], copies: int, seed: int
) -> tuple[list[tuple[Version, Version]], dict[str, list[tuple[Version, Version]]]]:
    """(same-story pairs, distinct pairs by category)."""
    vocabulary = sorted(
        {w for d in docs if d.kind == "corpus" for p in d.paragraphs for w in p.split() if w.isalpha()}
    )
    rng = random.Random(seed)
    same: list[tuple[Version, Version]] = []
    wires: dict[str, Version] = {}
    for doc in docs:
        if doc.kind in ("narrative", "column"):
            continue
        style = rng.randrange(STYLES)
        wire = version(doc, "wire", *dress(doc, style, rng))
        wires[doc.id] = wire
        for c in range(copies):
            others = [s for s in range(STYLES) if s != style]
            for level in LEVELS:
                title, paras = dress(doc, others[(c + int(level * 100)) % len(others)], rng)
                paras = edit(paras, level, rng, vocabulary)
                same.append((wire, version(doc, f"edit {level:.0%}", title, paras)))
            for label in (
                "headline rewritten",
                "last paragraph cut",
                "local paragraph added",
                "all three + 5%",
            ):
                title, paras = dress(doc, rng.choice(others), rng)
                if label in ("headline rewritten", "all three + 5%"):
                    title = rewrite_headline(title, rng, vocabulary)
                if label in ("last paragraph cut", "all three + 5%"):
                    # cut the story's last paragraph, before the outlet's trailing line if any
                    tail = paras[-1:] if len(paras) > len(doc.paragraphs) else []
                    paras = cut_last(paras[: len(paras) - len(tail)]) + tail
                if label in ("local paragraph added", "all three + 5%"):
                    paras = add_local(paras, rng)
                if label == "all three + 5%":
                    paras = edit(paras, 0.05, rng, vocabulary)
                same.append((wire, version(doc, label, title, paras)))
    distinct: dict[str, list[tuple[Version, Version]]] = defaultdict(list)
    corpus = [d for d in docs if d.kind == "corpus"]
    releases = [d for d in docs if d.kind in ("release", "heavy-release")]
    for a, b in combinations(corpus + releases, 2):
        if a.kind != "corpus" and b.kind != "corpus":
            continue  # release pairs are the template category below
        distinct["articles, outlets at random"].append((wires[a.id], wires[b.id]))
    for a, b in combinations(corpus + releases, 2):
        if a.kind != "corpus" and b.kind != "corpus":
            continue
        style = rng.randrange(STYLES)
        distinct["articles, one outlet"].append(
            (
                version(a, "same outlet", *dress(a, style, rng)),
                version(b, "same outlet", *dress(b, style, rng)),
            )
        )
    for kind in ("release", "heavy-release"):
        group = [d for d in releases if d.kind == kind]
        label = "same template" if kind == "release" else "same template, heavy"
        for a, b in combinations(group, 2):
            distinct[label].append((wires[a.id], wires[b.id]))
    narratives = [d for d in docs if d.kind == "narrative"]
    for a, b in combinations(narratives, 2):
        style = rng.randrange(STYLES)
        distinct["same topic"].append(
            (version(a, "story", *dress(a, style, rng)), version(b, "story", *dress(b, style, rng)))
        )
    columns = [d for d in docs if d.kind == "column"]
    for a, b in combinations(columns, 2):
        distinct["weekly column"].append(
            (
                version(a, "column", a.title, list(a.paragraphs)),
                version(b, "column", b.title, list(b.paragraphs)),
            )
        )
    return same, distinct


# --- Measuring -----------------------------------------------------------------------------


class Signer:
    """Signatures and band keys of versions, cached, for one set of parameters."""

    def __init__(self, p: Params):
        self.p = p
        self.cache: dict[int, tuple[bytes, set[int]] | None] = {}

    def __call__(self, v: Version) -> tuple[bytes, set[int]] | None:
        key = id(v)
        if key not in self.cache:
            sig = sg.signature(v.tokens, shingle=self.p.shingle, num_perm=self.p.num_perm)
            self.cache[key] = (
                None if sig is None else (sig, set(sg.band_keys(sig, bands=self.p.bands, rows=self.p.rows)))
            )
        return self.cache[key]


def exact_jaccard(a: Version, b: Version, k: int, cache: dict[tuple[int, int], frozenset[str]]) -> float:
    sets = []
    for v in (a, b):
        if (id(v), k) not in cache:
            cache[id(v), k] = frozenset(sg.shingles(v.tokens, k))
        sets.append(cache[id(v), k])
    union = len(sets[0] | sets[1])
    return len(sets[0] & sets[1]) / union if union else 0.0


@dataclass
class Verdict:
    similarity: float
    candidate: bool

    def merged(self, threshold: float) -> bool:
        return self.candidate and self.similarity >= threshold


def judge(signer: Signer, a: Version, b: Version) -> Verdict:
    sa, sb = signer(a), signer(b)
    if sa is None or sb is None:
        return Verdict(0.0, False)
    return Verdict(sg.similarity(sa[0], sb[0]), bool(sa[1] & sb[1]))


def report(
    p: Params, same: list[tuple[Version, Version]], distinct: dict[str, list[tuple[Version, Version]]]
) -> None:
    signer = Signer(p)
    jcache: dict[tuple[int, int], frozenset[str]] = {}
    t = p.similarity
    print(
        f"\nparameters: shingle {p.shingle} words, {p.num_perm} slots ({p.num_perm * sg.SLOT_BYTES} bytes), "
        f"{p.bands} bands x {p.rows} rows (LSH threshold (1/b)^(1/r) = {sg.lsh_threshold(p.bands, p.rows):.3f}), "
        f"confirm similarity >= {t}"
    )
    rows = []
    false_merges = over_goal = 0
    top: tuple[float, str, str, str] = (-1.0, "", "", "")
    template: dict[str, list[tuple[float, bool]]] = defaultdict(list)  # (template share, merged)
    dist_verdicts: dict[str, list[Verdict]] = {}
    for category, pairs in distinct.items():
        verdicts = dist_verdicts[category] = [judge(signer, a, b) for a, b in pairs]
        merged = sum(v.merged(t) for v in verdicts)
        over = sum(v.similarity >= t for v in verdicts)
        best = max(range(len(pairs)), key=lambda i: verdicts[i].similarity)
        if category != PROBE:
            false_merges += merged
            over_goal += over
            top = max(
                top, (verdicts[best].similarity, category, pairs[best][0].doc.id, pairs[best][1].doc.id)
            )
        if category.startswith("same template"):
            for (a, b), v in zip(pairs, verdicts, strict=True):
                share = (a.doc.template_words + b.doc.template_words) / (len(a.tokens) + len(b.tokens))
                template[category].append((share, v.merged(t)))
        exact = max(exact_jaccard(a, b, p.shingle, jcache) for a, b in pairs)
        rows.append(
            (
                category,
                len(pairs),
                merged,
                over,
                sum(v.candidate for v in verdicts),
                verdicts[best].similarity,
                exact,
            )
        )
    by_label: dict[str, list[tuple[Verdict, float]]] = defaultdict(list)
    for a, b in same:
        by_label[b.label].append((judge(signer, a, b), exact_jaccard(a, b, p.shingle, jcache)))

    print(
        "\nsame story, a copy against the wire version (merged: a band key shared and similarity >= threshold)"
    )
    print(
        f"{'copy':<24} {'pairs':>5} {'recall':>6} {'precis.':>7} {'cand.':>6} "
        f"{'sim min':>7} {'p01':>5} {'p05':>5} {'median':>6}  {'exact J min':>11} {'median':>6}"
    )
    for label, results in by_label.items():
        sims = sorted(v.similarity for v, _ in results)
        exacts = sorted(j for _, j in results)
        tp = sum(v.merged(t) for v, _ in results)
        precision = tp / (tp + false_merges) if tp + false_merges else float("nan")
        mark = " (stress, outside the goal)" if label in STRESS_COPIES else ""
        print(
            f"{label:<24} {len(results):>5} {tp / len(results):>6.3f} {precision:>7.3f} "
            f"{sum(v.candidate for v, _ in results) / len(results):>6.3f} {sims[0]:>7.3f} "
            f"{sims[len(sims) // 100]:>5.3f} {sims[len(sims) // 20]:>5.3f} {statistics.median(sims):>6.3f}  "
            f"{exacts[0]:>11.3f} {statistics.median(exacts):>6.3f}{mark}"
        )
    goal = [v for label, rs in by_label.items() if label not in STRESS_COPIES for v, _ in rs]
    tp_all = sum(v.merged(t) for rs in by_label.values() for v, _ in rs)
    print(
        f"recall of copies with <= 10% of words edited, headline rewritten, last paragraph cut or a local "
        f"paragraph added: {sum(v.merged(t) for v in goal) / len(goal):.3f} of {len(goal)} (goal >= 0.95); "
        f"precision over all {sum(map(len, by_label.values()))} copies and the distinct pairs below: "
        f"{tp_all / (tp_all + false_merges) if tp_all + false_merges else float('nan'):.4f}"
    )
    lost = sum(v.similarity >= t and not v.candidate for v in goal)
    print(
        f"  of those, {lost} reach the threshold but share no band key (lost to LSH). precis. per row: that row's "
        "merges against every false merge below; cand.: share of pairs with a band key in common"
    )

    print("\ndistinct stories: false merges (goal 0) and the highest similarity (the margin)")
    print(
        f"{'pairs of':<30} {'pairs':>6} {'merged':>6} {'sim>=T':>6} {'cand.':>6} {'max sim':>7} {'max exact J':>11}"
    )
    for category, n, merged, over, cand, best_sim, best_exact in rows:
        mark = "  (limit probe, outside the goal)" if category == PROBE else ""
        print(
            f"{category:<30} {n:>6} {merged:>6} {over:>6} {cand:>6} {best_sim:>7.3f} {best_exact:>11.3f}{mark}"
        )
    sim, category, a_id, b_id = top
    print(
        f"false merges: {false_merges} (on similarity alone, LSH aside: {over_goal}); the highest similarity "
        f"between distinct stories: {sim:.3f} ({category}: {a_id[:32]} / {b_id[:32]}), "
        f"margin below the threshold {t - sim:.3f}"
    )
    for category, shares in template.items():
        merged_shares = [share for share, m in shares if m]
        kept_shares = [share for share, m in shares if not m]
        print(
            f"{category}: the template is {min(sh for sh, _ in shares):.0%}-{max(sh for sh, _ in shares):.0%} "
            "of a pair's tokens; "
            + (
                f"pairs merge from {min(merged_shares):.0%} (the highest kept apart: {max(kept_shares, default=0):.0%})"
                if merged_shares
                else "none merges"
            )
        )
    tradeoff(by_label, dist_verdicts, t)


def tradeoff(
    by_label: dict[str, list[tuple[Verdict, float]]], distinct: dict[str, list[Verdict]], chosen: float
) -> None:
    """Recall and false merges at other confirm thresholds, on the same signatures."""
    print("\nthe confirm threshold, on the same signatures and band keys")
    goal_rows = [label for label in by_label if label not in STRESS_COPIES]
    print(
        f"{'T':>6} {'recall':>6} {'worst goal row':>28} {'edit 10%':>8} {'edit 15%':>8} {'false':>5} "
        f"{'margin':>6} {'probe merged':>12}"
    )
    goal_best = max(v.similarity for c, vs in distinct.items() if c != PROBE for v in vs)
    for i in range(9):
        t = 0.45 + 0.025 * i
        recall = {
            label: sum(v.merged(t) for v, _ in by_label[label]) / len(by_label[label]) for label in by_label
        }
        goal = [v for label in goal_rows for v, _ in by_label[label]]
        worst = min(goal_rows, key=lambda label: recall[label])
        false = sum(v.merged(t) for c, vs in distinct.items() if c != PROBE for v in vs)
        probe = distinct.get(PROBE, [])
        mark = "  <- shipped" if abs(t - chosen) < 1e-9 else ""
        print(
            f"{t:>6.3f} {sum(v.merged(t) for v in goal) / len(goal):>6.3f} {f'{worst} {recall[worst]:.3f}':>28} "
            f"{recall.get('edit 10%', float('nan')):>8.3f} {recall.get('edit 15%', float('nan')):>8.3f} {false:>5} "
            f"{t - goal_best:>+6.3f} {sum(v.merged(t) for v in probe):>5} of {len(probe):<3}{mark}"
        )


# --- Sweep: exact Jaccard by shingle size, then MinHash layouts -----------------------------


def sweep(
    same: list[tuple[Version, Version]], distinct: dict[str, list[tuple[Version, Version]]], base: Params
) -> None:
    jcache: dict[tuple[int, int], frozenset[str]] = {}
    print("\nsweep 1: exact Jaccard of the shingle sets (no MinHash error) by shingle size k")
    print("  same story: 1st percentile / minimum of each copy kind; distinct: the maximum of each category")
    for k in (1, 2, 3, 4, 5):
        by_label: dict[str, list[float]] = defaultdict(list)
        for a, b in same:
            by_label[b.label].append(exact_jaccard(a, b, k, jcache))
        worst = {c: max(exact_jaccard(a, b, k, jcache) for a, b in ps) for c, ps in distinct.items()}
        print(
            f"k={k} same      "
            + "  ".join(f"{lab}: {sorted(v)[len(v) // 100]:.2f}/{min(v):.2f}" for lab, v in by_label.items())
        )
        print(f"k={k} distinct  " + "  ".join(f"{c}: {v:.2f}" for c, v in worst.items()))
    print("\nsweep 2: MinHash layouts (merged: a band key shared and similarity >= T)")
    print(
        f"{'k':>2} {'slots':>5} {'bands':>5} {'rows':>4} {'LSH t':>6} {'T':>5} {'recall':>6} {'stress':>6} "
        f"{'false':>5} {'max distinct':>12} {'probe merged':>12}"
    )
    layouts = [(16, 4), (21, 3), (32, 4), (42, 3), (64, 2), (64, 4), (85, 3)]
    for k in (2, 3):
        for bands, rows in layouts:
            signer = Signer(replace(base, shingle=k, num_perm=bands * rows, bands=bands, rows=rows))
            same_v = [(b.label, judge(signer, a, b)) for a, b in same]
            goal_v = [judge(signer, a, b) for c, ps in distinct.items() if c != PROBE for a, b in ps]
            probe_v = [judge(signer, a, b) for a, b in distinct[PROBE]]
            max_distinct = max(v.similarity for v in goal_v)
            for t in (0.40, 0.45, 0.50, 0.55, 0.60):
                goal = [v for lab, v in same_v if lab not in STRESS_COPIES]
                stress = [v for lab, v in same_v if lab in STRESS_COPIES]
                print(
                    f"{k:>2} {bands * rows:>5} {bands:>5} {rows:>4} {sg.lsh_threshold(bands, rows):>6.3f} {t:>5.2f} "
                    f"{sum(v.merged(t) for v in goal) / len(goal):>6.3f} {sum(v.merged(t) for v in stress) / len(stress):>6.3f} "
                    f"{sum(v.merged(t) for v in goal_v):>5} {max_distinct:>12.3f} "
                    f"{sum(v.merged(t) for v in probe_v):>5} of {len(probe_v):<3}"
                )


# --- Speed and size ------------------------------------------------------------------------


def _median_us(fn: Callable[[], object], count: int, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) / count * 1e6


def speed(docs: list[Doc], p: Params, rounds: int) -> None:
    texts = [(d.title, "\n".join(d.paragraphs)) for d in docs]
    tokens = [sg.tokens_of(title, text) for title, text in texts]
    n = len(tokens)
    words = statistics.mean(len(t) for t in tokens)
    print(f"\nspeed: {n} articles, {words:.0f} tokens on average; median of {rounds} rounds, µs per article")
    tok = _median_us(lambda: [sg.tokens_of(a, b) for a, b in texts], n, rounds)
    shingle = _median_us(lambda: [sg.shingles(t, p.shingle) for t in tokens], n, rounds)

    def rensa_round() -> None:
        for t in tokens:
            sig = sg.signature(t, shingle=p.shingle, num_perm=p.num_perm)
            assert sig is not None
            sg.band_keys(sig, bands=p.bands, rows=p.rows)

    sigs = [sg.signature(t, shingle=p.shingle, num_perm=p.num_perm) for t in tokens]
    keys = _median_us(lambda: [sg.band_keys(s, bands=p.bands, rows=p.rows) for s in sigs if s], n, rounds)
    rensa_us = _median_us(rensa_round, n, rounds)
    print(f"  tokens_of (title + text; the store already computes these for its search index): {tok:.0f}")
    print(f"  shingles alone (Python, in both rows below): {shingle:.0f}; band keys alone: {keys:.0f}")
    longest = max(tokens, key=len)

    def rensa_longest() -> None:
        sig = sg.signature(longest, shingle=p.shingle, num_perm=p.num_perm)
        assert sig is not None
        sg.band_keys(sig, bands=p.bands, rows=p.rows)

    print(
        f"  rensa {_version('rensa')} R-MinHash, signature + band keys (what ships): {rensa_us:.0f} "
        f"(the longest article, {len(longest):,} tokens: {_median_us(rensa_longest, 1, rounds):.0f})"
    )
    try:
        from datasketch import MinHash
    except ImportError:
        print("  datasketch: not installed (pip install datasketch to compare)")
        return

    permutations = MinHash(num_perm=p.num_perm, seed=sg.SEED, scheme="affine32").permutations  # made once

    def datasketch_round() -> None:
        for t in tokens:
            m = MinHash(num_perm=p.num_perm, permutations=permutations, scheme="affine32")
            m.update_batch([s.encode() for s in sg.shingles(t, p.shingle)])
            low16 = (m.hashvalues & 0xFFFF).astype("<u2").tobytes()  # as signature() keeps them
            sg.band_keys(low16, bands=p.bands, rows=p.rows)

    ds_us = _median_us(datasketch_round, n, rounds)
    print(f"  datasketch {_version('datasketch')} MinHash (SHA-1, numpy), signature + band keys: {ds_us:.0f}")


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version(dist)
    except PackageNotFoundError:
        return "?"


def storage(p: Params, articles: int, seed: int) -> None:
    """Bytes in SQLite for `articles` entries in the window, measured: a signature table and
    a band-key table whose one index is its primary key (key, entry) in a WITHOUT ROWID
    table, filled with random signatures (their band keys are as random as real ones),
    VACUUMed, measured per table with dbstat where SQLite has it."""
    rng = random.Random(seed)
    sig_bytes = p.num_perm * sg.SLOT_BYTES
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "stories.sqlite"
        db = sqlite3.connect(path)
        db.executescript(
            """
            CREATE TABLE story_signature (entry_id INTEGER PRIMARY KEY, version INTEGER NOT NULL,
                                          signature BLOB NOT NULL);
            CREATE TABLE story_band (band_key INTEGER NOT NULL, entry_id INTEGER NOT NULL,
                                     PRIMARY KEY (band_key, entry_id)) WITHOUT ROWID;
            """
        )
        t0 = time.perf_counter()
        with db:
            for entry in range(1, articles + 1):
                sig = rng.randbytes(sig_bytes)
                db.execute("INSERT INTO story_signature VALUES (?, ?, ?)", (entry, sg.SIGNATURE_VERSION, sig))
                db.executemany(
                    "INSERT INTO story_band VALUES (?, ?)",
                    [(k, entry) for k in sg.band_keys(sig, bands=p.bands, rows=p.rows)],
                )
        fill_s = time.perf_counter() - t0
        db.execute("VACUUM")
        sizes = (
            dict(db.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall())
            if _has_dbstat(db)
            else {}
        )
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        total = path.stat().st_size
        db.close()
    scale = 100_000 / articles
    print(
        f"\nstorage per 100,000 entries in the window, measured on {articles:,} in SQLite (page size {page_size}, "
        f"filled in {fill_s:.1f}s): {total * scale / 1e6:.1f} MB, {total / articles:.0f} bytes an entry"
    )
    if sizes:
        sig_table, band_table = sizes.get("story_signature", 0), sizes.get("story_band", 0)
        print(
            f"  signatures {sig_table * scale / 1e6:.1f} MB ({sig_table / articles:.0f} bytes each: the {sig_bytes}-byte "
            f"blob, its row and B-tree page slack), band keys {band_table * scale / 1e6:.1f} MB "
            f"({band_table / (articles * p.bands):.1f} bytes per key, {p.bands} keys an entry: an 8-byte integer, "
            f"the entry id, a record header and the cell pointer, in a B-tree)"
        )
    estimate = articles * (sig_bytes + 12) + articles * p.bands * 18
    print(
        f"  estimate without SQLite: (signature {sig_bytes} + ~12 bytes of row) + {p.bands} x ~18 bytes per key "
        f"= {estimate * scale / 1e6:.1f} MB; the measured figure adds page slack"
    )


def _has_dbstat(db: sqlite3.Connection) -> bool:
    try:
        db.execute("SELECT 1 FROM dbstat LIMIT 1").fetchall()
    except sqlite3.Error:
        return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = os.environ.get("WATCHDESK_CORPUS", str(DEFAULT_CORPUS))
    parser.add_argument(
        "--corpus", type=Path, default=Path(default), help="the shared corpus (its articles/ is read)"
    )
    parser.add_argument("--copies", type=int, default=3, help="copies of each kind per article (default 3)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--shingle", type=int, default=sg.SHINGLE)
    parser.add_argument("--num-perm", type=int, default=sg.NUM_PERM)
    parser.add_argument("--bands", type=int, default=sg.BANDS)
    parser.add_argument("--rows", type=int, default=sg.ROWS)
    parser.add_argument("--similarity", type=float, default=sg.DEFAULT_SIMILARITY)
    parser.add_argument("--sweep", action="store_true", help="also compare shingle sizes and LSH layouts")
    parser.add_argument("--rounds", type=int, default=5, help="timing rounds (default 5)")
    parser.add_argument(
        "--db-entries", type=int, default=100_000, help="entries for the storage figure (0: skip)"
    )
    args = parser.parse_args()
    p = Params(args.shingle, args.num_perm, args.bands, args.rows, args.similarity)
    if p.bands * p.rows > p.num_perm:
        parser.error(f"--bands x --rows must be at most --num-perm ({p.bands} x {p.rows} > {p.num_perm})")
    articles = args.corpus / "articles" if (args.corpus / "articles").is_dir() else args.corpus
    if not (articles / "INDEX.json").is_file():
        print(f"skipped: corpus articles not found at {articles} (see --corpus)")
        return 0
    docs, teasers, extract_s = load_corpus(articles)
    corpus_docs = list(docs)
    docs += [press_release(c, heavy) for heavy in (False, True) for c in CASES]
    docs += [narrative(c) for c in CASES]
    docs += [column(d) for d in corpus_docs[:12]]
    print(
        f"{len(corpus_docs)} corpus articles from {articles} (extracted in {extract_s:.1f}s; {len(teasers)} teasers "
        f"under {sg.MIN_WORDS} tokens left out: {', '.join(teasers)}), {len(CASES)} press releases x 2 templates, "
        f"{len(CASES)} case narratives, 12 columns; {args.copies} copies of each kind, seed {args.seed}; "
        f"Python {sys.version.split()[0]}, signature version {sg.SIGNATURE_VERSION}"
    )
    same, distinct = build(docs, args.copies, args.seed)
    report(p, same, distinct)
    if args.sweep:
        sweep(same, distinct, p)
    speed(corpus_docs, p, args.rounds)
    if args.db_entries:
        storage(p, args.db_entries, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
