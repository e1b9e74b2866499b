"""Sign-up and the subscriber's own page, on the site.

    /subscribe         the form; a POST asks for a subscription, confirmed by e-mail
    /manage?token=...  change, pause, resume or end a subscription (the link in every e-mail)

The answer to a sign-up never tells whether the address was already subscribed, nor
whether a limit was reached or the confirmation e-mail is still queued: it is always "Check
your inbox". An address already confirmed is left as it is (its own manage link changes
it), so nobody can rewrite someone else's choices by typing their address.

Every POST form carries a signed token bound to a random value in a SameSite=Strict,
HttpOnly cookie (double submit), so another site cannot post it; a missing or stale token
shows the form again, fresh, with status 400. A hidden field that people leave empty and
form-filling robots do not, and two limits counted in the database (confirmation e-mails per
address a day, sign-ups per client an hour) keep the form from being used to send mail to
strangers. Opening /manage (GET) only shows the page; buttons (POST) change things.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from jinja2 import Environment
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from tracker import countries, jobs, places, subscribers
from tracker.config import WEEKDAYS
from tracker.errors import BadAddress, BadToken, NotFound, UnknownCountry, UnknownPlace
from tracker.jobs import Context
from tracker.matching import DEFAULT_RADIUS_KM
from tracker.models import Cadence, ChangeSet, Subscriber
from tracker.subscribers import Preferences
from tracker.times import as_utc, long_date
from tracker.tokens import Purpose, form_token, form_token_matches

RADII = (25, 50, 100, 250, 500, 1000)  # km, the choices of "near a town or city"
COOKIE = "tracker_form"  # the random value a form's token is bound to
HONEYPOT = "website"  # the field people leave empty (it is hidden from them)
PAUSE = timedelta(days=30)
MAX_COUNTRIES = 20
EXPIRED = "This form expired; please try again."
INBOX = ["We have sent an e-mail to the address you gave, unless one was sent to it "
         "recently. Open the link in it to start your e-mails: nothing is sent until you do.",
         "If nothing arrives within an hour, look in your spam folder, or sign up again later."]

# One line in plain words beside each type of myositis; a tag without one shows its label.
SUBTYPE_NOTES = {
    "dermatomyositis": "Muscle weakness with a skin rash.",
    "jdm": "Dermatomyositis that starts in childhood.",
    "cadm": "The skin rash of dermatomyositis with little or no muscle weakness.",
    "polymyositis": "Muscle weakness without a skin rash.",
    "ibm": "Weakness that grows slowly, often in the thighs, fingers and wrists, mostly "
           "after the age of 50.",
    "imnm": "Muscle damaged by the immune system, often with very high CK in blood tests.",
    "ass": "Myositis with lung disease, joint pain or rough skin on the fingers, linked to "
           "anti-synthetase antibodies.",
    "overlap": "Myositis together with another autoimmune disease, such as lupus or "
               "scleroderma.",
    "cam": "Myositis that appears with a cancer.",
    "icim": "Myositis caused by cancer medicines called immune checkpoint inhibitors.",
    "ild": "Scarring of the lungs (interstitial lung disease) that comes with myositis.",
    "iim": "Trials about myositis in general rather than one type.",
}


@dataclass
class Choices:
    """The form as typed (what it shows again), what it resolved to, and its errors by
    field name."""

    email: str = ""
    subtypes: list[str] = field(default_factory=list)
    therapies: list[str] = field(default_factory=list)
    countries: str = ""
    near: str = ""
    radius: int = int(DEFAULT_RADIUS_KM)
    children: bool = False
    changes: str = ChangeSet.PATIENT
    cadence: str = Cadence.WEEKLY
    weekday: int = 0
    country_names: tuple[str, ...] = ()
    point: tuple[float, float] | None = None
    place_label: str | None = None
    errors: dict[str, str] = field(default_factory=dict)

    def preferences(self, recruiting_only: bool = False) -> Preferences:
        return Preferences(
            subtypes=tuple(self.subtypes), therapies=tuple(self.therapies),
            countries=self.country_names, near=self.point,
            radius_km=float(self.radius) if self.point else None,
            near_label=self.place_label if self.point else None, children=self.children,
            recruiting_only=recruiting_only, changes=ChangeSet(self.changes),
            cadence=Cadence(self.cadence), weekday=self.weekday)


def choices_of(subscriber: Subscriber, weekly_day: int) -> Choices:
    """A subscription's choices as the form shows them."""
    prefs = subscribers.preferences_of(subscriber)
    near = ""
    if prefs.near:
        near = prefs.near_label or f"{prefs.near[0]:g}, {prefs.near[1]:g}"
    radius = int(prefs.radius_km or DEFAULT_RADIUS_KM)
    return Choices(
        subtypes=list(prefs.subtypes), therapies=list(prefs.therapies),
        countries=", ".join(prefs.countries), near=near,
        radius=radius if radius in RADII else int(DEFAULT_RADIUS_KM),
        children=prefs.children, changes=prefs.changes, cadence=prefs.cadence,
        weekday=weekly_day if prefs.weekday is None else prefs.weekday,
        country_names=prefs.countries, point=prefs.near, place_label=prefs.near_label)


