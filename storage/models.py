"""Tortoise models.

Datetimes are timezone-aware UTC (Tortoise runs with use_tz=True, timezone="UTC"); every default
is a callable or an auto_now flag, evaluated per row, never at import.

After changing anything here, generate a migration: `python -m storage.makemigrations NAME`
(see storage/makemigrations.py); a test fails while models and migrations disagree.

Deletion policy: history is never lost silently. Tasks are soft-deleted (`withdrawn_at`) because
reports point at them; reports, and the departments and liaisons they name, are protected with
RESTRICT so deleting them fails loudly instead of cascading into the report history.
"""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model

from bot.plan_model import Comparator, DepartmentKind, Role
from storage.enums import LiaisonRole, ReportStatus

# Enum columns get an explicit width and an empty description: Tortoise would otherwise derive
# both from the enum members (the description becomes a column comment), and adding a member
# would then need a migration that SQLite cannot run (aerich cannot alter a column on SQLite).
_ENUM_LENGTH = 20


class Plan(Model):
    """One policy document (方案 / 实施意见)."""

    id = fields.IntField(primary_key=True)
    title = fields.CharField(max_length=500)
    doc_number = fields.CharField(max_length=100, null=True, unique=True)  # 长政办发〔2023〕65号
    issuer = fields.CharField(max_length=255, null=True)
    issued_on = fields.DateField(null=True)
    horizon = fields.DateField()
    # Reporting rule for tasks without their own cycle: a Cycle value ("monthly") or an RRULE.
    # The importer never sets it; the coordinator and the scheduler own it.
    default_cycle = fields.CharField(max_length=255, null=True)
    source_sha256 = fields.CharField(max_length=64)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    tasks: fields.ReverseRelation[Task]
    targets: fields.ReverseRelation[Target]
    requirements: fields.ReverseRelation[Requirement]

    class Meta:
        table = "plans"


class Department(Model):
    """A responsible unit (责任单位), possibly a group such as 各乡镇<街道、园区>."""

    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=100, unique=True)
    aliases: fields.Field[list[str]] = fields.JSONField(default=list)
    kind = fields.CharEnumField(
        DepartmentKind, max_length=_ENUM_LENGTH, default=DepartmentKind.AGENCY, description=""
    )
    created_at = fields.DatetimeField(auto_now_add=True)

    assignments: fields.ReverseRelation[Assignment]
    liaisons: fields.ReverseRelation[Liaison]
    invitations: fields.ReverseRelation[InviteToken]

    class Meta:
        table = "departments"


class Task(Model):
    """One numbered item of a plan (任务)."""

    id = fields.IntField(primary_key=True)
    plan: fields.ForeignKeyRelation[Plan] = fields.ForeignKeyField(
        "models.Plan", related_name="tasks", on_delete=fields.CASCADE
    )
    code = fields.CharField(max_length=32)  # numbering path, stable across revisions: "2.1.3"
    position = fields.IntField()  # document order
    section = fields.CharField(max_length=255)
    title = fields.CharField(max_length=255)
    text = fields.TextField()
    deadline = fields.DateField()
    cycle = fields.CharField(max_length=255, null=True)  # only when the task states its own
    # Set when a revised document drops the task; cleared when a later revision restores it.
    withdrawn_at = fields.DatetimeField(null=True)

    plan_id: int
    assignments: fields.ReverseRelation[Assignment]
    targets: fields.ReverseRelation[Target]
    reports: fields.ReverseRelation[Report]

    class Meta:
        table = "tasks"
        unique_together = (("plan", "code"),)
        indexes = (("plan_id", "position"),)


class Assignment(Model):
    """A department's role (牵头 lead / 配合 support) on a task."""

    id = fields.IntField(primary_key=True)
    task: fields.ForeignKeyRelation[Task] = fields.ForeignKeyField(
        "models.Task", related_name="assignments", on_delete=fields.CASCADE
    )
    department: fields.ForeignKeyRelation[Department] = fields.ForeignKeyField(
        "models.Department", related_name="assignments", on_delete=fields.RESTRICT, db_index=True
    )
    role = fields.CharEnumField(Role, max_length=_ENUM_LENGTH, description="")
    position = fields.IntField()  # order of the unit in the task's responsibility clause

    task_id: int
    department_id: int

    class Meta:
        table = "assignments"
        unique_together = (("task", "department"),)


