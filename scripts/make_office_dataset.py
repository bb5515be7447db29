#!/usr/bin/env python3
"""Generate the "office" fine-tuning dataset: four small office-work tasks, fully synthetic.

    .venv/bin/python scripts/make_office_dataset.py [--seed 1234] [--n-train 1200] [--n-test 100]
                                                    [--out data/office] [--tokenizer DIR]

Tasks (each line {"task", "prompt", "completion"}):
  extract_meeting   a short meeting e-mail -> {"date": "YYYY-MM-DD", "time": "HH:MM",
                    "room": "...", "attendees": [...]} (compact JSON, fixed key order)
  classify_ticket   a support ticket -> billing | technical | account | shipping | other
  invoice_total     2-3 line items "qty x item at $price" (+ a flat discount or a tax percent)
                    -> "$123.45" (Decimal, ROUND_HALF_UP)
  normalize_date    a date written in one of many styles -> "YYYY-MM-DD"

Everything comes from one random.Random per task seeded with "<seed>:<task>" (Python's str
seeding hashes with SHA-512, so it is the same on every machine and Python 3 version), so the
output is byte-identical for the same arguments. Tasks are balanced; train and test share no
prompt; the lines of each file interleave the tasks round-robin (task order as above, each
task's items ordered by the SHA-256 of the prompt), so any prefix of a file is balanced too.

Writes OUT/train.jsonl, OUT/test.jsonl and OUT/README.md. With a Hugging Face tokenizer (the
directory `sllm convert` writes; --tokenizer DIR, or found in build/hf_cache/) it also prints
token-length statistics: the raw prompt, the prompt as training sees it (one user turn in the
chat template with the generation prompt), and the completion + EOS.
"""
from __future__ import annotations

import argparse
import calendar
import datetime as dt
import hashlib
import json
import random
import statistics
import sys
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TASKS = ["extract_meeting", "classify_ticket", "invoice_total", "normalize_date"]
LABELS = ["billing", "technical", "account", "shipping", "other"]
DEFAULT_YEAR = 2025

MONTHS = list(calendar.month_name)[1:]
MONTHS_ABBR = list(calendar.month_abbr)[1:]
WEEKDAYS = list(calendar.day_name)
WEEKDAYS_ABBR = list(calendar.day_abbr)


def ordinal(n: int) -> str:
    suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def random_date(rng: random.Random, years: list[int]) -> dt.date:
    y = rng.choice(years)
    start = dt.date(y, 1, 1).toordinal()
    end = dt.date(y, 12, 31).toordinal()
    return dt.date.fromordinal(rng.randint(start, end))


# ----------------------------------------------------------------------------- people, places

FIRST_NAMES = [
    "Priya", "Tom", "Ana", "Lukas", "Mei", "Omar", "Sofia", "Daniel", "Aisha", "Jonas", "Elena",
    "Kenji", "Grace", "Mateo", "Fatima", "Oliver", "Hannah", "Raj", "Chloe", "Ivan", "Nadia",
    "Samuel", "Yuki", "Leila", "Marco", "Emma", "Tariq", "Julia", "Ben", "Camille", "Diego",
    "Zoe", "Arjun", "Lena", "Felix", "Amara", "Hugo", "Ingrid", "Kwame", "Rosa", "Victor",
    "Noor", "Paul", "Sara", "Chen", "Maya", "Erik", "Lucia", "Adam", "Freya",
]
LAST_NAMES = [
    "Shah", "Berg", "Silva", "Novak", "Lindqvist", "Haddad", "Rossi", "Kim", "Okafor", "Weber",
    "Petrova", "Tanaka", "Brown", "Garcia", "Nasser", "Smith", "Fischer", "Patel", "Martin",
    "Ivanov", "Karimi", "Cohen", "Sato", "Moreau", "Lopez", "Jensen", "Mensah", "Costa", "Meyer",
    "Ali",
]
ROOMS = [
    "Room 204", "Room 3.12", "Room B-117", "Room 12", "Conference Room B", "Conference Room 2",
    "Meeting Room 5A", "Training Room 1", "the Boardroom", "Maple Room", "Oak Room",
    "Harbor View", "Studio 4", "Room 310", "Huddle Room C", "Lab 2", "Cedar Room", "Room 101",
    "Executive Suite", "Lakeside Room",
]
TOPICS = [
    "the Q3 budget", "the website relaunch", "onboarding", "the client proposal", "hiring",
    "the sprint review", "the office move", "vendor contracts", "the annual report",
    "the product roadmap", "the security audit", "the marketing plan", "travel policy",
    "the holiday schedule", "the data migration", "quarterly goals", "the sales pipeline",
    "the new CRM", "training plans", "the trade show",
]
SUBJECTS = [
    "Meeting", "Quick sync", "Planning session", "Catch-up", "Review meeting", "Invitation",
    "Kick-off", "Team meeting", "Follow-up", "Workshop",
]
GREETINGS = ["Hi team,", "Hello all,", "Dear colleagues,", "Hi everyone,", "Hey all,", "Hi,",
             "Good morning,", "Hello,"]