def read_choices(form: Mapping[str, Any], getlist: Callable[[str], list[Any]], *,
                 subtypes: Mapping[str, object], therapies: list[str], known: list[str],
                 weekly_day: int, email: bool, current: Choices | None = None) -> Choices:
    """The form's values; unknown choices fall back to defaults, and what cannot be
    understood (an address, a country, a place) becomes an error beside its field.

    With `current` (the manage page), a place or countries left as shown keep what they
    were, so saving an unchanged form changes nothing."""
    def text(name: str, limit: int = 200) -> str:
        return str(form.get(name, "")).strip()[:limit]

    choices = Choices(
        email=text("email", 320) if email else "",
        subtypes=[str(v) for v in dict.fromkeys(getlist("subtype")) if v in subtypes],
        therapies=[str(v) for v in dict.fromkeys(getlist("therapy")) if v in therapies],
        countries=text("countries", 500), near=text("near"),
        children=bool(form.get("children")),
        changes=text("changes") if text("changes") in set(ChangeSet) else ChangeSet.PATIENT,
        cadence=text("cadence") if text("cadence") in set(Cadence) else Cadence.WEEKLY,
    )
    radius, day = text("radius"), text("weekday")
    choices.radius = int(radius) if radius.isdigit() and int(radius) in RADII \
        else int(DEFAULT_RADIUS_KM)
    choices.weekday = int(day) if day.isdigit() and int(day) < 7 else weekly_day
    if email:
        try:
            choices.email = subscribers.normalise_address(choices.email)
        except BadAddress as error:
            choices.errors["email"] = str(error) if choices.email \
                else "Please give your e-mail address."
    if current is not None and choices.countries == current.countries:
        choices.country_names = current.country_names
    elif choices.countries:
        try:
            choices.country_names = resolve_countries(choices.countries, known)
        except UnknownCountry as error:
            choices.errors["countries"] = str(error)
    if current is not None and choices.near == current.near:
        choices.point, choices.place_label = current.point, current.place_label
    elif choices.near:
        try:
            place = places.find(choices.near)
        except UnknownPlace as error:
            choices.errors["near"] = str(error)
        else:
            choices.point, choices.place_label = (place.lat, place.lon), place.label
    return choices


def resolve_countries(typed: str, known: list[str]) -> tuple[str, ...]:
    """ "France, UK" -> ("France", "United Kingdom"). Names are split at commas, but a name
    that holds one ("Virgin Islands, British") is read whole: the longest run of pieces that
    names a country wins. UnknownCountry for the first piece that names none."""
    pieces = [p.strip() for p in typed.replace(";", ",").split(",") if p.strip()]
    pieces = pieces[:MAX_COUNTRIES]
    found: list[str] = []
    start = 0
    while start < len(pieces):
        for end in range(len(pieces), start, -1):
            if end - start == 1:
                found.append(countries.resolve(pieces[start], known))  # raises if unknown
                break
            try:
                found.append(countries.resolve(", ".join(pieces[start:end]), known))
                break
            except UnknownCountry:
                continue
        start = end
    return tuple(dict.fromkeys(found))


