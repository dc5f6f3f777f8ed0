"""The schema of release 0.1.0, the last made without migrations: the first revision.

Databases made by that release and earlier ones have these tables already (``create_all`` made
them at start) but no revision: this revision creates only the tables that are missing, with their
indexes, and brings the two tables that changed before migrations existed up to date. Its
tables are frozen here, as they were; later changes are later revisions.
"""

import logging

from alembic import op
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    inspect,
)

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

log = logging.getLogger(__name__)

schema = MetaData()

# ---------------------------------------------------------------- directory

staff = Table(
    "staff",
    schema,
    Column("staff_id", String(64), primary_key=True),
    Column("display_name", String(120), nullable=False),
    Column("role", String(32), nullable=False),
    Column("password_hash", String(200), nullable=False),
    Column("active", Boolean, nullable=False, default=True),
    # The console's language the member chose ("sv", "da", "en"); NULL: the browser's language.
    Column("language", String(8)),
)

staff_auth = Table(
    "staff_auth",
    schema,
    Column("staff_id", String(64), primary_key=True),
    Column("password_changed_at", Float, nullable=False),
    Column("totp_secret", String(256)),  # sealed by vaka.central.secret_box when a key is set
    Column("totp_pending", String(256)),
    Column("totp_enrolled_at", Float),
)

staff_groups = Table(
    "staff_groups",
    schema,
    Column("group_id", String(64), primary_key=True),
    Column("name", String(120), nullable=False),
)

memberships = Table(
    "memberships",
    schema,
    Column("staff_id", String(64), primary_key=True),
    Column("group_id", String(64), primary_key=True),
)

citizens = Table("citizens", schema, Column("citizen_id", String(64), primary_key=True))

citizen_privacy = Table(
    "citizen_privacy",
    schema,
    Column("citizen_id", String(64), primary_key=True),
    Column("night_view", String(16), nullable=False),  # blurred | escalate | clear
)

cohabitants = Table(
    "cohabitants",
    schema,
    Column("citizen_id", String(64), primary_key=True),
    Column("person_id", String(64), primary_key=True),
)

consents = Table(
    "consents",
    schema,
    Column("citizen_id", String(64), primary_key=True),
    Column("person_id", String(64), primary_key=True),
    Column("scope", String(32), primary_key=True),
    Column("given_at", Float, nullable=False),
    Column("withdrawn_at", Float),
)

assignments = Table(
    "unit_assignments",
    schema,
    Column("device_id", String(64), primary_key=True),
    Column("citizen_id", String(64), nullable=False, index=True),
    Column("group_id", String(64)),  # the staff group responsible for the unit (night watch)
    Column("profile", String(16)),
)

permissions = Table(
    "permissions",
    schema,
    Column("group_id", String(64), primary_key=True),
    Column("citizen_id", String(64), primary_key=True),
    Column("purpose", String(32), primary_key=True),
    Column("direction", String(16), primary_key=True),
)

schedules = Table(
    "schedules",
    schema,
    Column("citizen_id", String(64), primary_key=True),
    Column("purpose", String(32), primary_key=True),
    Column("at_minute", Integer, primary_key=True),
    Column("tolerance_min", Integer, nullable=False),
)

# ---------------------------------------------------------------- access: accounts

login_failures = Table(
    "staff_login_failures",
    schema,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("staff_id", String(64), nullable=False, index=True),
    Column("ts", Float, nullable=False),
)

lockouts = Table(
    "staff_lockouts",
    schema,
    Column("staff_id", String(64), primary_key=True),
    Column("until", Float, nullable=False),
)

rate_hits = Table(
    "rate_hits",
    schema,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("scope", String(32), nullable=False),
    Column("key", String(128), nullable=False),
    Column("ts", Float, nullable=False),
    Index("ix_rate_hits_scope_key_ts", "scope", "key", "ts"),
)

# ---------------------------------------------------------------- access: second factor