class Target(Model):
    """A measurable goal (指标): of the plan when `task` is null, else of that task."""

    id = fields.IntField(primary_key=True)
    plan: fields.ForeignKeyRelation[Plan] = fields.ForeignKeyField(
        "models.Plan", related_name="targets", on_delete=fields.CASCADE
    )
    task: fields.ForeignKeyNullableRelation[Task] = fields.ForeignKeyField(
        "models.Task", related_name="targets", null=True, on_delete=fields.CASCADE
    )
    position = fields.IntField()  # order within its owner (the plan's goals, or one task)
    text = fields.TextField()
    metric = fields.CharField(max_length=255)
    value = fields.DecimalField(max_digits=20, decimal_places=4)
    unit = fields.CharField(max_length=32)
    comparator = fields.CharEnumField(Comparator, max_length=_ENUM_LENGTH, description="")
    deadline = fields.DateField(null=True)
    baseline = fields.DecimalField(max_digits=20, decimal_places=4, null=True)
    # Set when a revision drops or re-units a target that has reported values: reports keep
    # pointing at it (Report.values), so it is withdrawn, never deleted. Readers skip it.
    withdrawn_at = fields.DatetimeField(null=True)

    plan_id: int
    task_id: int | None

    class Meta:
        table = "targets"
        indexes = (("plan_id", "task_id", "position"),)


class Requirement(Model):
    """A plan requirement without a responsible unit, such as a 保障措施 item."""

    id = fields.IntField(primary_key=True)
    plan: fields.ForeignKeyRelation[Plan] = fields.ForeignKeyField(
        "models.Plan", related_name="requirements", on_delete=fields.CASCADE
    )
    code = fields.CharField(max_length=32)
    position = fields.IntField()
    section = fields.CharField(max_length=255)
    title = fields.CharField(max_length=255)
    text = fields.TextField()

    plan_id: int

    class Meta:
        table = "requirements"
        unique_together = (("plan", "code"),)


class Liaison(Model):
    """A person the bot knows: a department's liaison (联络员), a coordinator or an observer."""

    id = fields.IntField(primary_key=True)
    telegram_user_id = fields.BigIntField(unique=True)
    full_name = fields.CharField(max_length=255)
    username = fields.CharField(max_length=64, null=True)
    department: fields.ForeignKeyNullableRelation[Department] = fields.ForeignKeyField(
        "models.Department",
        related_name="liaisons",
        null=True,
        on_delete=fields.SET_NULL,
        db_index=True,
    )
    role = fields.CharEnumField(
        LiaisonRole,
        max_length=_ENUM_LENGTH,
        default=LiaisonRole.LIAISON,
        description="",
    )
    locale = fields.CharField(max_length=16, null=True)
    # Telegram's language_code as last seen (the actor middleware writes it only when it
    # changes): the language of unprompted messages to someone who chose none with /lang.
    language_code = fields.CharField(max_length=16, null=True)
    active = fields.BooleanField(default=True)
    # A department may have several liaisons: one lead (主联络员) and deputies. The first to join
    # leads; when the lead leaves, the deputy who joined earliest takes over (storage.onboarding).
    is_lead = fields.BooleanField(default=False)
    bound_at = fields.DatetimeField(null=True)  # when they joined their current department
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    department_id: int | None
    reports: fields.ReverseRelation[Report]

    class Meta:
        table = "liaisons"


