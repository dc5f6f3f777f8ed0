"""Every table of central on one ``MetaData``, grouped by the room that owns it.

The rooms query these tables with SQLAlchemy Core; none defines a table of its own, so what
exists in the database never depends on which module was imported first. The database gets them
through the migrations (``migrations/versions/``, run by :mod:`vaka.central.storage.migrate`);
a change here needs a new revision, and ``make lint`` checks that the two agree
(``scripts/check_migrations.py``).
"""

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
)

metadata = MetaData()

# ---------------------------------------------------------------- directory

staff = Table(
    "staff",
    metadata,
    Column("staff_id", String(64), primary_key=True),
    Column("display_name", String(120), nullable=False),
    Column("role", String(32), nullable=False),
    Column("password_hash", String(200), nullable=False),
    Column("active", Boolean, nullable=False, default=True),
    # The console's language the member chose ("sv", "da", "en"); NULL: the browser's language.
    Column("language", String(8)),
)

#: Log-in state beside each staff account (see :mod:`vaka.central.accounts`): when the password
#: was last set, the TOTP secret (confirmed or waiting for its first code).
staff_auth = Table(
    "staff_auth",
    metadata,
    Column("staff_id", String(64), primary_key=True),
    Column("password_changed_at", Float, nullable=False),
    Column("totp_secret", String(256)),  # sealed by vaka.central.secret_box when a key is set
    Column("totp_pending", String(256)),
    Column("totp_enrolled_at", Float),
)

staff_groups = Table(
    "staff_groups",
    metadata,
    Column("group_id", String(64), primary_key=True),
    Column("name", String(120), nullable=False),
)

memberships = Table(
    "memberships",
    metadata,
    Column("staff_id", String(64), primary_key=True),
    Column("group_id", String(64), primary_key=True),
)

citizens = Table("citizens", metadata, Column("citizen_id", String(64), primary_key=True))

# A citizen's privacy choices (see docs/privacy.md); a table of its own, so that databases made
# before it gained it without a changed column.
citizen_privacy = Table(
    "citizen_privacy",
    metadata,
    Column("citizen_id", String(64), primary_key=True),
    Column("night_view", String(16), nullable=False),  # blurred | escalate | clear
)

# Who else lives in a citizen's home and may appear in the picture (pseudonyms, like citizens).
cohabitants = Table(
    "cohabitants",
    metadata,
    Column("citizen_id", String(64), primary_key=True),
    Column("person_id", String(64), primary_key=True),
)

# Consent per citizen and per cohabitant, per scope (night_check, video_visit, break_glass).
# ``person_id`` is "citizen" for the citizen themself.
consents = Table(
    "consents",
    metadata,
    Column("citizen_id", String(64), primary_key=True),
    Column("person_id", String(64), primary_key=True),
    Column("scope", String(32), primary_key=True),
    Column("given_at", Float, nullable=False),
    Column("withdrawn_at", Float),
)

# The citizen's privacy mode per unit, as the unit reported it ("I have visitors", "I am
# away"): the camera is blocked from ``since`` to ``until`` unless ``ended_at`` came first.
privacy_modes = Table(
    "privacy_modes",
    metadata,
    Column("device_id", String(64), primary_key=True),
    Column("mode", String(16), nullable=False),
    Column("since", Float, nullable=False),
    Column("until", Float, nullable=False),
    Column("ended_at", Float),
)

assignments = Table(
    "unit_assignments",
    metadata,
    Column("device_id", String(64), primary_key=True),
    Column("citizen_id", String(64), nullable=False, index=True),
    Column("group_id", String(64)),  # the staff group responsible for the unit (night watch)
    Column("profile", String(16)),
)

permissions = Table(
    "permissions",
    metadata,
    Column("group_id", String(64), primary_key=True),
    Column("citizen_id", String(64), primary_key=True),
    Column("purpose", String(32), primary_key=True),
    Column("direction", String(16), primary_key=True),
)