SIGNOFFS = ["Thanks,", "Best,", "Cheers,", "Regards,", "Best regards,", "Thank you,", "See you there,"]


# ----------------------------------------------------------------------------- extract_meeting

MEETING_INSTRUCTIONS = [
    "Meeting to JSON: date (ISO), time (24h), room, attendees. Dates are M/D/Y; default year 2025.",
    "JSON of this meeting: date (ISO), time (24h), room, attendees (in order). US dates; year 2025"
    " if not given.",
]


MEETING_MAX_CHARS = 230  # instruction + e-mail, before optional parts are dropped


def meeting_date_text(rng: random.Random, d: dt.date) -> str:
    style = rng.randrange(6) if d.year == DEFAULT_YEAR else rng.randrange(3)
    if style == 0:
        return f"{d.day} {MONTHS[d.month - 1]} {d.year}"                     # 4 March 2025
    if style == 1:
        return f"{d.month:02d}/{d.day:02d}/{d.year}"                          # 03/04/2025
    if style == 2:
        return f"{MONTHS[d.month - 1]} {d.day}, {d.year}"                     # March 4, 2025
    if style == 3:
        return f"{WEEKDAYS[d.weekday()]}, {MONTHS[d.month - 1]} {d.day}"      # Tuesday, March 4
    if style == 4:
        return f"{WEEKDAYS_ABBR[d.weekday()]} {d.day} {MONTHS_ABBR[d.month - 1]}"  # Tue 4 Mar
    return f"{WEEKDAYS[d.weekday()]} the {ordinal(d.day)} of {MONTHS[d.month - 1]}"  # Tuesday the 4th of March


def meeting_time(rng: random.Random) -> tuple[int, int, str]:
    h = rng.randint(8, 17)
    m = rng.choice([0, 0, 0, 15, 30, 30, 45]) if rng.random() < 0.9 else rng.choice([10, 20, 40, 50])
    h12 = h % 12 or 12
    ampm = "am" if h < 12 else "pm"
    styles = ["hm24", "h12mm", "h12mm_sp", "h12mm_up"] + (["h12", "h12_sp", "h12_up"] if m == 0 else [])
    s = rng.choice(styles)
    text = {
        "hm24": f"{h:02d}:{m:02d}" if rng.random() < 0.5 or h >= 10 else f"{h}:{m:02d}",
        "h12mm": f"{h12}:{m:02d}{ampm}",
        "h12mm_sp": f"{h12}:{m:02d} {ampm}",
        "h12mm_up": f"{h12}:{m:02d} {ampm.upper()}",
        "h12": f"{h12}{ampm}",
        "h12_sp": f"{h12} {ampm}",
        "h12_up": f"{h12} {ampm.upper()}",
    }[s]
    if h == 12 and m == 0 and rng.random() < 0.3:
        text = "noon"
    return h, m, text


def names_natural(names: list[str], rng: random.Random) -> str:
    if len(names) == 1:
        return names[0]
    if len(names) == 2:
        return f"{names[0]} {rng.choice(['and', 'and', '&'])} {names[1]}"
    oxford = "," if rng.random() < 0.4 else ""
    return ", ".join(names[:-1]) + f"{oxford} and {names[-1]}"


def names_listed(names: list[str], rng: random.Random) -> str:
    style = rng.randrange(4)
    if style == 0:
        return ", ".join(names)
    if style == 1:
        return "; ".join(names)
    if style == 2:
        return " / ".join(names)
    return names_natural(names, rng)


