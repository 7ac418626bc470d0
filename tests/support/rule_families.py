"""Generated feedback families for rule learning: systematic corrections plus reviewer noise.

Every family draws answers of one imaginary function, applies its systematic
corrections by plain string operations (written here independently of the rule
applier, so the learner cannot pass by sharing a bug with the generator) and, for a
``noise`` share of the pairs, lets one reviewer also rewrite the answer freely
(a one-off word swap or a re-worded sentence, different every time).

Each :class:`Case` keeps the systematic target, so a benchmark can score held-out
pairs against what a rule set can reach (noisy pairs cannot be exact: their
fixed output holds a rewrite nobody else made).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from processors.feedback.pairs import Pair

_SUBJECTS = ("invoice", "parcel", "password", "refund", "account", "order", "upgrade", "export", "login", "plan",
             "subscription", "voucher", "delivery", "report", "license")
_STATES = ("was updated", "is delayed", "was reset", "is on its way", "needs a check", "was approved", "is ready",
           "was cancelled", "is being reviewed", "was moved")
_ACTIONS = ("We will send the details", "Our team will call you", "We will fix it", "You will get an update",
            "We will refund the fee", "The courier will contact you", "We will check the logs")
_FILLERS = ("Please keep this e-mail for your records.", "You can reply to this message at any time.",
            "Your case is in good hands.", "We appreciate your patience.", "Nothing else is needed from you.")
_NAMES = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy")
_DOMAINS = ("example.com", "mail.test", "corp.example.org", "shop.example.net")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")


@dataclass(frozen=True, slots=True)
class Case:
    """One feedback pair and the fixed output the systematic corrections alone give."""

    pair: Pair
    target: str  # bad with only the systematic corrections applied
    noisy: bool  # a reviewer also rewrote something no rule can know


@dataclass(frozen=True, slots=True)
class Family:
    name: str
    describe: str
    make: Callable[[random.Random, int], tuple[str, str]]  # (bad, systematic fixed) for answer i


def _body(rng: random.Random, i: int, *, asap: bool = True) -> list[str]:
    subject = rng.choice(_SUBJECTS)
    sentences = [f"Your {subject} {rng.choice(_STATES)} (case {1000 + i})."]
    action = rng.choice(_ACTIONS)
    sentences.append(f"{action} ASAP." if asap and rng.random() < 0.8 else f"{action} today.")
    sentences.extend(rng.sample(_FILLERS, rng.randint(0, 2)))
    return sentences


# ----------------------------------------------------------------------------- overlap
_GREETINGS = ("Hi there!", "Hello, thanks for writing in.")


def _overlap(rng: random.Random, i: int) -> tuple[str, str]:
    """The issue's case: greeting removed, ASAP spelled out, "Thx." → "Thank you.", a signature appended."""
    body = _body(rng, i)
    closing = rng.random() < 0.7  # most answers end with the closing the reviewers replace
    bad = " ".join([rng.choice(_GREETINGS), *body, *(["Thx!"] if closing else [])])
    fixed = " ".join([*(s.replace("ASAP", "as soon as possible") for s in body), *(["Thank you."] if closing else [])])
    return bad, fixed + " — Acme Support"


def _overlap_mid(rng: random.Random, i: int) -> tuple[str, str]:
    """Touching edits inside the text: "ASAP" spelled out, "pls" → "please", "kindly" deleted,
    side by side in varying combinations (so the alignment merges different neighbours each time)."""
    head = f"Your {rng.choice(_SUBJECTS)} {rng.choice(_STATES)} (case {1000 + i})."
    when = rng.choice(("ASAP", "ASAP", "today", "tomorrow"))
    ask = rng.choice(("pls kindly", "pls", "kindly", "pls kindly", "so"))
    where = rng.choice(("your inbox", "the portal", "the app"))
    bad = f"{head} We will reply {when} {ask} check {where}."
    fixed_ask = " ".join(w for w in ask.replace("pls", "please").split() if w != "kindly")
    fixed = f"{head} We will reply {when.replace('ASAP', 'as soon as possible')} {fixed_ask} check {where}.".replace("  ", " ")
    if rng.random() < 0.5:
        extra = rng.choice(_FILLERS)
        bad, fixed = f"{bad} {extra}", f"{fixed} {extra}"
    return bad, fixed


