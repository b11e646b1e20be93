"""CleanText: Article -> Article with boilerplate lines removed, or a 'filter' Failure.

The cleaner works on lines (paragraphs). Every rule has a name; an article lists the rules that
fired (``rules_fired``) and keeps every piece of text a rule removed (``removed``), so nothing
is lost silently. Rule groups (switch off with ``CleanRules.disabled``):

* ``dateline_meta``   leading "date 2025-10-26" / "Published: ..." prefixes and lines that are
                      only dates, times, reading times or update stamps ("Updated 10
                      minutes ago").
* ``nav``             previous/next navigation ("Previous Post Next Post", "Nächster Artikel").
* ``comments``        comment counters and prompts ("Comments (0)", "Add Comment"), and
                      trailing user-comment threads: >= 2 comment signatures ("Posted by:
                      jim | January 14, 2008") or a section header ("Comments are closed",
                      "Have your say") after the first part of the text cuts the rest.
* ``share``           share/follow/print bars ("Share on Facebook", "Teilen", "Partager").
* ``newsletter``      newsletter, subscription and paywall prompts.
* ``related``         read-more / related-content lead-ins ("Read more:", "Lesen Sie auch",
                      "Lea también:", "Previous: <headline>"); after a lead-in alone on its
                      line ("Related Articles"), the list it opens: the headlines and cut
                      teasers ("... running a...") up to the first prose line.
* ``photo_credit``    photo/image credits ("(AP Photo/Jane Roe)", "Image source, Getty
                      Images"), captions labelled as such ("Media caption, ...") and short
                      captions ending in a © credit.
* ``legal``           cookie notices, copyright and rights lines.
* ``advert``          advertisement markers ("Advertisement", "Anzeige") and affiliate
                      disclosures.
* ``tags``            tag/topic lists ("Tags: ...") and run-on tag strips glued without
                      spaces ("Marco RubioPakistan - United StatesUS Secretary of State").
* ``ui``              interface text: show/load more, loading, embed placeholders, log-in
                      and paywall prompts, reading-time notes, the buttons of current
                      templates ("Listen to this article", "Gift this article", "toggle
                      caption", "Skip to main content", a lone "Menu").
* ``no_letters``      lines without any letter or digit (separators, bullets).
* ``repeated_title``  the title repeated as one of the first body lines.
* ``repeated_paragraph``  a paragraph that occurs again (the first is kept), or that is wholly
                      contained in a longer paragraph (the longer one is kept).
* ``host_boilerplate``  lines learned to recur across many articles of one host in a run.

The phrase rules use word lists in English, German, French, Spanish, Italian, Portuguese,
Dutch and Polish, and only fire on short lines made (almost) entirely of those words, so prose
that merely mentions "comments" or "newsletter" is never touched. A line made of segments
separated by " | " or " · " is boilerplate when every segment is ("May 2, 2024 | Tags: x |
3 Comments"), a one-cell table row ("| Related articles |") when its cell is. Link density
is a structural signal of the HTML, so it is applied by the extract stage (rule
``link_density``); its removals arrive here in ``rules_fired``/``removed``.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import NamedTuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput

from transforms import records
from transforms.fingerprint import remember_words
from transforms.records import Article, Failure

RULE_GROUPS = (
    "dateline_meta",
    "nav",
    "comments",
    "share",
    "newsletter",
    "related",
    "photo_credit",
    "legal",
    "advert",
    "tags",
    "ui",
    "no_letters",
    "repeated_title",
    "repeated_paragraph",
    "host_boilerplate",
)


@dataclass(frozen=True)
class CleanRules:
    """Rules of the clean stage (YAML section ``clean``)."""

    # Rule groups to switch off by name (see RULE_GROUPS); e.g. ("tags",) keeps tag lines.
    disabled: tuple[str, ...] = ()
    # Cleaned text shorter than this (characters) is filtered as 'too_short': a teaser or a
    # stub page is not an article. 0 keeps everything that is not empty.
    min_text_chars: int = 80
    # Phrase rules only look at lines up to this many characters: boilerplate lines are short,
    # so long prose lines are never candidates (protects prose from false positives). Weak
    # phrases (newsletter, ui, photo credit, comment prompts) only fire on lines <= 160.
    max_boilerplate_chars: int = 300
    # A paragraph wholly contained in a longer one is dropped only from this length on
    # (characters); shorter lines such as sub-headings may legitimately recur inside prose.
    min_contained_chars: int = 60
    # Exact repeats shorter than this (characters) are kept: short repeated lines are often
    # structure (sub-headings such as "Pros:", table cells), long ones are copy-paste doubles.
    min_repeat_chars: int = 25
    # Body lines among the first N that repeat the title are dropped (repeated_title).
    title_scan_lines: int = 3
    # Learned per-host boilerplate: a host needs at least this many articles in a run...
    host_min_articles: int = 4
    # ...and a line must occur in at least this share of them (and in >= 3 articles) to be
    # treated as boilerplate of that host (menus, sign-offs, newsletter prompts).
    host_min_share: float = 0.5
    # A sentence of prose (``_reads_as_prose``) is learned only from hosts with at least this
    # many articles in the run: a few follow-ups of one story on a small site share their
    # background paragraph, which is the article's text, not the site's template.
    host_min_articles_prose: int = 10
    # Learning looks at most at this many articles of a host (memory stays bounded for hosts
    # with very many articles in a backfill; templates show up in any sample of that size).
    host_sample_articles: int = 1000
    # Lines longer than this (characters) are never learned as host boilerplate: long repeated
    # paragraphs are more likely syndicated prose than template text.
    host_max_line_chars: int = 300
    # JSON file (local path or fsspec URL) with host boilerplate saved by earlier runs:
    # {"host": ["line key", ...]}; its lines are removed in addition to those learned in this
    # run (and are the only learned lines on unbounded input). "" = no saved state. Write it
    # from CleanText's ``host_boilerplate`` output with save_host_state().
    host_state_path: str = ""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.disabled) - set(RULE_GROUPS))
        if unknown:
            raise ValueError(f"disabled: unknown rule group(s) {', '.join(unknown)}; known: {', '.join(RULE_GROUPS)}")
        for name in (
            "min_text_chars",
            "max_boilerplate_chars",
            "min_contained_chars",
            "min_repeat_chars",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0")
        if self.title_scan_lines < 0:
            raise ValueError("title_scan_lines: must be >= 0")
        if self.host_min_articles < 2:
            raise ValueError("host_min_articles: must be >= 2 (one article cannot recur)")
        if not 0.0 < self.host_min_share <= 1.0:
            raise ValueError("host_min_share: must be in (0, 1]")
        if self.host_min_articles_prose < self.host_min_articles:
            raise ValueError("host_min_articles_prose: must be >= host_min_articles")
        if self.host_sample_articles < self.host_min_articles:
            raise ValueError("host_sample_articles: must be >= host_min_articles")
        if self.host_max_line_chars <= 0:
            raise ValueError("host_max_line_chars: must be > 0")

    def enabled(self, group: str) -> bool:
        return group not in self.disabled


@dataclass(frozen=True)
class Cleaned:
    text: str
    title: str | None
    rules_fired: tuple[str, ...]
    removed: tuple[str, ...]
    #: the keys (``_key``) of the lines of ``text`` joined by spaces: the casefolded words of
    #: the lines one after the other, what ``fingerprint.words`` gives for the text when it is
    #: its own NFKC form
    keys: str = field(default="", compare=False, repr=False)


# ---------------------------------------------------------------------------------------------
# Word lists. A line is boilerplate of a group when all its words are in the group's
# vocabulary (plus digits) and at least one is a "core" word of that group.
# ---------------------------------------------------------------------------------------------


def _words(text: str) -> set[str]:
    return set(text.split())


_NAV_CORE = _words(
    "previous prev next older newer vorheriger vorherige vorheriges nächster nächste nächstes "
    "zurück weiter précédent précédente suivant suivante anterior siguiente próximo próxima "
    "poprzedni poprzednia poprzedni następny następna następne precedente successivo "
    "successiva vorige volgende seguinte"
)
_NAV_VOCAB = _NAV_CORE | _words(
    "post posts article articles story stories entry entries page item beitrag artikel "
    "seite meldung nachricht artículo noticia entrada página artykuł wpis strona articolo "
    "notizia pagina bericht artigo notícia go to the zum zur la le el de à a back"
)

_COMMENT_CORE = _words(
    "comment comments kommentar kommentare kommentaren kommentieren commentaire commentaires "
    "commenter comentario comentarios comentar commento commenti commenta komentarz komentarze "
    "komentarzy skomentuj reactie reacties comentário comentários leserkommentare responses"
)
_COMMENT_VOCAB = _COMMENT_CORE | _words(
    "add a an leave post write show view load hide all the reply replies your be first to no "
    "yet closed are is one read see join conversation discussion schreiben jetzt anzeigen "
    "einblenden alle lesen ajouter un une laisser voir les écrire agregar añadir dejar deja tu "
    "ver los escribe dodaj zobacz wszystkie napisz lascia un leggi i plaats een bekijk "
    "adicionar deixe seu ver os open close insgesamt keine noch total most recent latest reader "
    "readers user users leser neueste derniers"
)

_PLATFORMS = _words(
    "facebook twitter x linkedin whatsapp telegram email e mail print pinterest reddit tumblr "
    "messenger xing flipboard bluesky threads instagram youtube tiktok vk viber sms pocket "
    "mastodon copy link google"
)
_SHARE_CORE = _words(
    "share shares sharing shared tweet follow teilen geteilt folgen drucken partager partagez "
    "suivez imprimer compartir comparte síguenos siguenos imprimir udostępnij obserwuj drukuj "
    "condividi seguici stampa delen deel volg compartilhe compartilhar siga"
)
_SHARE_VOCAB = (
    _SHARE_CORE
    | _PLATFORMS
    | _words(
        "this article story post page on via us our and or the in by with auf per artikel "
        "diesen beitrag uns sur nous cet article en este artículo nos ten artykuł na nas su "
        "questo articolo dit artikel op ons este artigo no nos link kopieren copier enlace "
        "copiar kopiuj copia mit"
    )
)
#: "Follow The Daily on Twitter, Instagram and Facebook @daily ...": a line that opens with one
#: of these verbs and names two or more of ``_SOCIAL`` is a follow prompt, whatever else it says
_FOLLOW = _words("follow síguenos siguenos sigue folgen folgt folge suivez seguici seguiteci obserwuj volg siga sigam")
_SOCIAL = _words(
    "facebook twitter instagram youtube tiktok linkedin whatsapp telegram pinterest reddit bluesky mastodon snapchat"
)
#: the like button's label left alone on its line ("Like this:", "Gefällt mir:")
_LIKE_LABEL = re.compile(r"(?:like this|gefällt mir|j'aime ceci|me gusta esto|mi piace)\W*", re.IGNORECASE)

_COMMENT_PROMPT = re.compile(
    r"^(?:keine|no|noch keine|aucun|sin|brak|nessun)\w* (?:kommentare?|comments?|commentaires?|"
    r"comentarios?|komentarzy|commenti)\b|in den kommentaren|kommentare? (?:zu )?schreiben|"
    r"um zu kommentieren|jetzt kommentieren|(?:post|leave|write|add) a comment\b|dans les "
    r"commentaires|en (?:los )?comentarios|w komentarzach|nei commenti",
    re.IGNORECASE,
)
# Every alternative above contains one of these words (see _has_phrase; checked by a test).
_COMMENT_PROMPT_WORDS = ("comment", "komment", "comentario", "komentarz")
_ADVERT_VOCAB = _words(
    "advertisement advertising ad ads sponsored anzeige werbung publicité publicite publicidad "
    "anuncio reklama pubblicità annuncio advertentie publicidade story continues below "
    "article text continues after scroll to continue reading content weiter nach der lesen "
    "sie unten"
)
_ADVERT_CORE = _words(
    "advertisement advertising ad ads sponsored anzeige werbung publicité publicite publicidad "
    "anuncio reklama pubblicità annuncio advertentie publicidade"
)

_ADVERT_PHRASE = re.compile(
    r"affiliate[- ]?links?|(?:we|may) (?:may )?(?:earn|receive) (?:a |an )?(?:small )?(?:affiliate )?(?:commission|"
    r"compensation)|supported by (?:its|our) (?:audience|readers)|(?:reader|audience)-supported|partner-?links?|provisions-?links?|werbe-?links?|enthält werbung|"
    r"sponsored (?:content|post)|references to products from|bezahlte partnerschaft|"
    r"paid partnership|lien(?:s)? affilié|enlaces? de afiliado|linki afiliacyjne",
    re.IGNORECASE,
)
# Every alternative above contains one of these words (see _has_phrase; checked by a test).
_ADVERT_PHRASE_WORDS = (
    "affili",
    "afilia",
    "commission",
    "compensation",
    "partner",
    "provision",
    "werb",
    "sponsored",
    "references to products",
    "supported",
)

_MONTHS = _words(
    "january february march april may june july august september october november december "
    "jan feb mar apr jun jul aug sep sept oct nov dec januar februar märz mai juni juli "
    "oktober dezember jänner janvier février mars avril juin juillet août septembre octobre "
    "novembre décembre enero febrero marzo abril mayo junio julio agosto septiembre octubre "
    "noviembre diciembre stycznia lutego marca kwietnia maja czerwca lipca sierpnia września "
    "października listopada grudnia gennaio febbraio aprile maggio giugno luglio settembre "
    "ottobre dicembre janeiro fevereiro março maio junho julho setembro outubro dezembro"
)
_WEEKDAYS = _words(
    "monday tuesday wednesday thursday friday saturday sunday mon tue wed thu fri sat sun "
    "montag dienstag mittwoch donnerstag freitag samstag sonntag lundi mardi mercredi jeudi "
    "vendredi samedi dimanche lunes martes miércoles jueves viernes sábado domingo "
    "poniedziałek wtorek środa czwartek piątek sobota niedziela"
)
_DATE_LABELS = _words(
    "date dated published posted updated last modified created on at am pm by uhr um stand "
    "veröffentlicht aktualisiert zuletzt erstellt am publié le mis à jour publicado el "
    "actualizado a las de del opublikowano aktualizacja zaktualizowano dnia pubblicato "
    "aggiornato il alle gepubliceerd bijgewerkt om atualizado em gmt utc bst cet cest mez mesz "
    "est edt pst pdt ist pkt ago hours hour minutes minute mins min days day seconds vor "
    "stunden minuten tagen il y a hace horas minutos temu godzin minut time read reading "
    "lesezeit lecture de lectura czas czytania tempo di lettura leestijd leitura minuten "
    "minutes letzte änderung geändert modified veröffentlichung erschienen verfügbar bis datum "
    "fecha data originally"
)
_DATE_VOCAB = _MONTHS | _WEEKDAYS | _DATE_LABELS
_DATE_PREFIX = re.compile(
    r"^\s*(?:(?:date|dated|published|posted|updated|last updated|veröffentlicht|aktualisiert"
    r"|stand|publié|mis à jour|publicado|actualizado|opublikowano|pubblicato|gepubliceerd)"
    r"(?:\s+(?:on|am|le|el|il|op))?\s*:?\s*)"
    r"(?:\d{4}-\d{1,2}-\d{1,2}(?:[T ]\d{1,2}:\d{2}(?::\d{2})?(?:Z|[+-]\d{2}:?\d{2})?)?"
    r"|\d{1,2}[./]\d{1,2}[./]\d{2,4}(?:,?\s+\d{1,2}:\d{2}(?:\s*uhr)?)?)\s+(?=\S)",
    re.IGNORECASE,
)

_NEWSLETTER = re.compile(
    # "Register to vote by Oct. 20", "Join the line before 7 p.m." (explainers) are prose: an
    # opening "sign up / register / join" needs a word of the subscription's own or a short line
    r"(?:^\W*subscribe\b|^\W*(?:sign up|register|join)\b(?:\W+\w+){0,3}\W*$|"
    r"^\W*(?:sign up|register|join)\b(?=.*?(?:newsletter|e-?mail|inbox|free\b|account|member|"
    r"subscri|community|updates|alert|digest|briefing|mailing|feed|rss|\bnow\b|today|\bhere\b|"
    r"\bour\b|\bus\b|\bwin\b|group|facebook|twitter|instagram|whatsapp|telegram|discord|club|"
    r"premium|deals|offers|weekly|daily))|sign up (?:for|to) (?:our|the|a|free|my)\b|"
    r"subscribe (?:to our|now|today|for free|to (?:read|view|continue))|please subscribe|"
    r"unlimited (?:digital )?access|"
    r"newsletter (?:abonnieren|bestellen|anmelden|sign ?up)|already a (?:subscriber|"
    r"member)|log ?in to (?:continue|read)|to continue reading|register to (?:read|continue)|"
    r"become a (?:member|subscriber)|support (?:our|independent) journalism|unlock (?:this|"
    r"full)|jetzt abonnieren|abonnieren sie|abo abschließen|abonnez-vous|inscrivez-vous|"
    r"suscríbete|suscribirse|zapisz się|zaprenumeruj|iscriviti|abbonati|abonneer|"
    r"assine|inscreva-se|get (?:our|the) (?:latest|daily|free)\b(?:\W+\w+){0,3}?\W+(?:news|updates|headlines|stories|photos|app|e-?mails?|newsletters?|briefing|edition|digest|alerts|recipes|deals|offers)\b|delivered to your inbox|"
    r"in your inbox|sign(?:ing)? up (?:here|now|today|free|to our)|free sign ?up|"
    r"support(?:ing)? (?:our|independent) (?:journalism|work|reporting|newsroom)|^support us\b|"
    r"^donate\b|donate (?:now|today)|jetzt spenden|"
    r"unterstützen sie (?:uns|unsere)|soutenez|apóyanos|wesprzyj|subskrypcj|prenumerat|"
    r"hazte (?:miembro|socio)|únete (?:a|desde)|cancela cuando quieras|cancel any ?time|"
    r"werde mitglied|jetzt unterstützen|first-time subscribers|download our .{0,40}apps?\b|"
    # "Download the NHS App to book an appointment" is an explainer's step
    r"download the .{0,40}apps?\b(?:\W*$|.{0,80}(?:news|updates|latest|stories|alerts|headlines|coverage|free|"
    r"ios|android|iphone|google play|app store))|lade (?:dir )?(?:die|unsere) .{0,30}app|nuestro canal de (?:youtube|"
    r"telegram|whatsapp)|canal de (?:telegram|whatsapp)|letters? to the editor|"
    r"we want to hear what you think|déjà abonné|ya eres suscriptor|bereits abonnent|já é assinante|"
    r"al abonnee|nieuwsbrief|in (?:je|uw) mailbox|dans votre boîte|premium content|"
    r"(?:receive|get|receba|recibe|reciba|recevez) (?:the |our |as |las |les )?(?:latest )?(?:news|notícias|noticias|"
    r"actualités|updates|alerts)\b.{0,60}\b(?:on|no|en|sur|por) (?:whatsapp|telegram)|follow (?:\S+ ){0,3}on (?:twitter|facebook|instagram|"
    r"linkedin|x|tiktok|youtube|threads|bluesky)|síguenos en|folgen sie uns|suivez-nous)",
    re.IGNORECASE,
)
# Every alternative above contains one of these words (see _has_phrase; checked by a test).
_NEWSLETTER_WORDS = (
    "sign up",
    "signing up",
    "signup",
    "subscri",
    "register",
    "join",
    "newsletter",
    "already a",
    "in to",
    "continue reading",
    "become a",
    "support",
    "unlock",
    "unlimited",
    "abonn",
    "abo abschließen",
    "inscrivez",
    "suscr",
    "zapisz",
    "prenumer",
    "iscriviti",
    "abbonati",
    "assine",
    "inscreva",
    "get our",
    "get the",
    "inbox",
    "donate",
    "spenden",
    "unterstützen",
    "soutenez",
    "apóyanos",
    "wesprzyj",
    "subskrypcj",
    "hazte",
    "únete",
    "cancel",
    "mitglied",
    "download",
    "lade ",
    "canal de",
    "to the editor",
    "hear what you think",
    "follow",
    "síguenos",
    "folgen sie uns",
    "suivez-nous",
    "déjà abonné",
    "ya eres",
    "bereits abonnent",
    "já é assinante",
    "al abonnee",
    "nieuwsbrief",
    "mailbox",
    "boîte",
    "premium content",
    "whatsapp",
    "telegram",
)
_RELATED = re.compile(
    r"^(?:read more|read also|also read|read next|see also|related(?: articles?| stories| "
    r"content| news| posts?| coverage| topics?| reading)?|more on this|more from|more in|more stories|"
    r"most (?:viewed|shared|commented|emailed)|editor'?s picks|don'?t miss|"
    r"schon gelesen|meist ?gelesene?|meist(?:-| )?(?:diskutiert|kommentiert|gelesen)e?|"
    r"kommentierte artikel|"
    r"more news|up next|read the full (?:story|article)|recommended(?: for you| stories| articles)?|you may also like|you might also "
    r"like|you may be interested|most read|most popular|trending(?: now)?|top stories|"
    r"lesen sie (?:auch|mehr|hier)|mehr zum thema|mehr dazu|auch interessant|das könnte sie "
    r"(?:auch )?interessieren|weitere artikel|weiterlesen|mehr lesen|zum thema|"
    r"lire aussi|à lire aussi|a lire aussi|voir aussi|sur le même sujet|lire la suite|"
    r"lee también|leer más|te puede interesar|noticias relacionadas|ver también|"
    r"czytaj (?:także|też|więcej|również)|zobacz (?:też|także|również)|polecamy|"
    r"leggi anche|potrebbe interessarti|leggi tutto|lees ook|lees meer|leia também|"
    r"veja também|saiba mais|continue reading|click here|hier klicken|cliquez ici|"
    r"haga clic aquí|kliknij tutaj|empfohlene (?:beiträge|artikel)|weitere (?:themen|artikel|"
    r"beiträge|nachrichten|meldungen)|(?:das |diese )?(?:thema |themen |artikel )?könnten? "
    r"(?:dich|sie|euch) auch interessieren|vorschau auf den nächsten|dowiedz się więcej|"
    r"przeczytaj (?:też|także|również)|à voir aussi|à découvrir aussi|sur le même thème|"
    r"más noticias|otras noticias|ti potrebbe interessare|potrebbe interessarti anche|"
    r"(?:lea|lee|vea|mira|mire|ver|siehe|voir|lire|leia|veja|leggi|zobacz|czytaj|lesen|watch)\s*:|"
    r"lea (?:también|más|además)|vea (?:también|además)|le puede interesar|puedes ver|"
    r"también te puede interesar|notas relacionadas|contenido relacionado|más sobre|"
    r"artículos relacionados|auch lesen|mehr themen|zum weiterlesen|top-themen|"
    r"weitere aktuelle|beiträge aus dem forum|auch auf \S+$|articles? liés?|"
    r"dans la même rubrique|nos articles|powiązane|podobne artykuły|artigos relacionados|"
    r"also see|all about|(?:previous|next|prev|older|newer|vorheriger|nächster|précédent|"
    r"suivant|anterior|siguiente)(?: (?:post|article|story|entry|artikel|beitrag))?\s*[:»›])"
    r"(?!\w)\s*[:»›>.…?!-]*",
    re.IGNORECASE,
)
_PHOTO_CREDIT = re.compile(
    r"^(?:\(?(?:photo|photos|image|images|picture|pictures|foto|fotos|bild|bilder|fotografía|"
    r"imagen|zdjęcie|zdjęcia|fot\.|zdj\.|immagine|afbeelding|credit|credits|crédits? photos?|"
    r"crédit|crédits|titelbild|beitragsbild|aufmacherbild|headerbild|symbolbild|"
    r"image illustrative|illustration|"
    r"bildquelle|quelle|source image|photo credit|image credit|image source)\s*"
    # "Foto de Ana Ruiz", "Photo by Jane Roe": a name follows (not "Fotos de satélite muestran")
    r"(?::|/|©|(?:by|von|par|de)\s+(?-i:[A-ZÀ-Þ]))"
    r"|©|\(c\)\s"
    r"|.{0,80}/(?:getty images|reuters|ap|afp|epa|dpa|shutterstock|istock|anadolu|xinhua)\)?$"
    r"|(?:getty images|shutterstock|istock(?:photo)?)$"
    # agency photo credits, BBC's labelled captions and credits (a wire story's "Additional
    # reporting by ...; Editing by ..." stays: trafilatura_eval counts it as the article's)
    r"|\(?(?:ap|afp|reuters|epa|dpa|getty|xinhua|anadolu) (?:photos?|images)\s*/"
    r"|(?:image|media|video) (?:source|caption)\s*,)",
    re.IGNORECASE,
)
_LEGAL = re.compile(
    r"(?:\b(?:we|site|website) uses? cookies\b|accept (?:all )?cookies|our standards: .{0,40}trust principles|"
    # a cookie notice speaks to the reader about the site ("Auf unserer Website werden Cookies
    # verwendet"); a news line on cookies ("websites must make it as easy to reject cookies")
    # or a recipe ("we add a pinch ...; most cookies use baking soda") lacks one or the other
    r"^(?=.*?\b(?:we|our|us|you|your|please|wir|unserer?|ihnen|nous|notre|vous|votre|nuestr[oa]s?|"
    r"usted|nasz\w*|noi|nostro|wij|onze|uw)\b)(?=.*?(?:site|browser|brows|consent|privacy|polic|"
    r"settings|einstellungen|datenschutz|third[- ]part|partner|analytics|tracking|advertis|\bads\b|"
    r"youtube|video|navigat|navega|personali[sz]|strona|sito)).*?\bcookies?\b.{0,120}\b(?:use|"
    r"uses|using|accept|consent|policy|settings|einstellungen|verwendet|akzeptieren|utilise|"
    r"utilisons|accepter|utiliza|usamos|aceptar|używa|akceptuj|utilizza|accetta)"
    r"|all rights reserved|alle rechte vorbehalten|tous droits réservés|todos los derechos "
    r"reservados|wszelkie prawa zastrzeżone|tutti i diritti riservati|alle rechten "
    r"voorbehouden|todos os direitos reservados|^©\s*\d{4}|"
    # "Copyright 2008 by The", "Copyright: ...", "Copyright PA Sport 2008"; not "Copyright law ..."
    r"^copyright\s*(?:$|[:©(\d])|^copyright\b.{0,60}\b(?:19|20)\d\d\b|"
    r"^copyright (?:and|&|notice|policy|information)\b|"
    r"materiał chroniony prawem|alle angaben ohne gewähr|dpa-infocom|"
    r"not responsible for the content of external|republish (?:our|this|these) (?:articles?|stor)|"
    r"auto-generated from a syndicated feed|a version of this article appears in print|"
    r"copyrighted property|written permission (?:must|is required)|may not be (?:re)?published(?:,| or\b| in (?:whole|any)| without)|"
    r"(?:licensed|lizenziert|stehen|is available|sont disponibles?) (?:under|unter|sous) "
    r".{0,30}(?:cc[- ]by|creative commons)"
    r"|^(?:privacy policy|terms of (?:use|service)|datenschutz(?:erklärung)?|impressum|"
    r"mentions légales|aviso legal|polityka prywatności)$)",
    re.IGNORECASE,
)
# Every alternative above contains one of these words (see _has_phrase; checked by a test).
_LEGAL_WORDS = (
    "cookie",
    "reserv",
    "réserv",
    "riserv",
    "vorbehalten",
    "voorbehouden",
    "zastrzeżone",
    "copyright",
    "©",
    "chroniony",
    "gewähr",
    "permission",
    "published",
    "cc-by",
    "cc by",
    "creative commons",
    "privacy policy",
    "terms of",
    "trust principles",
    "datenschutz",
    "impressum",
    "mentions légales",
    "aviso legal",
    "polityka prywatności",
    "dpa-infocom",
    "not responsible",
    "republish",
    "syndicated feed",
    "appears in print",
)
# Interface labels: only whole short lines ("Show more", "View all 6 photos").
_UI_LABEL = re.compile(
    r"^(?:show|load|view|see) (?:more|all)\b|^(?:mehr|alle) (?:anzeigen|laden)\b|"
    r"^(?:bild|bilder|video|galerie|fotos?) (?:anzeigen|ansehen|vergrößern)\b|"
    r"^(?:wird geladen|loading|chargement|cargando|ładowanie|caricamento)\b|"
    # the buttons and notes of current news templates (audio, gifts, captions, app, skips)
    r"^(?:listen to this (?:article|story)|listen\W.{0,20}\d+:\d\d|copied!|gift (?:this )?article|"
    r"save (?:article|story|for later)|(?:article|story) continues below|continue reading (?:the "
    r"main story|below)|skip to (?:main )?content|skip (?:advertisement|ad)$|jump to comments|"
    r"(?:hide|toggle|show) caption|enlarge this image|open in (?:the )?app|click to (?:expand|"
    r"enlarge)|print this (?:page|article)|watch live$|supported by$|(?:have|got) a (?:news )?(?:tip|story)\b|"
    r"(?:menu|close|search|feedback|email|print|bookmark|back to top|report an error|keep reading|log ?in)$|"
    # review sites' widgets, a science-news layout's field labels, tabloid contact boxes
    r"table of contents$|toggle$|(?:check|see|compare) (?:the )?prices? (?:at|on)\b|full story$|"
    r"(?:date|source|summary):$|have an opinion\W*$|we pay for (?:your )?stories|do you have a story for\b)",
    re.IGNORECASE,
)
_UI = re.compile(
    r"um den inhalt .{0,80} zu laden|click to load|to view this content|externer? inhalte?\b|"
    r"javascript (?:is )?(?:disabled|required)|(?:enable|turn on) javascript|"
    r"^(?:have|got) a (?:news )?tip\b|javascript aktivieren|"
    r"nicht (?:eingeloggt|angemeldet)|not logged in|(?:must|need to) be logged in|"
    r"eingeloggt sein|einfach hier klicken|click here to\b|cliquez ici pour|"
    r"pour lire la suite|accéder en illimité|réservé aux abonnés|nur für abonnenten|"
    r"exclusive to subscribers|subscribers? only|abonnenten vorbehalten|"
    r"^(?:\d+|one|two|three|four|five|ten)[- ]min(?:ute)?s?[- ]read\b|lesezeit|lesedauer|"
    r"temps de lecture|tiempo de lectura|czas czytania|przeczytasz w|tempo di lettura|leestijd",
    re.IGNORECASE,
)
# Every alternative above contains one of these words (see _has_phrase; checked by a test).
_UI_WORDS = (
    "a tip",
    "news tip",
    "um den inhalt",
    "click",
    "to view this content",
    "extern",
    "javascript",
    "eingeloggt",
    "angemeldet",
    "logged in",
    "klicken",
    "cliquez",
    "lire la suite",
    "illimité",
    "abonn",
    "subscriber",
    "read",
    "lesezeit",
    "lesedauer",
    "temps de lecture",
    "tiempo de lectura",
    "czas czytania",
    "przeczytasz w",
    "tempo di lettura",
    "leestijd",
)
_TAGS = re.compile(
    r"^(?:tags?|tagged(?: with)?|topics?|keywords|filed under|categories|category|"
    r"schlagwörter|schlagworte|stichwörter|themen|thema|kategorie|kategorien|étiquettes|"
    r"mots-clés|mots clés|sujets|etiquetas|temas|palabras clave|tagi|tematy|kategorie|"
    r"argomenti|parole chiave|trefwoorden|onderwerpen|assuntos|palavras-chave)\s*(?::|$)",
    re.IGNORECASE,
)
# Two words glued without a space, lower->upper ("RubioPakistan", "StatesUS"): the signature
# of tag/topic link lists whose anchors were concatenated by text extraction.
_GLUE = re.compile(r"[a-zà-ÿ]{2}[A-ZÀ-Þ]")
_HANDLES = re.compile(r"[@#]\w+|https?://\S+|www\.\S+")
# A short caption whose last words are a © credit ("Harbour at dusk. © AFP / Jane Roe").
_CAPTION_CREDIT = re.compile(
    r"©\s*[^.!?©]{0,60}$|\((?:foto|fotos|photo|photos|imagen|image|bild|zdjęcie|fot\.|"
    r"crédit|credit)\s*:?[^()]{0,80}\)\.?$",
    re.IGNORECASE,
)
_DATE_SHAPE = re.compile(r"\b\d{4}-\d{1,2}-\d{1,2}\b|\b\d{1,2}[./]\d{1,2}[./]\d{2,4}\b|\b\d{1,2}:\d{2}\b")
_SEGMENTS = re.compile(r"\s+[|·•]\s+")
# Signature lines of user comments: "Posted by: jim | January 14, 2008 07:23 PM",
# "Anna says: 5 May 2024 at 10:12", "Reply". Reporting verbs ("said:") are not signatures.
_SIGNATURE = re.compile(
    r"^(?:posted|written|submitted|commented|geschrieben|publié|publicado|napisane|"
    r"scritto|kommentar) (?:by|von|par|por|przez|da)\b.{0,80}(?:\d|\|)"
    # "jim says:", "Sarah wrote on 5 March 2008 at 3:21 pm": a name (a few words, no
    # comma, not a sentence's article or pronoun: "The council says 61 per cent ...") then
    # the verb, alone or followed by a date or time ("wrote on Facebook" is prose)
    r"|^(?!(?:a|an|the|in|on|at|as|and|but|when|while|if|he|she|it|they|we|this|that|le|la|"
    r"les|el|los|las|der|die|das|il|lo|un|une|ein|eine)\b)(?=\w)(?:[^.!?,:;\"“”]|(?<=\b\w)\.){1,40}?\s+"
    r"(?:says|wrote|schreibt|écrit|escribió|napisał|scrive|schreef)\s*(?::\s*$|:?\s*(?:on|am|le|el|il|op)?\s*"
    r"(?:\d{1,2}[./-]\d{1,2}[./-]\d{2,4}|\d{4}-\d\d-\d\d|\d{1,2}:\d\d|\d{1,2}\.?\s+[^\W\d]{3,}\.?\s+\d{4}|"
    r"[^\W\d]{3,}\.?\s+\d{1,2},?\s+\d{4})(?:[\W\d_]|\b(?:at|um|uhr|am|pm|à|h|alle|a las|o)\b)*$)"
    r"|^(?:reply|antworten|répondre|responder|rispondi|odpowiedz|report abuse|melden|"
    r"missbrauch melden|signaler un abus)$",
    re.IGNORECASE,
)


# The long case-insensitive phrase lists are searched in the lower-cased line without
# re.IGNORECASE: Python's re drops its literal scanning under IGNORECASE and is 3-6x slower.
# Same matches on every line of the benchmark sets; they could only differ on letters whose
# lower case is not what re.IGNORECASE compares (the long s, the dotless i, the Kelvin sign).
def _lowered(pattern: re.Pattern) -> re.Pattern:
    return re.compile(pattern.pattern, pattern.flags & ~re.IGNORECASE)


_COMMENT_PROMPT_LC = _lowered(_COMMENT_PROMPT)
_ADVERT_PHRASE_LC = _lowered(_ADVERT_PHRASE)
_NEWSLETTER_LC = _lowered(_NEWSLETTER)
_LEGAL_LC = _lowered(_LEGAL)
_UI_LC = _lowered(_UI)


def _has_word(low: str, words: tuple[str, ...]) -> bool:
    """Whether ``low`` contains one of ``words``: the pre-check before a pattern whose every
    alternative contains one of them."""
    for word in words:  # a plain loop: any() over a generator costs more than the scans
        if word in low:
            return True
    return False


def _has_phrase(low: str, words: tuple[str, ...], pattern: re.Pattern) -> bool:
    """``pattern.search(low)``, skipped when ``low`` contains none of ``words``. Every
    alternative of the pattern contains one of the words; the pattern has no literal prefix
    to scan for, so re tries every alternative at every position of the line, while ``in``
    scans for a word in C and most lines contain none of them (2-4x cheaper per line)."""
    return _has_word(low, words) and bool(pattern.search(low))


_WORD = re.compile(r"\w+")
_DATE_NUMBER = re.compile(r"\d+(?:st|nd|rd|th|h|am|pm|min)?")
_SUBSCRIPTION_WORD = re.compile(r"newsletter|\babo\b|abonnement")
_TERMINAL = re.compile(r"[.!?…:;\"'”’»)]\s*$")


def _key(line: str) -> str:
    """Comparison form of a line: case-folded, accents kept, punctuation -> space."""
    return " ".join(_WORD.findall(line.casefold()))


def _vocab_match(words: list[str], core: set[str], vocab: set[str], max_words: int) -> bool:
    if not words or len(words) > max_words:
        return False
    has_core = False
    for word in words:
        if word.isdigit():
            continue
        if word not in vocab:
            return False
        has_core = has_core or word in core
    return has_core


#: "Published 3 hours ago", "Updated 10 minutes ago", "vor 2 Stunden": a relative time stamp
_RELATIVE_TIME = re.compile(
    r"(?:(?:published|updated|posted|last updated|aktualisiert|veröffentlicht)\s*:?\s*)?(?:\d+|an?|one)\s+"
    r"(?:sec|second|min|minute|hr|hour|day|week|month)s?\s+ago|(?:aktualisiert\s+)?vor \d+ "
    r"(?:sekunden|minuten|stunden|tagen|wochen)"
)


def _is_date_line(line: str, words: list[str]) -> bool:
    """Only dates, times, weekdays and labels such as "Updated", and some real date evidence
    (a month or weekday name, or a date/time shape): "+81 158-23-2012" or "286,35 €" is not."""
    if not words or len(words) > 14:
        return False
    named = False
    for word in words:
        if word.isdigit() or (word[0].isdigit() and _DATE_NUMBER.fullmatch(word)):
            continue
        if word not in _DATE_VOCAB:
            return False
        named = named or word in _MONTHS or word in _WEEKDAYS
    return named and any(w[0].isdigit() for w in words) or bool(_DATE_SHAPE.search(line))


def _related_lead(line: str) -> tuple[str, str, str] | None:
    """(line without leading bullets, the read-more / related lead-in it opens with, the rest),
    or None when it opens with none."""
    stripped = line.lstrip("•·-–—»›> ")
    match = _RELATED.match(stripped)
    if not match:
        return None
    return stripped, match.group(0).rstrip(), stripped[match.end() :].strip()


def _is_related(line: str) -> bool:
    """A read-more / related lead-in: alone on its line, followed by a separator ("Read
    more: ..."), or opening a short line without a closing full stop ("Related stories")."""
    found = _related_lead(line)
    if found is None:
        return False
    stripped, lead, rest = found
    if rest[:1].islower() and _key(lead) in _STEPS:  # "Next: the president has ten days to sign it."
        return False
    if _reads_as_prose(rest, _LEAD_REST_MAX_WORDS):
        return False  # prose after the label ("WATCH: <headline> ... On Monday night's show, ... done.")
    return not rest or lead[-1] in ":»›>.…-" or len(stripped) <= 80 and not rest.endswith(".")


#: the rest of a line after a read-more / watch lead-in is a headline (rarely over 15 words);
#: from this many words on, ending a sentence, it is the report itself, as in a feed's or a
#: search result's snippet
_LEAD_REST_MAX_WORDS = 20


#: bare "Next:" / "Previous:" lead-ins: a link's title follows them, an explainer's step in lower case
_STEPS = frozenset("previous next prev older newer vorheriger nächster précédent suivant anterior siguiente".split())


def _cell(line: str) -> str:
    """The text of a one-cell table row as trafilatura writes it ("| Related articles |")."""
    return line.strip(" |") if line[:1] == "|" or line[-1:] == "|" else line


def _related_header(line: str) -> bool:
    """A related-content lead-in alone on its line ("Related Articles", "| Mehr zum Thema |"):
    the lines after it list other articles (``_is_teaser``)."""
    found = _related_lead(_cell(line))
    return found is not None and not found[2]


#: After a related-content header, at most this many following lines are taken as its list
_TEASER_LINES = 12
#: a line of such a list: a headline (at most this many characters, no closing full stop)...
_TEASER_MAX_CHARS = 150
#: ...or a teaser cut short with an ellipsis (at most this many)
_CUT_TEASER_MAX_CHARS = 300
_CLOSED = re.compile(r"[.:;][\"'”’»)]*$")


def _is_teaser(line: str) -> bool:
    """A line of a related-articles list: a headline (short, not closed by a full stop, colon
    or semicolon) or a teaser cut short ("... running a...")."""
    text = _cell(line)
    if text.endswith(("...", "…")):
        return len(text) <= _CUT_TEASER_MAX_CHARS
    return len(text) <= _TEASER_MAX_CHARS and not _CLOSED.search(text)


def _is_tag_run(line: str) -> bool:
    """Run-on tag strip: short, no sentence punctuation at the end, two or more glued words."""
    if len(line) > 160 or _TERMINAL.search(line) or line.count(",") > 1:
        return False
    if not _GLUE.search(line):  # no glued pair anywhere (most lines): skip the tokenising
        return False
    # Glued pairs in two different tokens: one camel-case brand ("RealClearPolitics") is not
    # a run of tags.
    tokens = _HANDLES.sub(" ", line).split()
    if sum(1 for token in tokens if _GLUE.search(token)) < 2:
        return False
    # Tags are names and topics: a line whose words are often lower-case runs as a sentence
    # ("How TikTok and YouTube differ", "alle AutorInnen und ÜbersetzerInnen nennen").
    lower = sum(1 for token in tokens if token[0].islower() and token.isalpha())
    return lower <= max(1, len(tokens) // 5)


#: The word lists of the phrase checks (``_has_phrase``) that look at every short line, in the
#: order of ``_Segment.present``.
_PHRASE_WORD_LISTS = (_COMMENT_PROMPT_WORDS, _ADVERT_PHRASE_WORDS, _NEWSLETTER_WORDS, _LEGAL_WORDS, _UI_WORDS)
_COMMENT_PROMPT_AT, _ADVERT_PHRASE_AT, _NEWSLETTER_AT, _LEGAL_AT, _UI_AT = range(len(_PHRASE_WORD_LISTS))


#: which lists of _PHRASE_WORD_LISTS are only looked for in short lines (``_Segment.short``)
_SHORT_ONLY = (True, False, True, False, True)
#: a line or segment of at most this many characters is short (weak phrases only fire there)
_SHORT_LINE_CHARS = 160
#: a character that ``_SEGMENTS`` needs: only lines with one split into segments
_SEPARATOR = re.compile(r"[|·•]")


def _present_words(low_text: str, low_short: str | None = None) -> tuple[tuple[str, ...], ...]:
    """Of each list of ``_PHRASE_WORD_LISTS``, the words that ``low_text`` (lines of a text,
    lower-cased) contains; ``low_short``: its short lines alone, for the lists of
    ``_SHORT_ONLY``. A line or segment of that text contains no other word of the lists
    (lower-casing maps each character alone, but for the Greek final sigma, in no word), so
    its phrase checks need only these: most texts have none or a few of the ~120 words, and
    each short line was scanned for all of them (124k scans per 1,000 articles)."""
    if low_short is None:
        low_short = low_text
    return tuple(
        tuple(word for word in words if word in (low_short if short else low_text))
        for words, short in zip(_PHRASE_WORD_LISTS, _SHORT_ONLY, strict=True)
    )


class _Segment(NamedTuple):
    """A line (or one " | " segment of it) in the forms the phrase rules look at, computed
    once per line instead of once per rule."""

    text: str
    key: str  # _key(text)
    words: list[str]  # the words of key
    low: str  # text.lower(), for the _LC patterns
    short: bool  # weak phrases only fire on lines of at most 160 characters
    #: the words of each list of _PHRASE_WORD_LISTS that the line may contain (_present_words)
    present: tuple[tuple[str, ...], ...] = _PHRASE_WORD_LISTS


def _nav(s: _Segment) -> bool:
    return _vocab_match(s.words, _NAV_CORE, _NAV_VOCAB, 8)


def _comments(s: _Segment) -> bool:
    return _vocab_match(s.words, _COMMENT_CORE, _COMMENT_VOCAB, 8) or (
        s.short and _has_phrase(s.low, s.present[_COMMENT_PROMPT_AT], _COMMENT_PROMPT_LC)
    )


#: "on" in the languages of ``_FOLLOW``
_ON = _words("on en auf sur su na op no em in")


#: words that may stand inside an outlet's name ("Siga o Jornal do Planalto no Instagram")
_NAME_JOINERS = _words("the of o a os as el la los las le les der die das de do da dos del di van het")


def _follow_prompt(words: list[str], text: str) -> bool:
    """After a follow verb: "on <network>" within the first words, or right after a name
    ("Siga o Jornal do Planalto no Instagram"; not "Follow the money, they told reporters on
    Twitter"), and two networks named in all."""
    if len(_SOCIAL.intersection(words)) < 2:
        return False
    for i in range(1, min(len(words) - 1, 9)):
        if words[i] in _ON and words[i + 1] in _SOCIAL:
            if i < 5:
                return True
            tokens = _WORD.findall(text)
            return len(tokens) == len(words) and all(
                token[0].isupper() or word in _NAME_JOINERS for token, word in zip(tokens[1:i], words[1:i], strict=True)
            )
    return False


def _share(s: _Segment) -> bool:
    return (
        _vocab_match(s.words, _SHARE_CORE, _SHARE_VOCAB, 16)
        or (len(s.words) >= 2 and all(w in _PLATFORMS for w in s.words))
        or (bool(s.words) and s.words[0] in _FOLLOW and _follow_prompt(s.words, s.text))
        or (len(s.words) <= 3 and bool(_LIKE_LABEL.fullmatch(s.text)))
    )


def _advert(s: _Segment) -> bool:
    return _vocab_match(s.words, _ADVERT_CORE, _ADVERT_VOCAB, 10) or _has_phrase(
        s.low, s.present[_ADVERT_PHRASE_AT], _ADVERT_PHRASE_LC
    )


def _newsletter(s: _Segment) -> bool:
    return (s.short and _has_phrase(s.low, s.present[_NEWSLETTER_AT], _NEWSLETTER_LC)) or (
        len(s.words) <= 5 and bool(_SUBSCRIPTION_WORD.search(s.key))
    )


def _photo_credit(s: _Segment) -> bool:
    return s.short and bool(_PHOTO_CREDIT.search(s.text) or _CAPTION_CREDIT.search(s.text))


def _ui(s: _Segment) -> bool:
    return (s.short and _has_phrase(s.low, s.present[_UI_AT], _UI_LC)) or (
        len(s.text) <= 60 and (not s.text.endswith(".") or s.text.endswith("...")) and bool(_UI_LABEL.search(s.text))
    )


def _tags(s: _Segment) -> bool:
    return bool(_TAGS.match(s.text)) or _is_tag_run(s.text)


# The phrase rules in the order they are tried: a line gets the name of the first that fires.
_SEGMENT_CHECKS = (
    ("no_letters", lambda s: not s.words or ("_" in s.key and not s.key.replace("_", "").strip())),
    ("nav", _nav),
    ("comments", _comments),
    ("share", _share),
    ("advert", _advert),
    ("dateline_meta", lambda s: _is_date_line(s.text, s.words) or bool(_RELATIVE_TIME.fullmatch(s.low))),
    ("newsletter", _newsletter),
    ("related", lambda s: _is_related(s.text)),
    ("photo_credit", _photo_credit),
    ("legal", lambda s: _has_phrase(s.low, s.present[_LEGAL_AT], _LEGAL_LC)),
    ("ui", _ui),
    ("tags", _tags),
)


def line_rule(
    line: str,
    rules: CleanRules,
    key: str | None = None,
    words: list[str] | None = None,
    present: tuple[tuple[str, ...], ...] = _PHRASE_WORD_LISTS,
) -> str | None:
    """Name of the phrase rule that marks ``line`` as boilerplate, or None (prose).
    ``key``, ``words``: the line's comparison key and its words (``key.split()``) when the
    caller has computed them already; ``present``: ``_present_words`` of a text that
    contains the line."""
    if len(line) > rules.max_boilerplate_chars:
        return None
    rule = _segment_rule(line, rules, key, words, present)
    # Only lines with a separator character can split into segments (cheap test first).
    if rule is not None:
        return rule
    # Table rows ("| Related articles |", "| | Share | Print |") are judged by their cells.
    cell = _cell(line)
    if ("|" in line or "·" in line or "•" in line) and _SEGMENTS.search(cell):
        parts = [p for p in _SEGMENTS.split(line.strip(" |·•")) if p.strip(" |·•")]
        found = [_segment_rule(p, rules, present=present) for p in parts]
        if len(parts) > 1 and all(found):
            rule = found[0]
    elif cell != line:
        rule = _segment_rule(cell, rules, present=present)
    return rule


def _segment_rule(
    line: str,
    rules: CleanRules,
    key: str | None = None,
    words: list[str] | None = None,
    present: tuple[tuple[str, ...], ...] = _PHRASE_WORD_LISTS,
) -> str | None:
    key = _key(line) if key is None else key
    words = key.split() if words is None else words
    segment = _Segment(line, key, words, line.lower(), len(line) <= _SHORT_LINE_CHARS, present)
    for name, check in _enabled_checks(tuple(rules.disabled)):  # a list would not hash
        if check(segment):
            return name
    return None


@lru_cache(maxsize=16)
def _enabled_checks(disabled: tuple[str, ...]) -> tuple[tuple[str, Callable[[_Segment], bool]], ...]:
    """The checks of _SEGMENT_CHECKS whose group is not ``disabled`` (asked once per rules,
    not once per check and line)."""
    return tuple((name, check) for name, check in _SEGMENT_CHECKS if name not in disabled)


def _normalise_line(line: str) -> str:
    """NFC, without soft hyphens, whitespace runs as one space. Idempotent: the soft hyphens
    go first, since one between a letter and a combining accent keeps NFC from composing
    them (normalising twice would then give another line, and another host key)."""
    return " ".join(unicodedata.normalize("NFC", line.replace("\u00ad", "")).split())


def clean_text(
    text: str,
    title: str | None,
    rules: CleanRules,
    host_boilerplate: frozenset[str] = frozenset(),
) -> Cleaned:
    """Remove boilerplate lines from an article's text. Pure and deterministic.

    ``host_boilerplate`` holds comparison keys (see :func:`line_key`) of lines learned to be
    template text of this article's host. Returns the kept paragraphs joined by "\\n", the
    title (whitespace-normalised), the names of the rules that fired, in order, and the
    removed text."""
    fired: list[str] = []
    removed: list[str] = []

    def drop(rule: str, piece: str) -> None:
        if rule not in fired:
            fired.append(rule)
        removed.append(piece)

    clean_title = _normalise_line(title) if title else None
    lines = [_normalise_line(line) for line in text.splitlines()]
    lines = [line for line in lines if line]

    # Leading dateline metadata ("date 2025-10-26 The concern comes ..."): strip the prefix
    # from the first lines (a repeated title may come before it).
    if rules.enabled("dateline_meta"):
        for i in range(min(len(lines), 3)):
            match = _DATE_PREFIX.match(lines[i])
            if match:
                drop("dateline_meta", match.group(0).strip())
                lines[i] = lines[i][match.end() :]

    if rules.enabled("comments"):
        # Most articles have no comment section at all: the quick word tests scan the whole
        # lower-cased text, made once for both (unless the header cut changed the lines).
        low = _lowered_text(lines)
        cut = _comment_header_cut(lines, low)
        if cut is not None:
            i, offset = cut
            drop("comments", lines[i][offset:])
            for line in lines[i + 1 :]:
                drop("comments", line)
            lines = [*lines[:i], lines[i][:offset].rstrip()] if offset else lines[:i]
            lines = [line for line in lines if line]
            low = _lowered_text(lines)
        if _has_word(low, _INLINE_SIGNATURE_WORDS):
            for i, line in enumerate(lines):
                at = _inline_comment_start(line)
                if at is not None:
                    drop("comments", line[at:])
                    lines[i] = line[:at].rstrip()
            lines = [line for line in lines if line]
        start = _comment_thread_start(lines, rules)
        if start is not None:
            for line in lines[start:]:
                drop("comments", line)
            lines = lines[:start]

    # Each line's key is computed once and used by the phrase rules, the host lookup, the
    # title and the repeat checks.
    # The words of a key are those findall gives (a word character is never white space, so
    # key.split() would give them again).
    limit = rules.max_boilerplate_chars
    candidates = [line for line in lines if len(line) <= limit]
    # a longer line's segments may be short
    short = [line for line in candidates if len(line) <= _SHORT_LINE_CHARS or _SEPARATOR.search(line)]
    present = _present_words(_lowered_text(candidates), _lowered_text(short))
    kept: list[str] = []
    kept_keys: list[str] = []
    teasers = 0  # lines that the last related-content header may still take as its list
    for line in lines:
        words = _WORD.findall(line.casefold())
        key = " ".join(words)  # _key(line)
        rule = line_rule(line, rules, key, words, present)
        if (
            rule is None
            and host_boilerplate
            and rules.enabled("host_boilerplate")
            and key in host_boilerplate  # the line is normalised: key is its line_key
        ):
            rule = "host_boilerplate"
        if rule is None and teasers:
            if _is_teaser(line):
                rule, teasers = "related", teasers - 1
            else:
                teasers = 0
        elif rule == "related" and kept and _related_header(line):
            # "Related articles" after some of the text: the headlines and cut teasers that
            # follow list other articles (the first prose line ends the list)
            teasers = _TEASER_LINES
        if rule is not None:
            drop(rule, line)
        else:
            kept.append(line)
            kept_keys.append(key)

    if clean_title and rules.enabled("repeated_title"):
        title_key = _key(clean_title)
        for i, key in enumerate(kept_keys[: rules.title_scan_lines]):
            if title_key and (key == title_key or _kicker_and_title(kept[i], key, title_key)):
                del kept_keys[i]
                drop("repeated_title", kept.pop(i))
                break

    if rules.enabled("repeated_paragraph"):
        order = _unrepeated(kept, kept_keys, drop, rules.min_contained_chars, rules.min_repeat_chars)
        kept = [kept[i] for i in order]
        kept_keys = [kept_keys[i] for i in order]

    return Cleaned("\n".join(kept), clean_title, tuple(fired), tuple(removed), " ".join(kept_keys))


# Headers that open a user-comment section. After the first part of a text, a header that
# starts a line or a sentence opens the comment section, and everything from it on goes
# (table layouts glue the whole section into one long line). Counters ("12 comments") only
# count at the start of a line: "received 300 comments" is prose.
_COMMENT_HEADER = re.compile(
    r"comments are (?:now )?closed|(?:reader|user|readers'|your) comments\b|have your say\b|"
    r"post a comment|leave a (?:comment|reply)|add (?:your|a) comment|join the (?:discussion|"
    r"conversation)|\b\d+ (?:comments|responses|replies|kommentare|commentaires|comentarios|"
    r"komentarz[ey]?|commenti)\b|\b(?:kommentare|commentaires|comentarios|komentarze|"
    r"commenti|comments) \(\d+\)|kommentar schreiben|laisser un commentaire|"
    r"deja (?:tu|un) comentario|dodaj komentarz|lascia un commento",
    re.IGNORECASE,
)
# Every alternative above contains one of these words (see _has_phrase; checked by a test).
_COMMENT_HEADER_WORDS = (
    "comment",
    "komment",
    "comentario",
    "komentarz",
    "leave a reply",
    "replies",
    "responses",
    "have your say",
    "join the",
)


# Comment signatures inside a long line (table layouts glue a whole comment section into one
# line): "Posted by Paul on January 6, 2008 2:09 PM", "Report this comment".
_INLINE_SIGNATURE = re.compile(
    r"(?:posted|submitted|written|commented) by:?\s+\S[^.|]{0,60}?\s+(?:on|at)\s+[^|]{0,40}?"
    r"\d{1,2}[:.]\d{2}|report this comment|reply to this comment|report abuse",
    re.IGNORECASE,
)
# Every alternative above contains one of these words (see _has_phrase; checked by a test).
_INLINE_SIGNATURE_WORDS = (
    "posted by",
    "submitted by",
    "written by",
    "commented by",
    "report abuse",
    "this comment",
)
_COMMENT_WORD = re.compile(
    r"\b(?:comments?|kommentare?|commentaires?|comentarios?|komentarze|commenti|your say)\b",
    re.IGNORECASE,
)
# Quick tests in the lower-cased line (see _lowered); offsets come from the patterns above.
_COMMENT_HEADER_LC = _lowered(_COMMENT_HEADER)
_INLINE_SIGNATURE_LC = _lowered(_INLINE_SIGNATURE)


def _lowered_text(lines: list[str]) -> str:
    """The lines lower-cased, as one text: a word of a lower-cased line is found in it, so
    one scan tells whether any line has one (cheaper than one test per line)."""
    return "\n".join(lines).lower()


def _inline_comment_start(line: str) -> int | None:
    """Offset where a comment section glued into ``line`` starts: >= 2 inline signatures;
    the section begins at the last comment header word shortly before the first one."""
    low = line.lower()
    if not _has_word(low, _INLINE_SIGNATURE_WORDS):  # most lines: skip the pattern
        return None
    if len(_INLINE_SIGNATURE_LC.findall(low)) < 2:
        return None
    sigs = list(_INLINE_SIGNATURE.finditer(line))
    if len(sigs) < 2:
        return None
    start = sigs[0].start()
    window = max(start - 1500, 0)
    headers = list(_COMMENT_WORD.finditer(line, window, start))
    return headers[-1].start() if headers else start


_SENTENCE_END = re.compile(r"(?:^|[.!?|:)»\"”]\s*)$")


_SENTENCE_REST = re.compile(r"[^|\t.!?]{1,200}[.!?]")


def _prompt_in_prose(line: str, match: re.Match) -> bool:
    """ "Have your say on the plans at the council website until 14 March.": a prompt phrase
    that a sentence of prose continues in lower case to its full stop (a header stands
    alone, or a table layout glues a capitalised item or a cell bar after it)."""
    rest = line[match.end() :]
    return (
        len(line) <= 400
        and "|" not in line
        and not match.group(0)[0].isdigit()
        and not match.group(0).lower().startswith("comments are")
        and rest[:1] == " "
        and rest[1:2].islower()
        and _SENTENCE_REST.match(rest) is not None
    )


def _comment_header_cut(lines: list[str], low: str) -> tuple[int, int] | None:
    """(line, offset) of a comment-section header after the first 15 % (and 300 characters)
    of the text, or None. ``low``: _lowered_text of the lines."""
    if not _has_word(low, _COMMENT_HEADER_WORDS):
        return None
    total = sum(len(line) for line in lines)
    first = max(0.15 * total, 300)
    before = 0
    for i, line in enumerate(lines):
        if before + len(line) >= first and _has_phrase(line.lower(), _COMMENT_HEADER_WORDS, _COMMENT_HEADER_LC):
            for match in _COMMENT_HEADER.finditer(line):
                at = match.start()
                if before + at < first or not _SENTENCE_END.search(line[:at]):
                    continue
                if at and match.group(0)[0].isdigit() or _prompt_in_prose(line, match):
                    continue
                return i, at
        before += len(line)
    return None


def _comment_thread_start(lines: list[str], rules: CleanRules) -> int | None:
    """Index where a trailing user-comment thread begins, or None.

    A thread is >= 2 comment signatures in the later part of the text. With signatures after
    each comment ("Posted by: ..." closing the text) the thread starts one comment length
    (the median gap between signatures) before the first signature; a comment-counter or
    header line right before it ("Comments (3)") belongs to the thread too."""
    sigs = [i for i, line in enumerate(lines) if len(line) <= 200 and _SIGNATURE.search(line)]
    if len(sigs) < 2 or sigs[0] < 0.3 * len(lines):
        return None
    gaps = sorted(b - a for a, b in zip(sigs, sigs[1:], strict=False))
    gap = gaps[len(gaps) // 2]
    start = sigs[0]
    if len(lines) - 1 - sigs[-1] < gap:  # signatures close each comment
        start = max(sigs[0] - (gap - 1), 0)
    if start > 0 and _segment_rule(lines[start - 1], rules) == "comments":
        start -= 1
    return start


#: a kicker before a headline ("Verkehr: Sanierung der Strecke ...") has at most this many words
_KICKER_WORDS = 3


def _kicker_and_title(line: str, key: str, title_key: str) -> bool:
    """The headline with its kicker in front ("Verkehr: <title>"), where the title does not
    repeat the kicker."""
    kicker, colon, _ = line.partition(":")
    return (
        bool(colon)
        and len(kicker.split()) <= _KICKER_WORDS
        and key.endswith(f" {title_key}")
        and (len(key) - len(title_key) - 1 == len(_key(kicker)))
    )


def _unrepeated(lines: list[str], keys: list[str], drop, min_contained: int, min_repeat: int) -> list[int]:
    """Indexes of the ``lines`` that are neither repeated nor contained in another paragraph
    (``keys``: their _key), in order; indexes, so that clean_text keeps each line's key with
    it. Until stop 32 ``_drop_repeats``, which returned the lines."""
    seen: set[str] = set()
    unique: list[int] = []
    unique_keys: list[str] = []
    for index, (line, key) in enumerate(zip(lines, keys, strict=True)):
        if key in seen and len(key) >= min_repeat:
            drop("repeated_paragraph", line)
            continue
        seen.add(key)
        unique.append(index)
        unique_keys.append(key)
    # A line is contained in another when its key, padded with spaces (whole words only),
    # occurs in the other's padded key; equal long lines are gone already, so that line is
    # longer (and at least min_contained long itself).
    padded = [f" {key} " for key in unique_keys]
    candidates = [i for i, key in enumerate(unique_keys) if len(key) >= min_contained]
    if len(candidates) * sum(map(len, padded)) <= _SCAN_MAX_CHARS:
        contained = _contained_by_scan(padded, candidates)
    else:
        contained = _contained_by_index(padded, candidates)
    for index in sorted(contained):
        drop("repeated_paragraph", lines[unique[index]])
    return [line for position, line in enumerate(unique) if position not in contained]


#: While (candidate lines x text length) stays below this, _unrepeated searches the whole
#: text once per candidate line (str.find, in C, about 2 ms at the limit); above, it indexes
#: the lines by word (in Python, every word of every line), which keeps texts of thousands of
#: lines linear. On the 1k corpus the scan made clean_text 0.25 ms per article (of 1.5 ms)
#: faster; the two break even at about 6 million characters.
_SCAN_MAX_CHARS = 5_000_000


def _contained_by_scan(padded: list[str], candidates: list[int]) -> set[int]:
    """Indexes among ``candidates`` whose padded key occurs in another padded key."""
    # A key has no line break, so a match in the joined text lies inside one padded key; the
    # line's own key matches only at its own offset.
    joined = "\n".join(padded)
    starts = list(itertools.accumulate((len(p) + 1 for p in padded), initial=0))
    contained = set()
    for index in candidates:
        inner, at = padded[index], starts[index]
        if joined.find(inner) != at or joined.find(inner, at + 1) >= 0:
            contained.add(index)
    return contained


def _contained_by_index(padded: list[str], candidates: list[int]) -> set[int]:
    """``_contained_by_scan`` for many lines. A containing line has every word of the key
    and is a candidate itself (at least as long), so only the candidates holding the key's
    rarest word are searched: about linear in the text, where searching all the text once
    per line took 3.9 s for 8,000 lines (0.7 MB, a plain-text dump in a page)."""
    words = {index: set(padded[index][1:-1].split(" ")) for index in candidates}
    holders: dict[str, list[int]] = {}
    for index, its_words in words.items():
        for word in its_words:
            holders.setdefault(word, []).append(index)
    contained = set()
    for index in candidates:
        rarest = min(words[index], key=lambda word: len(holders[word]))
        inner = padded[index]
        if any(other != index and inner in padded[other] for other in holders[rarest]):
            contained.add(index)
    return contained


def line_key(line: str) -> str:
    """Key under which a line is counted for per-host boilerplate learning."""
    return _key(_normalise_line(line))


def learn_host_boilerplate(texts: Iterable[str], rules: CleanRules) -> frozenset[str]:
    """Keys of lines that recur in many of one host's articles (``host_min_share`` of them,
    at least 3), given all article texts of that host in the run. A text read several times
    (one story under several URLs: tracking parameters, print and AMP pages, an archive's
    repeated captures) counts once: its lines recur because the article does, not a template."""
    texts = list(dict.fromkeys(texts))
    if len(texts) < rules.host_min_articles:
        return frozenset()
    counts: Counter[str] = Counter()
    for text in texts:
        keys = {line_key(line) for line in text.splitlines() if 0 < len(line.strip()) <= rules.host_max_line_chars}
        counts.update(k for k in keys if k)
    needed = max(3, rules.host_min_share * len(texts))
    learned = (k for k, n in counts.items() if n >= needed)
    if len(texts) < rules.host_min_articles_prose:
        prose = {line_key(line) for text in texts for line in text.splitlines() if _reads_as_prose(line)}
        learned = (k for k in learned if k not in prose)
    return frozenset(learned)


#: a line of at least this many words that ends a sentence reads as prose
_PROSE_WORDS = 12
_SENTENCE_CLOSE = re.compile(r"[.!?][\"'”’»)]*\s*$")


def _reads_as_prose(line: str, words: int = _PROSE_WORDS) -> bool:
    """A sentence of text rather than a template's label: ``words`` or more, closed like a
    sentence."""
    return bool(_SENTENCE_CLOSE.search(line)) and len(line.split()) >= words


# ---------------------------------------------------------------------------------------------
# Beam
# ---------------------------------------------------------------------------------------------


def clean_article(
    article: Article, rules: CleanRules, host_boilerplate: frozenset[str] = frozenset()
) -> Article | Failure:
    """Article -> cleaned Article, or Failure(stage 'filter', 'empty_text' | 'too_short')."""
    cleaned = clean_text(article.text, article.title, rules, host_boilerplate)
    if not cleaned.text.strip():
        return Failure(
            article.url,
            records.FILTER_STAGE,
            "empty_text",
            f"nothing left after cleaning; rules: {', '.join(cleaned.rules_fired) or '-'}",
            article.fetched_at,
        )
    if len(cleaned.text) < rules.min_text_chars:
        return Failure(
            article.url,
            records.FILTER_STAGE,
            "too_short",
            f"{len(cleaned.text)} characters < min_text_chars {rules.min_text_chars}",
            article.fetched_at,
        )
    remember_words(cleaned.text, cleaned.keys)  # for Fingerprint and the stages after it
    return records.replace(
        article,
        text=cleaned.text,
        title=cleaned.title,
        rules_fired=tuple(dict.fromkeys((*article.rules_fired, *cleaned.rules_fired))),
        removed=(*article.removed, *cleaned.removed),
    )


def _open(path: str, mode: str):
    try:
        import fsspec

        return fsspec.open(path, mode, encoding="utf-8")
    except ImportError:  # pragma: no cover - fsspec ships with the project
        return open(path, mode, encoding="utf-8")


#: Version of the rule that learns host boilerplate (``learn_host_boilerplate``), written into
#: the saved host state. A state saved under another version is not applied: its lines were
#: learned by another rule (version 1, before stop 20, counted one text read under several
#: URLs once per URL, so every line of such an article looked like a template; version 2,
#: until stop 34, also learned sentences of prose from hosts with few articles). Raise it
#: whenever the rule changes what it learns.
HOST_STATE_VERSION = 3

LOG = logging.getLogger("storybeam.clean")


def load_host_state(path: str) -> dict[str, frozenset[str]]:
    """Saved host boilerplate {host: line keys}; empty when ``path`` is "" or missing, or when
    the file was written for another ``HOST_STATE_VERSION`` (logged: learned afresh)."""
    if not path:
        return {}
    try:
        with _open(path, "r") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return {}
    version = data.get("version", 1) if isinstance(data, dict) else None  # 1: a flat {host: keys}
    if version != HOST_STATE_VERSION or not isinstance(data.get("hosts"), dict):
        LOG.warning(
            "host boilerplate in %s was learned by rule version %s, not %s: not applied; this run learns afresh"
            " and replaces it",
            path,
            version,
            HOST_STATE_VERSION,
        )
        return {}
    return {str(host): frozenset(map(str, keys)) for host, keys in data["hosts"].items()}


def host_state_bytes(saved: Mapping[str, Iterable[str]], learned: Iterable[tuple[str, Iterable[str]]] = ()) -> bytes:
    """Saved host boilerplate merged with what a run learned, as JSON
    ``{"version": HOST_STATE_VERSION, "hosts": {host: sorted keys}}`` (staged through the
    sink's commit, or written by ``save_host_state``)."""
    merged: dict[str, set[str]] = {host: set(keys) for host, keys in saved.items()}
    for host, keys in learned:
        merged.setdefault(host, set()).update(keys)
    data = {"version": HOST_STATE_VERSION, "hosts": {h: sorted(keys) for h, keys in sorted(merged.items())}}
    return json.dumps(data, ensure_ascii=False).encode("utf-8")


def save_host_state(path: str, state: Mapping[str, Iterable[str]]) -> None:
    """Write host boilerplate {host: line keys} (e.g. the collected ``host_boilerplate``
    output of CleanText merged with load_host_state) for the next run."""
    with _open(path, "w") as fh:
        fh.write(host_state_bytes(state).decode("utf-8"))


#: Tag of CleanText's extra output: (host, tuple of line keys) learned in this run.
HOST_BOILERPLATE = "host_boilerplate"


class _CleanDoFn(beam.DoFn):
    def __init__(self, rules: CleanRules) -> None:
        self._rules = rules
        self._saved: dict[str, frozenset[str]] = {}

    def setup(self) -> None:
        self._saved = load_host_state(self._rules.host_state_path)

    def process(self, element):
        if isinstance(element, tuple):  # ((host, url), [articles]) after grouping by host
            (host, _), articles = element
            learned = frozenset()
            if host:  # ("", url): an article without a host, nothing to learn from
                sample = itertools.islice(articles, self._rules.host_sample_articles)
                learned = learn_host_boilerplate((a.text for a in sample), self._rules)
            if learned:
                Metrics.counter(records.METRICS_NAMESPACE, "clean_hosts_learned").inc()
                yield TaggedOutput(HOST_BOILERPLATE, (host, tuple(sorted(learned))))
        else:
            articles, learned = [element], frozenset()
        for article in articles:  # grouped values can be iterated again
            saved = self._saved.get(article.source, frozenset())
            result = clean_article(article, self._rules, learned | saved if saved else learned)
            if isinstance(result, Failure):
                Metrics.counter(records.METRICS_NAMESPACE, f"{result.stage}_{result.reason}").inc()
                yield TaggedOutput(records.FAILED, result)
            else:
                yield result


def _host_group(article: Article) -> tuple[tuple[str, str], Article]:
    """((host, ""), article); an article without a host (a local file path, a URL without
    one) is a group of its own, ("", url): boilerplate is learned per publisher, never across
    unrelated pages (nor do they all land on one worker)."""
    return ((article.source, "") if article.source else ("", article.url)), article


class CleanText(beam.PTransform):
    """PCollection[Article] -> outputs ``ok``: PCollection[Article] with cleaned ``text``,
    ``rules_fired`` and ``removed`` filled, ``failed``: PCollection[Failure] (stage
    'filter', reason 'empty_text' or 'too_short'), and ``host_boilerplate``:
    PCollection[(host, tuple of line keys)] learned in this run (to persist with
    save_host_state and pass back through ``host_state_path`` next time).

    On bounded input the articles are grouped by host first, so lines that recur across many
    articles of one host (templates) can be learned and removed (rule host_boilerplate).
    Unbounded input is cleaned element by element (no grouping across an endless window)."""

    def __init__(self, rules: CleanRules) -> None:
        super().__init__()
        self._rules = rules

    def expand(self, articles):
        learn = self._rules.enabled("host_boilerplate") and articles.is_bounded
        if learn:
            articles = articles | "KeyByHost" >> beam.Map(_host_group) | "GroupByHost" >> beam.GroupByKey()
        return articles | "Clean" >> beam.ParDo(_CleanDoFn(self._rules)).with_outputs(
            records.FAILED, HOST_BOILERPLATE, main="ok"
        )
