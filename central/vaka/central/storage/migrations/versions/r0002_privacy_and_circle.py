"""The citizens' privacy modes and their circles (contacts, invitations, contact log-ins).

Revision 0002, after 0001.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the privacy modes and the circle's tables."""
    op.create_table(
        "contact_challenges",
        sa.Column("challenge", sa.String(length=200), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("challenge"),
    )
    op.create_table(
        "contact_credentials",
        sa.Column("credential_id", sa.String(length=400), nullable=False),
        sa.Column("contact_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=True),
        sa.Column("sign_count", sa.BigInteger(), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("revoked_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("credential_id"),
    )
    with op.batch_alter_table("contact_credentials", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_contact_credentials_contact_id"), ["contact_id"], unique=False
        )

    op.create_table(
        "contact_invitations",
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("contact_id", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("used_at", sa.Float(), nullable=True),
        sa.Column("withdrawn_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("code_hash"),
    )
    with op.batch_alter_table("contact_invitations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_contact_invitations_contact_id"), ["contact_id"], unique=False
        )

    op.create_table(
        "contact_sessions",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("contact_id", sa.String(length=64), nullable=False),
        sa.Column("stage", sa.String(length=8), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("challenge", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    with op.batch_alter_table("contact_sessions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_contact_sessions_contact_id"), ["contact_id"], unique=False
        )

    op.create_table(
        "contacts",
        sa.Column("contact_id", sa.String(length=64), nullable=False),
        sa.Column("citizen_id", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=120), nullable=False),
        sa.Column("citizen_name", sa.String(length=120), nullable=False),
        sa.Column("relation", sa.String(length=64), nullable=False),
        sa.Column("picture", sa.Text(), nullable=True),
        sa.Column("may_call", sa.Boolean(), nullable=False),
        sa.Column("call_from_min", sa.Integer(), nullable=False),
        sa.Column("call_until_min", sa.Integer(), nullable=False),
        sa.Column("may_be_called", sa.Boolean(), nullable=False),
        sa.Column("auto_answer", sa.Boolean(), nullable=False),
        sa.Column("added_by", sa.String(length=64), nullable=False),
        sa.Column("added_at", sa.Float(), nullable=False),
        sa.Column("removed_at", sa.Float(), nullable=True),
        sa.Column("removed_by", sa.String(length=64), nullable=True),
        sa.Column("open_call_id", sa.String(length=80), nullable=True),
        sa.Column("open_call_unit", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("contact_id"),
    )
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_contacts_citizen_id"), ["citizen_id"], unique=False)

    op.create_table(
        "privacy_modes",
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("since", sa.Float(), nullable=False),
        sa.Column("until", sa.Float(), nullable=False),
        sa.Column("ended_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("device_id"),
    )


def downgrade() -> None:
    """Back to revision 0001."""
    op.drop_table("privacy_modes")
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_contacts_citizen_id"))

    op.drop_table("contacts")
    with op.batch_alter_table("contact_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_contact_sessions_contact_id"))

    op.drop_table("contact_sessions")
    with op.batch_alter_table("contact_invitations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_contact_invitations_contact_id"))

    op.drop_table("contact_invitations")
    with op.batch_alter_table("contact_credentials", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_contact_credentials_contact_id"))

    op.drop_table("contact_credentials")
    op.drop_table("contact_challenges")