def make_meeting(rng: random.Random) -> tuple[str, str]:
    d = random_date(rng, [2025, 2025, 2025, 2025, 2026])
    h, m, time_text = meeting_time(rng)
    room = rng.choice(ROOMS)
    k = rng.choice([1, 2, 2, 3, 3, 4])
    firsts = rng.sample(FIRST_NAMES, k + 1)
    sender, firsts = firsts[0], firsts[1:]
    if k <= 3 and rng.random() < 0.25:
        names = [f"{f} {l}" for f, l in zip(firsts, rng.sample(LAST_NAMES, k))]
    else:
        names = firsts
    date_text = meeting_date_text(rng, d)
    topic = rng.choice(TOPICS)
    nat = names_natural(names, rng)
    lst = names_listed(names, rng)
    on_date, where = date_text, room
    bodies = [
        f"Let's meet on {on_date} at {time_text} in {where} about {topic}. {nat} should attend.",
        f"I've booked {where} for {on_date} at {time_text} to discuss {topic}. Invited: {lst}.",
        f"Reminder: {topic.removeprefix('the ')} meeting on {on_date}, {time_text}, {where}."
        f" Attendees: {lst}.",
        f"Could {nat} join me in {where} on {on_date} at {time_text}? We'll cover {topic}.",
        f"The {topic.removeprefix('the ')} meeting is moved to {on_date} at {time_text}, {where}."
        f" Please attend: {lst}.",
        f"{nat}, please come to {where} at {time_text} on {on_date} for {topic}.",
        f"When: {on_date}, {time_text}\nWhere: {where}\nWho: {lst}\nAgenda: {topic}",
        f"We will review {topic} on {on_date} at {time_text} in {where} with {nat}.",
    ]
    body = rng.choice(bodies)
    subject = f"Subject: {rng.choice(SUBJECTS)}" if rng.random() < 0.35 else None
    greeting = rng.choice(GREETINGS) if rng.random() < 0.6 else None
    signoff = rng.choice(SIGNOFFS) if rng.random() < 0.4 else None
    instruction = rng.choice(MEETING_INSTRUCTIONS)

    def render() -> str:
        head = [x for x in (subject, greeting) if x]
        tail = f"{signoff}\n{sender}" if signoff else sender
        return "\n".join(head + [body, tail])

    # Keep prompts short (about 90 SmolLM2 tokens at most): drop the optional parts of a long
    # e-mail, subject first, then the sign-off, then the greeting (~2.8 characters per token).
    for drop in ("subject", "signoff", "greeting"):
        if len(instruction) + len(render()) <= MEETING_MAX_CHARS:
            break
        if drop == "subject":
            subject = None
        elif drop == "signoff":
            signoff = None
        else:
            greeting = None
    email = render()
    prompt = f"{instruction}\n\n{email}"
    room_value = room.removeprefix("the ")
    answer = {"date": d.isoformat(), "time": f"{h:02d}:{m:02d}", "room": room_value,
              "attendees": names}
    return prompt, json.dumps(answer, separators=(", ", ": "), ensure_ascii=False)


# ----------------------------------------------------------------------------- classify_ticket

TICKET_INSTRUCTIONS = [
    "Classify this support ticket as one of: billing, technical, account, shipping, other."
    " Answer with the label only.",
    "Which team should handle this ticket? Labels: billing, technical, account, shipping, other."
    " Reply with one label.",
]
PRODUCTS = ["desk phone", "label printer", "laptop dock", "headset", "webcam", "monitor",
            "router", "scanner", "office chair", "standing desk", "keyboard", "projector"]
APPS = ["mobile", "desktop", "web", "Android", "iOS", "Windows"]
PLANS = ["Basic", "Pro", "Team", "Business", "Starter"]
CARRIERS = ["UPS", "DHL", "FedEx", "the courier", "USPS", "DPD"]
WEEKDAY_WORDS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "last week", "yesterday"]

