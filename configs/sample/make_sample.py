"""Build the bundled sample archive (configs/sample/sample.warc.gz) from the pages below.

Everything here is invented for storybeam: four outlets cover one event (the closure of the
Velmora harbour bridge), one outlet re-publishes an agency copy of another's story, two pages
are about unrelated things, and a few records are there to be refused (an image, an empty page,
a 404). The pages carry the boilerplate extractors leave behind: repeated titles,
"Previous Post Next Post", comment widgets, tag run-ons, share and newsletter lines.

    python configs/sample/make_sample.py        # rewrites sample.warc.gz
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

BRIDGE_1 = [
    "VELMORA: The Velmora harbour bridge was closed to all traffic on Tuesday after engineers found deep cracks in two of its steel support girders, the city's transport department said.",
    "Inspectors discovered the damage during a routine survey on Monday night and recommended an immediate closure, according to transport commissioner Ilse Marendt.",
    "\u201cWe will not take any risk with the safety of people crossing the harbour,\u201d Marendt told reporters at the ferry terminal. \u201cThe bridge stays shut until we know exactly how far the cracks go.\u201d",
    "About 42,000 vehicles use the bridge every day. Buses are being diverted over the northern ring road, and the city has added six extra ferry sailings between the old port and Kessel Point.",
    "The bridge, opened in 1968, was last strengthened in 2009. Engineers will use ultrasound scans this week to map the cracks before deciding on repairs, which could take several months.",
    "Business owners on the Kessel Point side said the closure would hurt trade ahead of the autumn fair, and the chamber of commerce asked the city for a temporary pedestrian crossing.",
]
BRIDGE_2 = [
    "Velmora shut its harbour bridge on Tuesday after cracks were found in the steel girders that carry the deck, leaving tens of thousands of commuters looking for another way across the water.",
    "Transport commissioner Ilse Marendt said the cracks were spotted during an overnight inspection and that engineers had advised closing the crossing straight away.",
    "\u201cSafety comes first. The bridge will stay closed until we understand the full extent of the damage,\u201d Marendt said.",
    "Traffic backed up on the northern ring road during the morning rush as buses were rerouted. Extra ferries are running to Kessel Point every twenty minutes.",
    "Ultrasound testing of the girders starts this week. Officials said repairs could last months and declined to give a reopening date.",
]
BRIDGE_3 = [
    "Commuters in Velmora faced long delays on Tuesday as the harbour bridge stayed closed after inspectors found cracks in two main support girders.",
    "The 1968 crossing normally carries about 42,000 vehicles a day. City officials said the damage was discovered on Monday night during a scheduled inspection.",
    "Transport commissioner Ilse Marendt said no one would be allowed on the bridge until engineers finished ultrasound scans of the steel.",
    "Shop owners in Kessel Point warned the closure could cost them customers before the autumn fair, while the ferry operator said it would add sailings between the old port and the point.",
    "Engineers said they would decide on repairs once the scans were complete.",
]
BRIDGE_4 = [
    "Cracks found in the Velmora harbour bridge have forced its closure, the city said on Tuesday, with engineers warning that repairs to the steel girders may take months.",
    "The damage was found in an inspection on Monday night. Transport commissioner Ilse Marendt ordered the bridge shut to cars, buses and pedestrians.",
    "\u201cWe will not take risks with public safety,\u201d she said, adding that ultrasound scans of the girders would begin within days.",
    "Buses now follow the northern ring road, and six more ferry trips a day link the old port with Kessel Point. The chamber of commerce has asked for a temporary footbridge.",
]
LIBRARY = [
    "The Brenholt public library opened its first robotics workshop for teenagers on Saturday, with thirty students building small rovers from recycled parts.",
    "Librarian Tomas Ekwall said the workshop would run every weekend until the end of the school year, funded by a grant from the regional education board.",
    "Students programmed the rovers to follow a line around the reading room, and the fastest team won a set of soldering tools donated by a local electronics shop.",
    "The library plans to add a coding club for younger children in the spring.",
]
FOOTBALL = [
    "Port Aldine FC beat Rivervale United 3-1 on Sunday to move to the top of the regional league, with striker Maro Castell scoring twice in the second half.",
    "Rivervale had taken the lead through a header from a corner after ten minutes, but Aldine equalised before the break when their captain curled in a free kick.",
    "Castell's goals came within six minutes of each other, the second a low shot from the edge of the area after a quick counter-attack.",
    "Aldine host Kessel Athletic next Saturday.",
]

NAV = '<nav><ul><li><a href="/">Home</a></li><li><a href="/world">World</a></li><li><a href="/city">City</a></li><li><a href="/sport">Sport</a></li></ul></nav>'
FOOT = '<footer><p>\u00a9 2026 {site}. All rights reserved.</p><p><a href="/privacy">Privacy</a> | <a href="/contact">Contact</a></p></footer>'


def page(
    site: str,
    title: str,
    paragraphs: list[str],
    date: str,
    *,
    extra_top: str = "",
    extra_bottom: str = "",
    repeat_last: bool = False,
) -> bytes:
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    if repeat_last:
        body += f"<p>{paragraphs[-1]}</p>"
    html = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title} | {site}</title>
<meta property="og:title" content="{title}">
<meta property="article:published_time" content="{date}">
</head><body>
<header><div class="logo">{site}</div>{NAV}</header>
<main><article>
<h1>{title}</h1>
<div class="byline">By Staff Reporter | {date[:10]}</div>
{extra_top}
<div class="article-body">{body}</div>
{extra_bottom}
</article>
<aside><h3>Most read</h3><ul><li><a href="/a">Council approves new cycle lanes</a></li><li><a href="/b">Weather: storm warning for the coast</a></li></ul></aside>
</main>
{FOOT.format(site=site)}
</body></html>"""
    return html.encode("utf-8")