# ----------------------------------------------------------------------------- parameterised
def _ticket_hash(rng: random.Random, i: int) -> tuple[str, str]:
    """Ticket numbers written with a hash: "Ticket 2300" → "Ticket #2300"; other numbers (the case
    number, in half the answers) stay as they are."""
    n = rng.randint(100, 99999)
    lead = f"Ticket {n} {rng.choice(_STATES)}."
    body = _body(rng, i, asap=False)
    tail = " ".join(body if rng.random() < 0.5 else body[1:])
    return f"{lead} {tail}", f"Ticket #{n} {lead.split(' ', 2)[2]} {tail}"


def _email_mask(rng: random.Random, i: int) -> tuple[str, str]:
    """E-mail addresses masked wherever they appear."""
    email = f"{rng.choice(_NAMES)}.{rng.choice(_NAMES)}{rng.randint(1, 99)}@{rng.choice(_DOMAINS)}"
    body = _body(rng, i, asap=False)
    where = rng.randrange(len(body) + 1)
    sentence = f"We wrote to {email} about it."
    bad = " ".join([*body[:where], sentence, *body[where:]])
    return bad, bad.replace(email, "[email]")


def _order_mask(rng: random.Random, i: int) -> tuple[str, str]:
    """Order numbers (letters, dash, digits) masked."""
    order = f"{rng.choice(('ORD', 'AB', 'XK'))}-{rng.randint(10000, 9999999)}"
    body = _body(rng, i, asap=False)
    bad = " ".join([f"Order {order} {rng.choice(_STATES)}.", *body[1:]])
    return bad, bad.replace(order, "[order]")


def _iso_dates(rng: random.Random, i: int) -> tuple[str, str]:
    """Dates "March 14, 2026" or "14/03/2026" (day first) rewritten as "2026-03-14"; ISO dates stay."""
    m, d, y = rng.randrange(12), rng.randint(1, 28), rng.randint(2020, 2030)
    form = rng.random()
    date = f"{_MONTHS[m]} {d}, {y}" if form < 0.5 else (f"{d:02d}/{m + 1:02d}/{y}" if form < 0.85 else f"{y}-{m + 1:02d}-{d:02d}")
    body = _body(rng, i, asap=False)
    bad = " ".join([body[0], f"It will be ready on {date}.", *body[1:]])
    return bad, bad.replace(date, f"{y}-{m + 1:02d}-{d:02d}")


def _casing(rng: random.Random, i: int) -> tuple[str, str]:
    """A product name's casing fixed wherever it appears (and however it was mis-cased)."""
    wrong = rng.choice(("vectorwave", "Vectorwave", "VECTORWAVE", "vectorWave"))
    body = _body(rng, i, asap=False)
    bad = " ".join([f"Your {wrong} workspace {rng.choice(_STATES)}.", *body[1:]])
    return bad, bad.replace(wrong, "VectorWave")


# ----------------------------------------------------------------------------- conditional
def _long_summary(rng: random.Random, i: int) -> tuple[str, str]:
    """Only answers longer than three sentences get cut to their first two (short ones stay)."""
    body = _body(rng, i, asap=False)
    extra = rng.sample(_FILLERS, rng.randint(0, 4))
    sentences = [*body[:2], *extra]
    bad = " ".join(sentences)
    fixed = " ".join(sentences[:2]) if len(sentences) > 3 else bad
    return bad, fixed