# Scenarios: (label, subjects, main sentences, optional detail sentences). Slots are filled below.
TICKET_SCENARIOS = [
    ("billing", ["Charged twice", "Double charge on my card", "Duplicate payment"],
     ["I was charged {amount} twice for my {plan} plan this month.",
      "My card shows two payments of {amount} for the same subscription."],
     ["Please refund the extra charge.", "My bank statement is attached."]),
    ("billing", ["Refund request", "Refund not received", "Where is my refund?"],
     ["I cancelled on {day} but was still charged {amount}.",
      "You promised a refund of {amount} two weeks ago and it has not arrived."],
     ["Please send the money back to the original card.", "Order reference {order}."]),
    ("billing", ["Wrong amount on invoice", "Invoice {inv} is incorrect", "Invoice question"],
     ["Invoice {inv} says {amount}, but our contract price is lower.",
      "Invoice {inv} bills us for 12 seats but we only have 8."],
     ["Can you send a corrected invoice?", "Our finance team needs it by Friday."]),
    ("billing", ["Price increase?", "Why did my bill go up?", "Higher monthly fee"],
     ["My monthly fee went up to {amount} without any notice.",
      "This month's bill for the {plan} plan is {amount}, more than usual."],
     ["Was there a price change?", "Please explain the new charges."]),
    ("billing", ["VAT number missing", "Need a receipt with VAT", "Tax on invoice"],
     ["Our invoices do not show our VAT number.",
      "I need a receipt for payment {inv} that shows the tax."],
     ["Can you reissue them?", "Our accountant is asking for it."]),
    ("technical", ["App crashes on startup", "{app} app keeps crashing", "Crash after update"],
     ["Since the last update the {app} app closes as soon as I open it.",
      "The {app} app crashes every time I try to attach a file."],
     ["I already reinstalled it.", "I am on the latest version."]),
    ("technical", ["Error {code} when uploading", "Upload fails", "Cannot upload files"],
     ["I get error {code} whenever I upload a file larger than 10 MB.",
      "Uploads stop at 99% and then show error {code}."],
     ["It worked fine last week.", "Same problem in Chrome and Firefox."]),
    ("technical", ["{product} not connecting", "{product} offline", "Connection problem"],
     ["Our {product} will not connect to the office Wi-Fi after the firmware update.",
      "The {product} drops its connection every few minutes."],
     ["We restarted it twice.", "Other devices are working normally."]),
    ("technical", ["Export to PDF broken", "Reports not loading", "Dashboard very slow"],
     ["The export button does nothing when I click it.",
      "Reports take minutes to load and then time out."],
     ["The whole team is affected.", "This started this morning."]),
    ("technical", ["Sync not working", "Calendar sync stopped", "Data not syncing"],
     ["Changes I make on my laptop no longer show up on my phone.",
      "My calendar stopped syncing with the {app} app on {day}."],
     ["I tried logging out and in again.", "No error message is shown."]),
    ("account", ["Can't log in", "Login problem", "Unable to sign in"],
     ["I cannot log in even though my password is correct.",
      "The login page keeps sending me back to the start."],
     ["My username is {email}.", "I need access today."]),
    ("account", ["Password reset not working", "Reset email never arrives", "Reset link expired"],
     ["I requested a password reset three times but no e-mail arrived.",
      "The password reset link says it has expired as soon as I open it."],
     ["I checked my spam folder.", "My address is {email}."]),
    ("account", ["Change account email", "Update my e-mail address", "New login e-mail"],
     ["Please change the e-mail on my account to {email}.",
      "I changed jobs and need my login moved to {email}."],
     ["The old address no longer works.", "Thanks for your help."]),
    ("account", ["Add a user", "New team member access", "Remove a user"],
     ["How do I add a new colleague to our {plan} workspace?",
      "Please remove {name} from our account, they left the company."],
     ["I am the account admin.", "We have seats available."]),
    ("account", ["Account locked", "2FA code not working", "Two-factor problem"],
     ["My account was locked after too many login attempts.",
      "I no longer receive the two-factor code on my new phone."],
     ["Please unlock it.", "I still have my backup codes."]),
    ("shipping", ["Where is my order?", "Order {order} not delivered", "Late delivery"],
     ["Order {order} was supposed to arrive on {day} but it is still not here.",
      "I have been waiting ten days for order {order}."],
     ["Can you check what happened?", "We need it for an event."]),
    ("shipping", ["Tracking not updating", "No tracking information", "Parcel stuck"],
     ["The {carrier} tracking for order {order} has not changed in five days.",
      "My tracking number shows no information at all."],
     ["Is the parcel lost?", "Please send an update."]),
    ("shipping", ["Package arrived damaged", "Broken item", "Damaged delivery"],
     ["The box arrived crushed and the {product} inside is broken.",
      "The {product} was delivered with a cracked screen."],
     ["I have photos of the packaging.", "Please send a replacement."]),
    ("shipping", ["Wrong item delivered", "Received the wrong product", "Incorrect order"],
     ["I ordered a {product} but received a {product2}.",
      "Order {order} contained someone else's items."],
     ["How do I return it?", "Please send the right one."]),
    ("shipping", ["Change delivery address", "Ship to a different address", "Delivery address"],
     ["Can you send order {order} to our new office instead?",
      "I entered the wrong street number for order {order}."],
     ["It has not shipped yet.", "The new address is 14 Mill Lane."]),
    ("other", ["Feature request", "Suggestion: dark mode", "Idea for the app"],
     ["It would be great if the {app} app had a dark mode.",
      "Could you add a way to export contacts to a spreadsheet?"],
     ["Many of us would use it.", "Just a suggestion."]),
    ("other", ["Partnership inquiry", "Reseller program", "Business proposal"],
     ["We are a distributor and would like to discuss a reseller partnership.",
      "I would like to talk about a joint webinar with your team."],
     ["Who should I contact?", "We are based in {city}."]),
    ("other", ["Thank you!", "Great support", "Compliment for your team"],
     ["I just wanted to say thanks to {name} for the quick help on {day}.",
      "Your support team solved my problem in minutes."],
     ["Keep up the good work.", "Much appreciated."]),
    ("other", ["Holiday opening hours", "Office hours", "Are you open on Saturdays?"],
     ["Is your support line open between Christmas and New Year?",
      "What are your opening hours on public holidays?"],
     ["We are planning our schedule.", "Thanks in advance."]),
    ("other", ["Sustainability report", "Press inquiry", "Question for a survey"],
     ["Could you send me a copy of your latest sustainability report?",
      "I am writing an article about remote work tools and have a few questions."],
     ["A short reply is fine.", "My deadline is next week."]),
]
TICKET_CLOSINGS = ["Thanks in advance.", "Please advise.", "Any help is appreciated.",
                   "Let me know if you need more details.", "Thank you.", ""]
