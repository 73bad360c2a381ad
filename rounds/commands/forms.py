"""Guided forms: ``report`` with no text asks for the details one step at a time.

The form's state is a row keyed by transport, chat and person, so it survives a restart
and each transport (console now, Telegram and Slack later) drives the same steps: the
transport sends the person's answer as text, and a button's command is the answer it
stands for. ``cancel`` leaves at any step; a form left alone expires.
"""

from __future__ import annotations

from rounds.commands import Context, command
from rounds.commands.replies import filed_reply
from rounds.db.models import Form
from rounds.itsm import attachments, forms, incidents
from rounds.itsm.access import Action
from rounds.itsm.context import Env
from rounds.itsm.errors import Invalid
from rounds.reply import Button, Reply

REPORT = "report"
STEPS = ("system", "location", "impact", "urgency", "description", "confirm")
# Where people can send pictures, the report asks for photos before the summary.
PHOTO_STEPS = ("system", "location", "impact", "urgency", "description", "photos", "confirm")
MAX_PHOTOS = 5
DONE_WORDS = {"done", "skip", "no", "完成", "跳过", "没有", "好了"}
IMPACTS = ("I1", "I2", "I3", "I4")
URGENCIES = ("U1", "U2", "U3")
CANCEL_WORDS = {"cancel", "/cancel", "取消", "退出"}
YES_WORDS = {"yes", "y", "ok", "confirm", "是", "确认", "好", "提交", "1"}
SKIP_WORDS = {"skip", "-", "跳过", "无"}
MAX_LOCATION = 100


def start_report(ctx: Context) -> Reply:
    """Begin (or begin again) the guided report for this person in this chat."""
    form = forms.start(ctx.session, ctx.env, owner(ctx), REPORT, STEPS[0])
    question = _question(ctx, form)
    question.text = ctx.t("form.start") + "\n" + question.text
    return question


def owner(ctx: Context) -> forms.Owner:
    return forms.Owner(ctx.via, ctx.chat, ctx.person.name)


def answer(ctx: Context, text: str) -> Reply:
    """Take one answer: advance, ask again with the reason, cancel, or file the report."""
    form = forms.get(ctx.session, owner(ctx), lock=True)
    if form is None:  # finished, cancelled or expired by another message meanwhile
        return Reply(ctx.t("form.gone"))
    text = text.strip()
    if text.lower() in CANCEL_WORDS:
        forms.finish(ctx.session, form)
        return Reply(ctx.t("form.cancelled"))
    if ctx.photos:
        if form.step == "photos":
            return _take_photos(ctx, form)
        question = _question(ctx, form)  # a photo is not the answer to this question
        question.text = ctx.t("form.photo_not_now") + "\n" + question.text
        return question

    try:
        value = parse(ctx.env, form.step, text)
    except Invalid as exc:
        question = _question(ctx, form)
        question.text = ctx.t(exc.key, **exc.params) + "\n" + question.text
        return question

    steps = steps_for(ctx, form)
    if form.step == "photos":
        forms.advance(ctx.env, form, form.data.get("photos", []), steps[steps.index("photos") + 1])
        return _question(ctx, form)
    if form.step != "confirm":
        forms.advance(ctx.env, form, value, steps[steps.index(form.step) + 1])
        return _question(ctx, form)

    data = form.data
    if not forms.finish(ctx.session, form):
        return Reply(ctx.t("form.gone"))
    filed = incidents.report(
        ctx.session, ctx.env, ctx.person, data["description"], via=ctx.via, answers=_answers(data)
    )
    for path in data.get("photos", []):
        attachments.attach(
            ctx.session, ctx.env, filed.incident, path, by=ctx.person.name, via=ctx.via
        )
    return filed_reply(ctx, filed)


def steps_for(ctx: Context, form: Form | None = None) -> tuple[str, ...]:
    """The report's steps: with photos where the chat can send them (or already asked)."""
    at_photos = form is not None and form.step == "photos"
    return PHOTO_STEPS if ctx.accepts_photos or at_photos else STEPS


def _take_photos(ctx: Context, form: Form) -> Reply:
    photos = [*form.data.get("photos", []), *ctx.photos][:MAX_PHOTOS]
    ctx.photos_taken = True
    forms.advance(ctx.env, form, photos, "photos")  # stays at this step, a while longer
    return Reply(
        ctx.t("form.photo_added", count=len(photos)),
        buttons=[Button(ctx.t("form.photos_done"), "done", "primary")],
        choices=True,
    )


def _answers(data: dict) -> incidents.ReportAnswers:
    return incidents.ReportAnswers(
        system=data["system"],
        location=data.get("location"),
        impact=data["impact"],
        urgency=data["urgency"],
    )


def choices(env: Env, step: str) -> list[tuple[str, str]]:
    """The (answer, label) options of a step with fixed answers; [] for free text."""
    if step == "system":
        return [(s.name, s.display or s.name) for s in env.config.systems]
    if step == "impact":
        return [(c, env.words.t(f"form.impact.{c}")) for c in IMPACTS]
    if step == "urgency":
        return [(c, env.words.t(f"form.urgency.{c}")) for c in URGENCIES]
    return []