def pages() -> list[tuple[str, bytes, datetime, str]]:
    t = lambda s: datetime.fromisoformat(s).astimezone(timezone.utc)  # noqa: E731
    title1 = "Velmora harbour bridge closed after cracks found in girders"
    out = [
        (
            "https://www.harbourgazette.example/city/2026/03/10/velmora-bridge-closed?utm_source=rss",
            page(
                "Harbour Gazette",
                title1,
                [title1] + BRIDGE_1,
                "2026-03-10T09:15:00+00:00",
                extra_bottom='<div class="post-nav"><a href="/prev">Previous Post</a> <a href="/next">Next Post</a></div>',
            ),
            t("2026-03-10T10:00:00+00:00"),
            "text/html; charset=utf-8",
        ),
        (
            "https://velmoradaily.example/news/bridge-shut-cracks",
            page(
                "Velmora Daily",
                "Harbour bridge shut as cracks found in steel girders",
                BRIDGE_2,
                "2026-03-10T11:40:00+00:00",
                extra_bottom='<div class="tags"><a>Velmora</a><a>Harbour Bridge</a><a>Transport</a></div><div class="comments"><h4>Comments (0)</h4><a>Add Comment</a></div>',
            ),
            t("2026-03-10T12:00:00+00:00"),
            "text/html; charset=utf-8",
        ),
        (
            "https://www.coastlinetimes.example/2026/03/10/commuters-delays-bridge/",
            page(
                "Coastline Times",
                "Commuters face delays as Velmora bridge stays shut",
                BRIDGE_3,
                "2026-03-10T16:05:00+00:00",
                extra_top='<p class="share">Share this article: Facebook Twitter WhatsApp Email</p>',
                extra_bottom='<p class="newsletter">Sign up for our newsletter to get the latest news in your inbox.</p>',
                repeat_last=True,
            ),
            t("2026-03-10T17:00:00+00:00"),
            "text/html; charset=utf-8",
        ),
        (
            "https://northbaypost.example/story/velmora-bridge-repairs-months",
            page(
                "North Bay Post",
                "Velmora bridge repairs may take months, engineers warn",
                BRIDGE_4,
                "2026-03-11T07:30:00+00:00",
            ),
            t("2026-03-11T08:00:00+00:00"),
            "text/html; charset=utf-8",
        ),
        (
            # An agency copy of the first story on another site: a near-duplicate.
            "https://regionalwire.example/wire/velmora-bridge-closed-cracks",
            page(
                "Regional Wire",
                title1,
                BRIDGE_1[:-1] + [BRIDGE_1[-1].replace("asked the city", "has asked the city")],
                "2026-03-10T09:40:00+00:00",
            ),
            t("2026-03-10T10:30:00+00:00"),
            "text/html; charset=utf-8",
        ),
        (
            "https://brenholtherald.example/community/library-robotics-workshop",
            page(
                "Brenholt Herald", "Library opens robotics workshop for teenagers", LIBRARY, "2026-03-10T08:00:00+00:00"
            ),
            t("2026-03-10T09:00:00+00:00"),
            "text/html; charset=utf-8",
        ),
        (
            "https://portaldinesport.example/match/aldine-rivervale",
            page(
                "Port Aldine Sport",
                "Castell double sends Port Aldine top of the league",
                FOOTBALL,
                "2026-03-09T18:00:00+00:00",
            ),
            t("2026-03-09T19:00:00+00:00"),
            "text/html; charset=utf-8",
        ),
        # Records that must land in failures, not vanish:
        (
            "https://velmoradaily.example/images/bridge.png",
            b"\x89PNG\r\n\x1a\n" + b"\0" * 64,
            t("2026-03-10T12:00:00+00:00"),
            "image/png",
        ),
        ("https://coastlinetimes.example/empty", b"", t("2026-03-10T17:00:00+00:00"), "text/html"),
    ]
    return out


def main() -> None:
    from transforms.sources import write_warc

    target = HERE / "sample.warc.gz"
    write_warc(str(target), pages())
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