CITIES = ["Lisbon", "Toronto", "Nairobi", "Osaka", "Berlin", "Austin", "Manila", "Lyon"]


def fill(rng: random.Random, s: str) -> str:
    prods = rng.sample(PRODUCTS, 2)
    slots = {
        "amount": f"${rng.randint(9, 199)}.{rng.choice(['00', '99', '50', '95'])}",
        "plan": rng.choice(PLANS), "day": rng.choice(WEEKDAY_WORDS),
        "order": f"#{rng.randint(10000, 99999)}", "inv": f"INV-{rng.randint(1000, 9999)}",
        "code": rng.choice(["500", "403", "E42", "0x80070005", "502", "413"]),
        "app": rng.choice(APPS), "product": prods[0], "product2": prods[1],
        "carrier": rng.choice(CARRIERS), "city": rng.choice(CITIES),
        "name": rng.choice(FIRST_NAMES),
        "email": f"{rng.choice(FIRST_NAMES).lower()}.{rng.choice(LAST_NAMES).lower()}@"
                 f"{rng.choice(['example.com', 'acme.io', 'mail.test', 'corp.example'])}",
    }
    return s.format(**slots)


def make_ticket(rng: random.Random, label: str) -> tuple[str, str]:
    scen = [s for s in TICKET_SCENARIOS if s[0] == label]
    _, subjects, mains, details = rng.choice(scen)
    sents = [fill(rng, rng.choice(mains))]
    if rng.random() < 0.6:
        sents.append(fill(rng, rng.choice(details)))
    closing = rng.choice(TICKET_CLOSINGS)
    if closing and rng.random() < 0.5 and len(sents) < 3:
        sents.append(closing)
    subject = fill(rng, rng.choice(subjects))
    head = rng.choice(["Subject: {s}\n{b}", "Subject: {s}\nMessage: {b}", "Ticket: {s}\n{b}",
                       "Subject: {s}\n\n{b}"])
    ticket = head.format(s=subject, b=" ".join(sents))
    prompt = f"{rng.choice(TICKET_INSTRUCTIONS)}\n\n{ticket}"
    return prompt, label


# ----------------------------------------------------------------------------- invoice_total

INVOICE_INSTRUCTIONS = [
    "Compute the total of this invoice. Reply with the amount only, like $12.34.",
    "What is the invoice total? Answer with the amount only, e.g. $12.34.",
]
ITEMS = [
    "Stapler", "Sticky notes", "Binder clips", "Toner cartridge", "Notebook", "Ballpoint pens",
    "Mouse pad", "Desk lamp", "USB-C cable", "Printer paper", "Envelopes", "Highlighters",
    "File folders", "Scissors", "Tape dispenser", "Calculator", "Whiteboard markers",
    "Coffee beans", "Label tape", "Paper clips", "Desk organizer", "Index cards", "HDMI cable",
    "Sharpies", "Clipboard",
]
VENDORS = ["Brightline Supplies", "OfficeMart", "Paper & Co", "Northwind Traders", "Acme Office",
           "Blue Desk Ltd", "Staplewise", "Metro Supply"]
CENTS = ["00", "25", "50", "75", "99", "49", "95", "10", "20", "80", "45", "60"]


def make_invoice(rng: random.Random) -> tuple[str, str]:
    n = 2 if rng.random() < 0.75 else 3
    items = rng.sample(ITEMS, n)
    lines, subtotal = [], Decimal("0")
    for it in items:
        q = rng.choice([1, 1, 2, 2, 3, 4, 5])
        p = Decimal(f"{rng.randint(1, 24)}.{rng.choice(CENTS)}")
        subtotal += q * p
        lines.append(f"{q} x {it} at ${p}")
    total = subtotal
    r = rng.random()
    if n == 2 and r < 0.2:
        disc = Decimal(rng.choice([2, 3, 5, 5, 10]))
        while disc >= subtotal:
            disc = Decimal(1)
        lines.append(f"Discount: ${disc}.00 off")
        total = subtotal - disc
    elif n == 2 and r < 0.4:
        pct = rng.choice([5, 8, 10, 10, 20])
        lines.append(f"Tax: {pct}%")
        total = subtotal * (1 + Decimal(pct) / 100)
    total = total.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    header = rng.choice([f"Invoice from {rng.choice(VENDORS)}:", f"Order #{rng.randint(100, 999)}:",
                         f"{rng.choice(VENDORS)} - invoice {rng.randint(1000, 9999)}", "Items:"])
    prompt = f"{rng.choice(INVOICE_INSTRUCTIONS)}\n\n{header}\n" + "\n".join(lines)
    return prompt, f"${total}"