def _language_signoff(rng: random.Random, i: int) -> tuple[str, str]:
    """A sign-off in the answer's language: English, German, French and Spanish answers each get their own."""
    n = 1000 + i
    pick = rng.random()
    if pick < 0.4:
        bad = " ".join(_body(rng, i, asap=False))
        return bad, bad + "\n— Acme Support"
    if pick < 0.6:
        bad = f"Ihre {rng.choice(('Rechnung', 'Bestellung', 'Lieferung'))} ist {rng.choice(('bereit', 'unterwegs', 'verzögert'))} (Fall {n}). Wir melden uns bald."
        return bad, bad + "\n— Acme Kundendienst"
    if pick < 0.8:
        bad = (f"Votre {rng.choice(('facture', 'commande', 'livraison'))} est {rng.choice(('prête', 'en route', 'en retard'))} "
               f"(dossier {n}). Nous vous écrirons pour la suite.")
        return bad, bad + "\n— Service client Acme"
    bad = (f"Su {rng.choice(('factura', 'pedido', 'entrega'))} está {rng.choice(('lista', 'en camino', 'retrasada'))} "
           f"(caso {n}). Le escribiremos con los detalles para usted.")
    return bad, bad + "\n— Atención al cliente Acme"


def _phrase_condition(rng: random.Random, i: int) -> tuple[str, str]:
    """Answers that mention a refund get a note about its timing; others are left alone."""
    body = _body(rng, i, asap=False)
    bad = " ".join(body)
    if "refund" in bad:
        return bad, bad + " Refunds take 5 to 7 business days."
    return bad, bad


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("overlap_signature", "greeting removed, ASAP spelled out, Thx. → Thank you., signature appended", _overlap),
        Family("overlap_mid", "three touching edits in mid-text", _overlap_mid),
        Family("param_ticket", "Ticket 2300 → Ticket #2300", _ticket_hash),
        Family("param_email", "e-mail addresses masked", _email_mask),
        Family("param_order", "order numbers masked", _order_mask),
        Family("param_date", "dates (March 14, 2026 or 14/03/2026) rewritten as ISO 8601", _iso_dates),
        Family("param_casing", "a product name's casing fixed", _casing),
        Family("cond_length", "cut to two sentences only when longer than three", _long_summary),
        Family("cond_language", "sign-off in the answer's language (en, de, fr, es)", _language_signoff),
        Family("cond_phrase", "a note added only when a phrase occurs", _phrase_condition),
    )
}

_REWRITES = ("sorted out", "looked into", "handled", "double-checked", "taken care of", "escalated", "prioritised")


def _one_off(rng: random.Random, fixed: str, i: int) -> str:
    """A reviewer's free rewrite of one answer: never the same twice (it carries the pair's index)."""
    words = fixed.split(" ")
    choice = rng.random()
    if choice < 0.4 and len(words) > 3:
        k = rng.randrange(1, len(words) - 1)
        words[k] = f"{rng.choice(_REWRITES).split()[0]}{i}"
        return " ".join(words)
    if choice < 0.7:
        return fixed.replace(".", f" — {rng.choice(_REWRITES)} by reviewer {i}.", 1)
    return f"{fixed.split('.', 1)[0]}. (Rewritten by reviewer {i}: {rng.choice(_REWRITES)}.)" + (
        fixed.split(".", 1)[1] if "." in fixed else ""
    )


def cases(family: str, n: int, *, noise: float = 0.0, seed: int = 1) -> list[Case]:
    """``n`` pairs of ``family``; a ``noise`` share of them also carries one reviewer's one-off rewrite."""
    fam = FAMILIES[family]
    rng = random.Random(f"{family}/{seed}")
    noise_rng = random.Random(f"{family}/{seed}/noise")
    out: list[Case] = []
    n_noisy = round(noise * n)
    noisy_idx = set(noise_rng.sample(range(n), n_noisy))
    for i in range(n):
        bad, target = fam.make(rng, i)
        fixed = _one_off(noise_rng, target, i) if i in noisy_idx else target
        out.append(Case(Pair(f"{family}-{seed}-{i}", bad, fixed), target, i in noisy_idx and fixed != target))
    return out