schedules = Table(
    "schedules",
    metadata,
    Column("citizen_id", String(64), primary_key=True),
    Column("purpose", String(32), primary_key=True),
    Column("at_minute", Integer, primary_key=True),
    Column("tolerance_min", Integer, nullable=False),
)

# ---------------------------------------------------------------- access: accounts

login_failures = Table(
    "staff_login_failures",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("staff_id", String(64), nullable=False, index=True),
    Column("ts", Float, nullable=False),
)

lockouts = Table(
    "staff_lockouts",
    metadata,
    Column("staff_id", String(64), primary_key=True),
    Column("until", Float, nullable=False),
)

#: one row per counted hit of a rate limit (``scope``: what is limited, ``key``: for whom, e.g.
#: the client address); in the database so that every central instance counts the same hits
rate_hits = Table(
    "rate_hits",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("scope", String(32), nullable=False),
    Column("key", String(128), nullable=False),
    Column("ts", Float, nullable=False),
    Index("ix_rate_hits_scope_key_ts", "scope", "key", "ts"),
)

# ---------------------------------------------------------------- access: second factor

totp_used = Table(
    "staff_totp_used",
    metadata,
    Column("staff_id", String(64), primary_key=True),
    Column("counter", BigInteger, primary_key=True, autoincrement=False),
)

recovery_codes = Table(
    "staff_recovery_codes",
    metadata,
    Column("staff_id", String(64), primary_key=True),
    Column("code_hash", String(64), primary_key=True),
    Column("used_at", Float),
)

# ---------------------------------------------------------------- access: sessions

staff_sessions = Table(
    "staff_sessions",
    metadata,
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
    metadata,
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
    metadata,
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
    metadata,
    Column("device_id", String(64), primary_key=True),
    Column("sent_at", Float, nullable=False),
    Column("received_at", Float, nullable=False),
    Column("payload", Text, nullable=False),
)

#: A ring of recent health samples per unit for its page: ``slot`` is the sample's period
#: (``[fleet] health_history_period_s``) modulo the ring's size, so each unit keeps at most
#: ``health_history_slots`` rows (the newest sample of each period) and nothing needs pruning.
health_history = Table(
    "health_history",
    metadata,
    Column("device_id", String(64), primary_key=True),
    Column("slot", Integer, primary_key=True, autoincrement=False),
    Column("sent_at", Float, nullable=False),
    Column("received_at", Float, nullable=False),
    Column("payload", Text, nullable=False),
)