# ----------------------------------------------------------------------------- normalize_date

DATE_INSTRUCTIONS = [
    "Rewrite the date in this text as YYYY-MM-DD. Dates like 3/4/2025 are month/day/year.",
    "Give the date below in ISO format (YYYY-MM-DD). Slash dates ending in the year are US"
    " month/day/year.",
]
DATE_CONTEXTS = [
    "{d}", "Date: {d}", "The invoice is due on {d}.", "Please submit the report by {d}.",
    "Our lease ends {d}.", "The training starts {d}.", "Delivery expected {d}.",
    "Signed on {d} in Boston.", "Offer valid until {d}.", "Last day of work: {d}",
    "The audit is scheduled for {d}.", "Received {d}, thank you.",
]


def date_text(rng: random.Random, d: dt.date) -> str:
    M, Ma, day, y = MONTHS[d.month - 1], MONTHS_ABBR[d.month - 1], d.day, d.year
    wd, wda = WEEKDAYS[d.weekday()], WEEKDAYS_ABBR[d.weekday()]
    styles = [
        f"{M} {ordinal(day)}, {y}",              # March 3rd, 2025
        f"{day} {Ma} {y % 100:02d}",             # 3 Mar 25
        f"{y}/{d.month}/{day}",                  # 2025/3/3
        f"the {ordinal(day)} of {M} {y}",        # the 3rd of March 2025
        f"{wda} {d.month}/{day}/{y}",            # Mon 3/3/2025
        f"{d.month}/{day}/{y}",                  # 3/3/2025
        f"{d.month:02d}/{day:02d}/{y}",          # 03/03/2025
        f"{M} {day}, {y}",                       # March 3, 2025
        f"{Ma}. {day}, {y}",                     # Mar. 3, 2025
        f"{day} {M} {y}",                        # 3 March 2025
        f"{wd}, {M} {day}, {y}",                 # Monday, March 3, 2025
        f"{day}-{Ma}-{y}",                       # 3-Mar-2025
        f"{y}.{d.month:02d}.{day:02d}",          # 2025.03.03
        f"{wd} {ordinal(day)} {M} {y}",          # Monday 3rd March 2025
        f"{Ma} {ordinal(day)} {y}",              # Mar 3rd 2025
    ]
    return rng.choice(styles)


def make_date(rng: random.Random) -> tuple[str, str]:
    d = random_date(rng, [2023, 2024, 2025, 2025, 2025, 2026, 2027])
    ctx = rng.choice(DATE_CONTEXTS).format(d=date_text(rng, d))
    ctx = ctx[0].upper() + ctx[1:]
    prompt = f"{rng.choice(DATE_INSTRUCTIONS)}\n\n{ctx}"
    return prompt, d.isoformat()


# ----------------------------------------------------------------------------- assembly

def generate_task(task: str, n: int, seed: int) -> list[dict]:
    rng = random.Random(f"{seed}:{task}")
    seen: set[str] = set()
    items: list[dict] = []
    tries = 0
    while len(items) < n:
        tries += 1
        if tries > 200 * n + 1000:
            raise RuntimeError(f"{task}: could not generate {n} distinct prompts")
        if task == "extract_meeting":
            p, c = make_meeting(rng)
        elif task == "classify_ticket":
            p, c = make_ticket(rng, LABELS[len(items) % len(LABELS)])  # balanced labels
        elif task == "invoice_total":
            p, c = make_invoice(rng)
        else:
            p, c = make_date(rng)
        if p in seen:
            continue
        seen.add(p)
        items.append({"task": task, "prompt": p, "completion": c})
    return items