totp_used = Table(
    "staff_totp_used",
    schema,
    Column("staff_id", String(64), primary_key=True),
    Column("counter", BigInteger, primary_key=True, autoincrement=False),
)

recovery_codes = Table(
    "staff_recovery_codes",
    schema,
    Column("staff_id", String(64), primary_key=True),
    Column("code_hash", String(64), primary_key=True),
    Column("used_at", Float),
)

# ---------------------------------------------------------------- access: sessions

staff_sessions = Table(
    "staff_sessions",
    schema,
    Column("token_hash", String(64), primary_key=True),
    Column("staff_id", String(64), nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("created_at", Float),
    Column("last_seen", Float),
    Column("idle_timeout_s", Float),
    Column("csrf_hash", String(64)),  # console (cookie) sessions only
    Column("address", String(64)),
    Column("ended", String(16)),  # "idle" once ended for inactivity
)

# ---------------------------------------------------------------- audit

audit = Table(
    "audit",
    schema,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("ts", Float, nullable=False),
    Column("kind", String(48), nullable=False, index=True),
    Column("actor", String(64)),
    Column("unit", String(64), index=True),
    Column("purpose", String(32)),
    Column("call_id", String(80), index=True),
    Column("detail", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

# ---------------------------------------------------------------- fleet

units = Table(
    "units",
    schema,
    Column("device_id", String(64), primary_key=True),
    Column("profile", String(16)),
    Column("agent_version", String(64)),
    Column("bdseq", BigInteger, nullable=False, default=0),
    Column("rank", SmallInteger, nullable=False, default=0),
    Column("status", String(16), nullable=False),
    Column("status_since", Float, nullable=False),
    Column("first_seen", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
)

health = Table(
    "health",
    schema,
    Column("device_id", String(64), primary_key=True),
    Column("sent_at", Float, nullable=False),
    Column("received_at", Float, nullable=False),
    Column("payload", Text, nullable=False),
)

health_history = Table(
    "health_history",
    schema,
    Column("device_id", String(64), primary_key=True),
    Column("slot", Integer, primary_key=True, autoincrement=False),
    Column("sent_at", Float, nullable=False),
    Column("received_at", Float, nullable=False),
    Column("payload", Text, nullable=False),
)

unit_lifecycle = Table(
    "unit_lifecycle",
    schema,
    Column("device_id", String(64), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("since", Float, nullable=False),
    Column("actor", String(64)),
    Column("reason", String(200)),
)

events = Table(
    "events",
    schema,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # The unit's message id: every central instance receives every event; the first to store it
    # wins and audits it, the others find it there.
    Column("message_id", String(64), nullable=False, unique=True),
    Column("device_id", String(64), nullable=False, index=True),
    Column("sent_at", Float, nullable=False),
    Column("received_at", Float, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("detail", Text, nullable=False),
)

# ---------------------------------------------------------------- units: enrolment

enrolments = Table(
    "enrolments",
    schema,
    Column("code", String(16), primary_key=True),
    Column("csr", Text, nullable=False),
    Column("profile", String(16), nullable=False),
    Column("agent_version", String(64)),
    Column("first_seen", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    Column("state", String(16), nullable=False),  # pending, approved
    Column("unit_id", String(64)),
    Column("approved_by", String(64)),
    Column("approved_at", Float),
)

# ---------------------------------------------------------------- units: certificates

certificates = Table(
    "certificates",
    schema,
    Column("serial", String(48), primary_key=True),  # hex
    Column("cn", String(64), nullable=False, index=True),
    Column("kind", String(16), nullable=False),  # unit, central, claim, takeover
    Column("not_after", Float, nullable=False),
    Column("issued_at", Float, nullable=False),
    Column("revoked_at", Float),
    Column("reason", String(200)),
)

# ---------------------------------------------------------------- calls: duty

duty = Table(
    "duty",
    schema,
    Column("staff_id", String(64), primary_key=True),
    Column("on_since", Float, nullable=False),
    Column("ring_instance", String(64)),  # the central instance holding the ring socket
    Column("ring_seen_at", Float),  # when that instance last said the socket is open
)

# ---------------------------------------------------------------- calls: citizens' requests

citizen_call_requests = Table(
    "citizen_call_requests",
    schema,
    Column("request_id", String(80), primary_key=True),
    Column("unit", String(64), nullable=False),
    Column("citizen", String(64)),
    Column("groups", String(400), nullable=False),  # comma-separated group ids
    Column("created_at", Float, nullable=False),
    Column("created_by", String(64), nullable=False),  # the central instance
    Column("state", String(16), nullable=False),  # ringing accepted no_staff unanswered cancelled
    Column("accepted_by", String(64)),
    Column("accepted_name", String(120)),
    Column("accepted_at", Float),
    Column("reason", String(200)),
)

escalations = Table(
    "escalations",
    schema,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False, index=True),
    Column("unit", String(64), nullable=False),
    Column("citizen", String(64)),
    Column("group", String(400)),  # comma-separated group ids
    Column("reason", String(200), nullable=False),
    Column("request_id", String(80)),
)

# ---------------------------------------------------------------- alerts

alerts = Table(
    "alerts",
    schema,
    Column("id", String(36), primary_key=True),
    Column("unit", String(64), nullable=False),
    Column("citizen", String(64), nullable=False),
    Column("group_id", String(64)),
    Column("check_at", BigInteger, nullable=False),  # the scheduled check (Unix time)
    Column("check_until", BigInteger, nullable=False),  # its window closes
    Column("status", String(16), nullable=False),  # the unit's status when raised
    Column("reasons", Text, nullable=False),  # JSON list
    Column("raised_at", Float, nullable=False),
    Column("cleared_at", Float, index=True),
    Column("cleared_reason", String(64)),
    UniqueConstraint("unit", "check_at", name="uq_alerts_unit_check"),
)

# ---------------------------------------------------------------- messages

messages = Table(
    "messages",
    schema,
    Column("mid", String(64), primary_key=True),
    Column("unit", String(64), nullable=False, index=True),
    Column("citizen", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("text", Text, nullable=False),
    Column("has_picture", Boolean, nullable=False),
    Column("sender", String(64), nullable=False),
    Column("send_at", Float, nullable=False, index=True),
    Column("exp", Float, nullable=False),
    Column("ack_within_s", Integer, nullable=False),
    Column("status", String(16), nullable=False, index=True),
    Column("updated_at", Float, nullable=False),
    Column("reason", String(200)),
    # The signed message until it is sent (then cleared: no picture kept longer than needed).
    Column("token", Text),
)


def upgrade() -> None:
    """Create what is missing; mend the sessions and staff tables of older databases."""
    bind = op.get_bind()
    existing = set(inspect(bind).get_table_names())
    if "staff_sessions" in existing:
        have = {c["name"] for c in inspect(bind).get_columns("staff_sessions")}
        if not {c.name for c in staff_sessions.columns} <= have:
            # sessions from before the idle time-out: dropped, everyone logs in again
            log.warning("staff_sessions table is from an older version: recreating it")
            op.drop_table("staff_sessions")
            existing.discard("staff_sessions")
    if "staff" in existing and "language" not in {
        c["name"] for c in inspect(bind).get_columns("staff")
    }:
        log.warning("staff table is from an older version: adding the language column")
        with op.batch_alter_table("staff") as batch:
            batch.add_column(Column("language", String(8)))
    for table in schema.sorted_tables:
        if table.name not in existing:
            table.create(bind)


def downgrade() -> None:
    """Drop every table (the whole schema: nothing comes before this revision)."""
    bind = op.get_bind()
    for table in reversed(schema.sorted_tables):
        table.drop(bind, checkfirst=True)