class Report(Model):
    """A liaison's progress report (进度报送) on one task.

    `values`: [{"target_id": int, "value": "12.5"}] (decimals as strings, exact);
    `attachments`: [{"kind": "photo" | "document", "file_id": str}].
    Unique (chat_id, message_id): Telegram may deliver an update twice; the second insert fails.
    """

    id = fields.IntField(primary_key=True)
    task: fields.ForeignKeyRelation[Task] = fields.ForeignKeyField(
        "models.Task", related_name="reports", on_delete=fields.RESTRICT
    )
    department: fields.ForeignKeyRelation[Department] = fields.ForeignKeyField(
        "models.Department", related_name="reports", on_delete=fields.RESTRICT
    )
    liaison: fields.ForeignKeyRelation[Liaison] = fields.ForeignKeyField(
        "models.Liaison", related_name="reports", on_delete=fields.RESTRICT
    )
    status = fields.CharEnumField(ReportStatus, max_length=_ENUM_LENGTH, description="")
    text = fields.TextField(default="")
    values: fields.Field[list[dict]] = fields.JSONField(default=list)
    attachments: fields.Field[list[dict]] = fields.JSONField(default=list)
    chat_id = fields.BigIntField()
    message_id = fields.BigIntField(null=True)
    cycle_key = fields.CharField(max_length=32, null=True)  # the cycle it answers: "2026-11"
    created_at = fields.DatetimeField(auto_now_add=True)
    edited_at = fields.DatetimeField(null=True)
    withdrawn_at = fields.DatetimeField(null=True)

    task_id: int
    department_id: int
    liaison_id: int

    class Meta:
        table = "reports"
        unique_together = (("chat_id", "message_id"),)
        indexes = (
            ("task_id", "created_at"),  # a task's latest reports
            ("department_id", "cycle_key"),  # who has reported for this cycle (nudges)
            # The weekly summary's latest report of every unit, read from the index alone: its
            # grouping walks it in order, and each unit's newest entry carries what the summary
            # shows (storage.summary._LATEST_SQL).
            ("task_id", "department_id", "withdrawn_at", "created_at", "status", "liaison_id"),
        )


class ReportPart(Model):
    """One Telegram message a report's text came from.

    A report sent in several messages has several parts, in order. Editing that message updates
    this part; the report's text is the parts joined (bot.reports.compose_text). Unique
    (chat_id, message_id) like Report.
    """

    id = fields.IntField(primary_key=True)
    report: fields.ForeignKeyRelation[Report] = fields.ForeignKeyField(
        "models.Report", related_name="parts", on_delete=fields.CASCADE
    )
    chat_id = fields.BigIntField()
    message_id = fields.BigIntField()
    position = fields.IntField()
    text = fields.TextField()

    report_id: int

    class Meta:
        table = "report_parts"
        unique_together = (("chat_id", "message_id"),)


class InviteToken(Model):
    """A single-use invitation to join a department as its liaison; only its SHA-256 is stored."""

    id = fields.IntField(primary_key=True)
    # The token itself is shown once and never stored: a copy of the database holds no live
    # invitation.
    token_sha256 = fields.CharField(max_length=64, unique=True)
    department: fields.ForeignKeyRelation[Department] = fields.ForeignKeyField(
        "models.Department", related_name="invitations", on_delete=fields.CASCADE
    )
    as_lead = fields.BooleanField(default=False)  # the invitee becomes the department's lead
    created_by = fields.BigIntField(null=True)  # Telegram user id; null when made with the CLI
    created_at = fields.DatetimeField(auto_now_add=True)
    expires_at = fields.DatetimeField()
    used_at = fields.DatetimeField(null=True)
    used_by = fields.BigIntField(null=True)  # Telegram user id of whoever redeemed it
    # Set when its creator lost coordinator rights (/revoke): it stops working, the row stays as
    # history (expires_at keeps the validity it was made with).
    revoked_at = fields.DatetimeField(null=True)

    department_id: int

    class Meta:
        table = "invite_tokens"


class InviteAttempt(Model):
    """A failed `/start TOKEN` (unknown, used, expired token): the attempt limit counts these.

    Rows older than the limit's window are pruned whenever one is added.
    """

    id = fields.IntField(primary_key=True)
    telegram_user_id = fields.BigIntField()
    created_at = fields.DatetimeField()  # set by the caller (storage.onboarding), always UTC

    class Meta:
        table = "invite_attempts"
        indexes = (("telegram_user_id", "created_at"), ("created_at",))


class PendingUpdate(Model):
    """An update taken from Telegram and not yet handled: the polling inbox (storage.inbox).

    Written before getUpdates confirms the update to Telegram, deleted once it was handled, so
    an update in flight when the process stops (SIGTERM past the grace period, kill -9) is
    handled after the restart from here. `payload` is the update's JSON as the Bot API sends it.
    """

    update_id = fields.BigIntField(primary_key=True)
    payload = fields.TextField()
    received_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "pending_updates"