def limit_key(secret: str, kind: str, value: str) -> str:
    """A keyed hash of an address or IP, so the attempts table holds neither."""
    return hmac.new(secret.encode(), f"{kind}:{value.lower()}".encode(),
                    hashlib.sha256).hexdigest()


def routes(ctx: Context, env: Environment) -> list[Route]:
    """The sign-up and manage pages of `ctx`, rendered with `env` (the site's templates)."""
    settings = ctx.settings
    vocabulary = ctx.vocabulary
    subtypes = [(k, t.label, SUBTYPE_NOTES.get(k)) for k, t in vocabulary.subtypes.items()]
    therapies = [(k, vocabulary.label(k)) for k in vocabulary.therapy_names]
    days = [(i, name.capitalize()) for i, name in enumerate(WEEKDAYS)]

    def render(request: Request, name: str, status: int = 200, **values: Any) -> Response:
        """A page; one with a form gets its token, and the cookie it is bound to."""
        secret = settings.require_secret()
        nonce = request.cookies.get(COOKIE) or ""
        fresh = len(nonce) < 16
        if fresh:
            nonce = secrets.token_urlsafe(24)
        html = env.get_template(f"site/{name}").render(
            csrf=form_token(secret, nonce), subtypes=subtypes, therapies=therapies,
            days=days, radii=RADII, honeypot=HONEYPOT, **values)
        response = HTMLResponse(html, status_code=status,
                                headers={"Cache-Control": "no-store"})
        if fresh:
            response.set_cookie(COOKIE, nonce, httponly=True, samesite="strict", path="/",
                                secure=settings.public_url.startswith("https:"))
        return response

    def message(title: str, paragraphs: list[str], status: int = 200) -> Response:
        html = env.get_template("site/message.html").render(title=title,
                                                            paragraphs=paragraphs, form=None)
        return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})

    def form_ok(request: Request, form: Mapping[str, Any]) -> bool:
        return form_token_matches(settings.require_secret(), str(form.get("csrf", "")),
                                  request.cookies.get(COOKIE, ""))

    def read(form: Any, *, email: bool, current: Choices | None = None) -> Choices:
        return read_choices(form, form.getlist, subtypes=vocabulary.subtypes,
                            therapies=vocabulary.therapy_names, known=ctx.store.countries(),
                            weekly_day=settings.weekly_day, email=email, current=current)

    def sign_up_form(request: Request, choices: Choices | None = None, status: int = 200,
                     notice: str | None = None) -> Response:
        return render(request, "subscribe.html", status,
                      title="Get e-mails about myositis trials",
                      choices=choices or Choices(weekday=settings.weekly_day), notice=notice)

    def inbox() -> Response:
        return message("Check your inbox", INBOX)

    async def subscribe(request: Request) -> Response:
        if request.method != "POST":
            return sign_up_form(request)
        form = await request.form()
        if not form_ok(request, form):
            return sign_up_form(request, status=400, notice=EXPIRED)
        return await run_in_threadpool(sign_up, request, form)

    def sign_up(request: Request, form: Any) -> Response:
        secret = settings.require_secret()
        now = ctx.clock()
        client = limit_key(secret, "client", request.client.host if request.client else "")
        if subscribers.count_attempts(ctx.db, "client", client, now - timedelta(hours=1)) \
                >= settings.signups_per_client_per_hour:
            return message("Too many attempts", [
                "There have been too many sign-ups from your connection in the last hour. "
                "Nothing was changed; please try again later."], status=429)
        subscribers.record_attempt(ctx.db, "client", client, now)
        if str(form.get(HONEYPOT, "")).strip():
            return inbox()
        choices = read(form, email=True)
        if choices.errors:
            return sign_up_form(request, choices, status=400)
        address = limit_key(secret, "address", choices.email)
        if subscribers.count_attempts(ctx.db, "address", address, now - timedelta(days=1)) \
                >= settings.confirmations_per_address_per_day:
            return inbox()
        try:
            existing: Subscriber | None = subscribers.find(ctx.db, choices.email)
        except NotFound:
            existing = None
        if existing is not None and existing.confirmed_at is not None \
                and existing.unsubscribed_at is None:
            return inbox()
        subscribers.record_attempt(ctx.db, "address", address, now)
        jobs.subscribe(ctx, choices.email, choices.preferences())
        return inbox()

    def subscriber_of(token: str) -> Subscriber:
        """The active subscription a manage token names; BadToken if there is none."""
        parsed = jobs.read_token(ctx, Purpose.MANAGE, token)
        subscriber = subscribers.get(ctx.db, parsed.subscriber_id)
        if subscriber is None or subscriber.email.lower() != parsed.email.lower() \
                or subscriber.unsubscribed_at is not None:
            raise BadToken("This subscription has ended, so there is nothing to change.")
        return subscriber

    def bad_link(request: Request, error: BadToken) -> Response:
        return render(request, "manage.html", 400, title="This link does not work",
                      problem=str(error), choices=Choices(), token="", subscriber=None,
                      notice=None, paused=None)

    def manage_page(request: Request, token: str, subscriber: Subscriber,
                    choices: Choices | None = None, status: int = 200,
                    notice: str | None = None) -> Response:
        paused = subscriber.paused_until
        if paused is not None and as_utc(paused) <= as_utc(ctx.clock()):
            paused = None
        return render(request, "manage.html", status, title="Your myositis trial e-mails",
                      problem=None, token=token, subscriber=subscriber,
                      choices=choices or choices_of(subscriber, settings.weekly_day),
                      notice=notice, paused=long_date(paused.date()) if paused else None)

    async def manage(request: Request) -> Response:
        if request.method != "POST":
            return await run_in_threadpool(show, request,
                                           request.query_params.get("token", ""))
        form = await request.form()
        return await run_in_threadpool(change, request, form)

    def show(request: Request, token: str) -> Response:
        try:
            subscriber = subscriber_of(token)
        except BadToken as error:
            return bad_link(request, error)
        return manage_page(request, token, subscriber)

    def change(request: Request, form: Any) -> Response:
        token = str(form.get("token", ""))
        try:
            subscriber = subscriber_of(token)
        except BadToken as error:
            return bad_link(request, error)
        assert subscriber.id is not None
        if not form_ok(request, form):
            return manage_page(request, token, subscriber, status=400, notice=EXPIRED)
        action = str(form.get("action", ""))
        if action == "save":
            current = choices_of(subscriber, settings.weekly_day)
            choices = read(form, email=False, current=current)
            if choices.errors:
                return manage_page(request, token, subscriber, choices, status=400)
            subscribers.change(ctx.db, subscriber.id,
                               choices.preferences(subscriber.recruiting_only))
            notice = "Your choices are saved."
        elif action == "pause":
            until = ctx.clock() + PAUSE
            subscribers.pause(ctx.db, subscriber.id, until)
            notice = f"Paused: no e-mails until {long_date(until.date())}."
        elif action == "resume":
            subscribers.pause(ctx.db, subscriber.id, None)
            notice = "Your e-mails start again."
        elif action == "unsubscribe":
            subscribers.unsubscribe(ctx.db, subscriber.id, ctx.clock())
            return message("Unsubscribed", [f"{subscriber.email} will receive no more "
                                            "e-mails. You can sign up again at any time."])
        else:
            return manage_page(request, token, subscriber, status=400,
                               notice="Please choose one of the buttons.")
        fresh = subscribers.get(ctx.db, subscriber.id)
        assert fresh is not None
        return manage_page(request, token, fresh, notice=notice)

    return [
        Route("/subscribe", subscribe, methods=["GET", "POST"]),
        Route("/manage", manage, methods=["GET", "POST"]),
    ]