def check_answers(env: Env, raw: dict[str, str]) -> tuple[dict | None, dict[str, str]]:
    """Validate a whole report at once (a modal): the answers, or a sentence per field."""
    answers: dict = {}
    errors: dict[str, str] = {}
    for step in STEPS[:-1]:
        try:
            answers[step] = parse(env, step, (raw.get(step) or "").strip())
        except Invalid as exc:
            errors[step] = env.words.t(exc.key, **exc.params)
    return (None, errors) if errors else (answers, {})


def file_answers(ctx: Context, answers: dict) -> Reply:
    """File a report whose answers were all given at once (a modal)."""
    filed = incidents.report(
        ctx.session,
        ctx.env,
        ctx.person,
        answers["description"],
        via=ctx.via,
        answers=_answers(answers),
    )
    return filed_reply(ctx, filed)


def _systems(ctx: Context) -> list[tuple[str, str]]:
    return choices(ctx.env, "system")


def _question(ctx: Context, form: Form) -> Reply:
    step = form.step
    if step == "system":
        choices = _systems(ctx)
        lines = [ctx.t("form.ask_system")]
        lines += [f"  {i}. {label}" for i, (_, label) in enumerate(choices, 1)]
        buttons = [Button(label, name) for name, label in choices]
        return Reply("\n".join(lines), buttons=buttons, choices=True)
    if step == "location":
        return Reply(
            ctx.t("form.ask_location"), buttons=[Button(ctx.t("form.skip"), "skip")], choices=True
        )
    if step == "impact":
        lines = [ctx.t("form.ask_impact")]
        lines += [f"  {i}. {ctx.t(f'form.impact.{code}')}" for i, code in enumerate(IMPACTS, 1)]
        buttons = [Button(ctx.t(f"form.impact_short.{code}"), code) for code in IMPACTS]
        return Reply("\n".join(lines), buttons=buttons, choices=True)
    if step == "urgency":
        lines = [ctx.t("form.ask_urgency")]
        lines += [f"  {i}. {ctx.t(f'form.urgency.{c}')}" for i, c in enumerate(URGENCIES, 1)]
        buttons = [Button(ctx.t(f"form.urgency_short.{code}"), code) for code in URGENCIES]
        return Reply("\n".join(lines), buttons=buttons, choices=True)
    if step == "description":
        return Reply(ctx.t("form.ask_description"))
    if step == "photos":
        return Reply(
            ctx.t("form.ask_photos"),
            buttons=[Button(ctx.t("form.photos_done"), "done")],
            choices=True,
        )
    data = form.data
    priority = incidents.assess(ctx.env, data["description"], _answers(data)).priority
    label = dict(_systems(ctx)).get(data["system"], data["system"])
    summary = ctx.t(
        "form.summary",
        system=label,
        location=data.get("location") or "—",
        impact=ctx.t(f"form.impact_short.{data['impact']}"),
        urgency=ctx.t(f"form.urgency_short.{data['urgency']}"),
        priority=priority,
        description=data["description"],
    )
    if data.get("photos"):
        summary += "\n" + ctx.t("form.summary_photos", count=len(data["photos"]))
    return Reply(
        summary,
        buttons=[
            Button(ctx.t("form.confirm"), "yes", "primary"),
            Button(ctx.t("form.cancel"), "cancel", "danger"),
        ],
        choices=True,
    )


def _choice(text: str, options: list[str]) -> str | None:
    """An option by its number (1-based) or its name, in any case."""
    token = text.strip()
    if token.isdigit() and 1 <= int(token) <= len(options):
        return options[int(token) - 1]
    lowered = {o.lower(): o for o in options}
    return lowered.get(token.lower())


def parse(env: Env, step: str, text: str) -> str | None:
    """One step's answer, or Invalid with the sentence that says what is wanted."""
    if step == "system":
        names = [name for name, _ in choices(env, "system")]
        labels = {label.lower(): name for name, label in choices(env, "system")}
        found = _choice(text, names) or labels.get(text.lower())
        if found is None:
            raise Invalid("form.bad_choice", count=len(names))
        return found
    if step == "location":
        if not text or text.lower() in SKIP_WORDS:
            return None
        if len(text) > MAX_LOCATION:
            raise Invalid("form.location_too_long", limit=MAX_LOCATION)
        return text
    if step in ("impact", "urgency"):
        options = list(IMPACTS if step == "impact" else URGENCIES)
        found = _choice(text, options)
        if found is None:
            raise Invalid("form.bad_choice", count=len(options))
        return found
    if step == "description":
        if not text:
            raise Invalid("form.description_needed")
        return text
    if step == "photos":
        if text.lower() not in DONE_WORDS:
            raise Invalid("form.photo_or_done")
        return None
    if text.lower() not in YES_WORDS:
        raise Invalid("form.confirm_or_cancel")
    return "yes"


@command("cancel", action=Action.REPORT, write=False)
def cancel(ctx: Context) -> Reply:
    """Reached only when no form is open: an open form takes ``cancel`` itself."""
    return Reply(ctx.t("form.none"))