class BotSetting(Model):
    """State the bot learns while running: its username, the coordination group (key/value)."""

    key = fields.CharField(max_length=64, primary_key=True)
    value = fields.TextField()
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "bot_settings"


# Delivery ledger (outbox) ---------------------------------------------------------------------
# The enums live here rather than in storage/enums.py only to keep this change in one file.


class DeliveryKind(StrEnum):
    PROMPT = "prompt"  # 进度提示
    REMINDER = "reminder"  # 临期提醒
    NUDGE = "nudge"  # 催报
    ESCALATION = "escalation"  # 通报 in the coordination group
    SUMMARY = "summary"  # 周报
    NOTICE = "notice"  # a note to coordinators, e.g. a chat the bot can no longer reach
    NOTIFICATION = "notification"  # to a person, of what another did (bot.notices)


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # waiting for next_attempt_at
    SENDING = "sending"  # claimed by the sender; a crash leaves it here until start-up resets it
    SENT = "sent"
    FAILED = "failed"  # gave up: unreachable (403), rejected (400) or out of attempts
    EXPIRED = "expired"  # found due later than the staleness window allows: never sent
    CANCELLED = "cancelled"  # no longer needed (a nudge for a department that has reported)


class Delivery(Model):
    """One scheduled outgoing message: the outbox the sender works through (storage.deliveries).

    `key` is the idempotency key: planning the same send twice never makes a second row, and a
    row is sent at most once except when a crash hits between Telegram's answer and `mark_sent`,
    or when Telegram performed a try whose answer was lost (counted in `uncertain_attempts`).
    `payload` stays small: the locale and ids the renderer needs.
    """

    id = fields.IntField(primary_key=True)
    kind = fields.CharEnumField(DeliveryKind, max_length=_ENUM_LENGTH, description="")
    key = fields.CharField(max_length=255, unique=True)
    chat_id = fields.BigIntField()
    liaison: fields.ForeignKeyNullableRelation[Liaison] = fields.ForeignKeyField(
        "models.Liaison", related_name="deliveries", null=True, on_delete=fields.SET_NULL
    )
    department: fields.ForeignKeyNullableRelation[Department] = fields.ForeignKeyField(
        "models.Department", related_name="deliveries", null=True, on_delete=fields.SET_NULL
    )
    task: fields.ForeignKeyNullableRelation[Task] = fields.ForeignKeyField(
        "models.Task", related_name="deliveries", null=True, on_delete=fields.SET_NULL
    )
    cycle_key = fields.CharField(max_length=32, null=True)
    due_at = fields.DatetimeField()  # when it was meant to go out
    status = fields.CharEnumField(
        DeliveryStatus, max_length=_ENUM_LENGTH, default=DeliveryStatus.PENDING, description=""
    )
    attempts = fields.IntField(default=0)  # tries that Telegram answered or that failed (not 429)
    next_attempt_at = fields.DatetimeField()  # due_at at first, later after a retry's backoff
    claim_token = fields.CharField(max_length=32, null=True)  # which claim moved it to sending
    # Who holds a `sending` row (the sender's instance id) and until when; the holder renews it.
    # Start-up takes back only expired claims, or all others' under the run lease (their owner
    # is dead: storage.lease).
    claimed_by = fields.CharField(max_length=32, null=True)
    claim_expires_at = fields.DatetimeField(null=True)
    # Tries that ended in a network error or timeout after the request went out: Telegram may
    # have delivered the message anyway, so a later successful try may be a duplicate.
    uncertain_attempts = fields.IntField(default=0)
    last_error = fields.TextField(null=True)
    message_id = fields.BigIntField(null=True)  # Telegram's id of its (first) message once sent
    parts_sent = fields.IntField(default=0)  # a long send (summary) goes out as several messages
    sent_at = fields.DatetimeField(null=True)
    payload: fields.Field[dict] = fields.JSONField(default=dict)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    liaison_id: int | None
    department_id: int | None
    task_id: int | None

    class Meta:
        table = "deliveries"
        indexes = (
            ("status", "next_attempt_at"),  # what is due (claim, next wake-up)
            ("status", "due_at"),  # what is stale (expiry)
            ("status", "updated_at"),  # what expired or failed lately (weekly summary)
        )