def split_counts(n: int) -> list[int]:
    """n items over the tasks as evenly as possible (the first tasks get the remainder)."""
    return [n // len(TASKS) + (i < n % len(TASKS)) for i in range(len(TASKS))]


def sha(s: str) -> str:
    return hashlib.sha256(s.encode("utf-8")).hexdigest()


def interleave(per_task: list[list[dict]]) -> list[dict]:
    ordered = [sorted(items, key=lambda r: sha(r["prompt"])) for items in per_task]
    out = []
    for i in range(max(map(len, ordered), default=0)):
        out.extend(items[i] for items in ordered if i < len(items))
    return out


def build(seed: int, n_train: int, n_test: int) -> tuple[list[dict], list[dict]]:
    train_parts, test_parts = [], []
    for task, ntr, nte in zip(TASKS, split_counts(n_train), split_counts(n_test)):
        items = generate_task(task, ntr + nte, seed)
        # Within a task, prompts are distinct, so test (the first nte generated) and train
        # (the rest) share none. For classify_ticket the generation order cycles the labels,
        # so each part stays label-balanced.
        test_parts.append(items[:nte])
        train_parts.append(items[nte:])
    train, test = interleave(train_parts), interleave(test_parts)
    assert not ({r["prompt"] for r in train} & {r["prompt"] for r in test})
    return train, test


def dumps_jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def readme_text(a, train: list[dict], test: list[dict]) -> str:
    def counts(rows):
        c = {t: 0 for t in TASKS}
        for r in rows:
            c[r["task"]] += 1
        return c

    ctr, cte = counts(train), counts(test)
    label_counts = {lab: sum(1 for r in train if r["completion"] == lab) for lab in LABELS}
    examples = []
    for t in TASKS:
        r = next(x for x in test if x["task"] == t)
        examples.append(f"### `{t}`\n\n```json\n{json.dumps(r, ensure_ascii=False)}\n```\n")
    cmd = "python3 scripts/make_office_dataset.py"
    if (a.seed, a.n_train, a.n_test) != (1234, 1200, 100):
        cmd += f" --seed {a.seed} --n-train {a.n_train} --n-test {a.n_test}"
    if Path(a.out).as_posix() != "data/office":
        cmd += f" --out {Path(a.out).as_posix()}"
    rows = "\n".join(f"| `{t}` | {ctr[t]} | {cte[t]} |" for t in TASKS)
    return f"""# Office tasks dataset (synthetic)

Four small office-work tasks for supervised fine-tuning and exact-match evaluation of small
models. Every line of `train.jsonl` and `test.jsonl` is one JSON object
`{{"task": ..., "prompt": ..., "completion": ...}}` (UTF-8, one object per line).

| task | train | test |
|---|---|---|
{rows}
| **total** | {len(train)} | {len(test)} |

## Tasks

- **`extract_meeting`**: a short meeting e-mail (optional subject line, greeting, one of eight
  phrasings, sign-off and sender) -> compact JSON with the keys in this order:
  `{{"date": "YYYY-MM-DD", "time": "HH:MM", "room": "...", "attendees": ["...", ...]}}`
  (`json.dumps` with `separators=(", ", ": ")`). Dates are written as "4 March 2025",
  "03/04/2025" (US month/day/year), "March 4, 2025", or without a year ("Tuesday, March 4",
  "Tue 4 Mar", "Tuesday the 4th of March", always a correct weekday; the year is then 2025, as
  the instruction says). Times as "2pm", "2 PM", "9:15 am", "2:30pm", "14:30", "noon"; the
  answer is 24-hour `HH:MM`. Rooms are taken as written (a leading "the" dropped: "the
  Boardroom" -> "Boardroom"). 1-4 attendees (first names or full names), listed as
  "A, B and C", "A, B, and C", "A & B", "A; B; C", "A / B"; the answer keeps the order of
  mention. The sender who signs the e-mail is never an attendee.
- **`classify_ticket`**: a support ticket (subject + 1-3 sentences, from 25 scenarios with
  random order numbers, amounts, products, e-mail addresses) -> one label from
  `billing, technical, account, shipping, other` (the instruction lists them). Labels are
  balanced: {", ".join(f"{k} {v}" for k, v in label_counts.items())} in train.
- **`invoice_total`**: 2 line items (75 %) or 3, each "qty x item at $price" (qty 1-5,
  price $1.00-$24.99), with, on 2-item invoices only, a flat discount ("Discount: $5.00 off",
  20 %) or a tax percent ("Tax: 8%", 20 %) -> the total as "$123.45", computed with
  `decimal.Decimal` and rounded half-up to the cent (tax applies to the subtotal).
- **`normalize_date`**: a date in one of 15 styles ("March 3rd, 2025", "3 Mar 25",
  "2025/3/3", "the 3rd of March 2025", "Mon 3/3/2025", "03/03/2025", "3-Mar-2025",
  "2025.03.03", "Monday 3rd March 2025", ...), bare or inside a short sentence, years
  2023-2027 -> `YYYY-MM-DD`. Slash dates ending in the year are US month/day/year (the
  instruction says so); weekdays are always correct.

Each prompt is a one-line instruction (two paraphrases per task), a blank line, then the
input. Completions are short (a label, an amount, a date, or a one-line JSON object).

## How it is generated

`scripts/make_office_dataset.py` builds everything from templates and word lists with one
`random.Random("<seed>:<task>")` per task, so the files are byte-identical for the same
arguments on any machine. Prompts are distinct within each task; the test set is the first
items generated for each task and the training set the rest, so the two share no prompt. Both
files interleave the tasks round-robin (extract_meeting, classify_ticket, invoice_total,
normalize_date; within a task, ordered by SHA-256 of the prompt), so any prefix of a file is
balanced across tasks (the first 20 test items are 5 of each task).

Regenerate (from the repository root):

```sh
{cmd}
```

Training (sllm) reads a `{{"prompt", "completion"}}` line as one user turn rendered with the
model's chat template plus the generation prompt, then the completion tokens and the EOS token
as targets; `sllm eval --task test.jsonl` scores exact match (JSON answers compared as parsed
values).

## License

Generated data: no real people, companies, e-mails or tickets. Names, rooms, products and
amounts are drawn at random from lists in the script. The dataset is part of this repository
and may be used under the same terms.

## Examples (first test line of each task)

{chr(10).join(examples)}"""


def find_tokenizer(explicit: str | None) -> Path | None:
    if explicit:
        return Path(explicit)
    cache = REPO / "build" / "hf_cache"
    for cand in sorted(cache.glob("*")) if cache.is_dir() else []:
        if (cand / "tokenizer.json").is_file() and "SmolLM2" in cand.name:
            return cand
    return None


def token_stats(tok_dir: Path, train: list[dict], test: list[dict]) -> None:
    import os
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(str(tok_dir))
    has_template = bool(getattr(tok, "chat_template", None))

    def lengths(rows):
        raw, chat, comp = [], [], []
        for r in rows:
            raw.append(len(tok(r["prompt"], add_special_tokens=False)["input_ids"]))
            if has_template:
                ids = tok.apply_chat_template([{"role": "user", "content": r["prompt"]}],
                                              add_generation_prompt=True, tokenize=True)
                if not isinstance(ids, list):
                    ids = ids["input_ids"]
                chat.append(len(ids))
            comp.append(len(tok(r["completion"], add_special_tokens=False)["input_ids"]) + 1)
        return raw, chat, comp

    def fmt(xs):
        if not xs:
            return "-"
        return f"{min(xs):>3} {statistics.mean(xs):6.1f} {statistics.median(xs):5.0f} {max(xs):>4}"

    print(f"\ntoken lengths with the tokenizer of {tok_dir} (min mean median max)")
    print(f"{'task':<16} {'prompt (raw)':>22} {'prompt (chat tmpl)':>22} {'completion+EOS':>22}")
    for t in TASKS + ["all"]:
        rows = [r for r in train + test if t == "all" or r["task"] == t]
        raw, chat, comp = lengths(rows)
        print(f"{t:<16} {fmt(raw):>22} {fmt(chat):>22} {fmt(comp):>22}")
    raw, chat, comp = lengths(train + test)
    longest = max(c + k for c, k in zip(chat or raw, comp))
    print(f"longest training sequence (chat prompt + completion + EOS): {longest} tokens; "
          f"raw prompts over 90 tokens: {sum(x > 90 for x in raw)}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--n-train", type=int, default=1200)
    ap.add_argument("--n-test", type=int, default=100)
    ap.add_argument("--out", default="data/office")
    ap.add_argument("--tokenizer", default=None,
                    help="HF tokenizer directory for length statistics (default: a SmolLM2 "
                         "directory under build/hf_cache/ if there is one; 'none' to skip)")
    a = ap.parse_args(argv)
    if a.n_train < 0 or a.n_test < 0 or a.n_train + a.n_test == 0:
        ap.error("--n-train and --n-test must be >= 0 and not both 0")

    train, test = build(a.seed, a.n_train, a.n_test)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in [("train.jsonl", dumps_jsonl(train)), ("test.jsonl", dumps_jsonl(test)),
                       ("README.md", readme_text(a, train, test))]:
        (out / name).write_bytes(text.encode("utf-8"))
        print(f"wrote {out / name} ({len(text.encode('utf-8'))} bytes, sha256 {sha(text)[:16]})")
    print("tasks (train/test): " + ", ".join(
        f"{t} {sum(r['task'] == t for r in train)}/{sum(r['task'] == t for r in test)}" for t in TASKS))

    if a.tokenizer != "none":
        tok_dir = find_tokenizer(a.tokenizer)
        if tok_dir is None:
            print("\n(no tokenizer for length statistics: run `build/sllm convert --model "
                  "models/SmolLM2-135M-Instruct.Q4_1.gguf --out build/hf_cache/"
                  "SmolLM2-135M-Instruct.Q4_1` or pass --tokenizer DIR)")
        else:
            try:
                token_stats(tok_dir, train, test)
            except Exception as e:  # noqa: BLE001 - statistics are optional
                print(f"\n(token statistics skipped: {type(e).__name__}: {e})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