#: Each unit's one lifecycle state (see :mod:`vaka.central.fleet.lifecycle`): enrolling, active,
#: suspended, revoked, decommissioned. A unit without a row is active (it was provisioned
#: outside central's enrolment, or before central kept lifecycles).
unit_lifecycle = Table(
    "unit_lifecycle",
    metadata,
    Column("device_id", String(64), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("since", Float, nullable=False),
    Column("actor", String(64)),
    Column("reason", String(200)),
)

events = Table(
    "events",
    metadata,
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
    metadata,
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
    metadata,
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
    metadata,
    Column("staff_id", String(64), primary_key=True),
    Column("on_since", Float, nullable=False),
    Column("ring_instance", String(64)),  # the central instance holding the ring socket
    Column("ring_seen_at", Float),  # when that instance last said the socket is open
)

# ---------------------------------------------------------------- calls: citizens' requests

citizen_call_requests = Table(
    "citizen_call_requests",
    metadata,
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
    # The TV's call to one of the citizen's contacts (the contact's id); none for a call to
    # the staff. ``rung_at``: when a central instance first rang the contact's page.
    Column("callee", String(64)),
    Column("rung_at", Float),
)

escalations = Table(
    "escalations",
    metadata,
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
    metadata,
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
    metadata,
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


# ---------------------------------------------------------------- circle: a citizen's contacts

#: Relatives, friends and other citizens who may call a citizen's TV (see
#: :mod:`vaka.central.circle.contacts`). ``citizen_name`` is the citizen as this contact knows
#: them ("Grandma Greta"), shown on the contact's page only; the directory keeps pseudonyms.
contacts = Table(
    "contacts",
    metadata,
    Column("contact_id", String(64), primary_key=True),
    Column("citizen_id", String(64), nullable=False, index=True),
    Column("display_name", String(120), nullable=False),
    Column("citizen_name", String(120), nullable=False),
    Column("relation", String(64), nullable=False),
    Column("picture", Text),  # a data: URL (PNG or JPEG), checked on the way in
    Column("may_call", Boolean, nullable=False),
    Column("call_from_min", Integer, nullable=False),  # local minutes after midnight
    Column("call_until_min", Integer, nullable=False),
    Column("may_be_called", Boolean, nullable=False),
    Column("auto_answer", Boolean, nullable=False),
    Column("added_by", String(64), nullable=False),
    Column("added_at", Float, nullable=False),
    Column("removed_at", Float),
    Column("removed_by", String(64)),
    # the contact's call in progress, so that any instance removing the contact can end it
    Column("open_call_id", String(80)),
    Column("open_call_unit", String(64)),
    # a contact of kind "citizen": the other citizen, whose TV calls and is called from this
    # citizen's TV (no invitation, no log-in); ``None`` for a person with the contact's page
    Column("peer_citizen", String(64), index=True),
)

#: Single-use invitations handed over in person or read over the phone (only the code's hash).
contact_invitations = Table(
    "contact_invitations",
    metadata,
    Column("code_hash", String(64), primary_key=True),
    Column("contact_id", String(64), nullable=False, index=True),
    Column("created_by", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("used_at", Float),
    Column("withdrawn_at", Float),
)

#: A contact's ways to log in: passkeys (WebAuthn public keys) and a password (argon2).
contact_credentials = Table(
    "contact_credentials",
    metadata,
    Column("credential_id", String(400), primary_key=True),  # base64url; "password:<contact>"
    Column("contact_id", String(64), nullable=False, index=True),
    Column("kind", String(16), nullable=False),  # passkey | password
    Column("public_key", Text),
    Column("sign_count", BigInteger, nullable=False, default=0),
    Column("password_hash", String(200)),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float),
)

#: Contacts' sessions (only token hashes), apart from staff sessions: a contact's token is
#: unknown to every staff route, a staff token to every contact route. ``stage`` is
#: ``enrol`` after an invitation was redeemed (may only register a credential) or ``full``.
#: ``challenge`` holds the WebAuthn challenge of a ceremony under way.
contact_sessions = Table(
    "contact_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("contact_id", String(64), nullable=False, index=True),
    Column("stage", String(8), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("challenge", String(200)),
)

#: WebAuthn log-in challenges handed out before anyone is known (one row each, short-lived).
contact_challenges = Table(
    "contact_challenges",
    metadata,
    Column("challenge", String(200), primary_key=True),
    Column("expires_at", Float, nullable=False),
)

# ---------------------------------------------------------------- updates

#: System update roll-outs: one bundle (version, SHA-256, size, where it is fetched) for a set
#: of units, ordered in stages: ``percent`` of the target first, the rest when staff say "all".
rollouts = Table(
    "rollouts",
    metadata,
    Column("rollout_id", Integer, primary_key=True, autoincrement=True),
    Column("version", String(64), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("url", String(1024), nullable=False),
    Column("percent", SmallInteger, nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("all_at", Float),  # when the rest of the target was ordered
)

#: Each target unit of a roll-out and how far it got: ``held`` (not ordered yet), ``ordered``,
#: then the unit's last reported step (``waiting``, ``downloaded``, ``refused``, ``installed``,
#: ``rebooting``, ``running``), with the reason of a refusal or a wait.
rollout_units = Table(
    "rollout_units",
    metadata,
    Column("rollout_id", Integer, primary_key=True),
    Column("device_id", String(64), primary_key=True),
    Column("stage", SmallInteger, nullable=False),  # 1: the first percentage, 2: the rest
    Column("state", String(16), nullable=False),
    Column("reason", String(200)),
    Column("updated_at", Float, nullable=False),
)
