"""A contact of kind "citizen": a contact row may name another citizen, whose TV calls and is
called from this citizen's TV.

Revision 0005, after 0004.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``peer_citizen`` (indexed) to the contacts."""
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("peer_citizen", sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_contacts_peer_citizen"), ["peer_citizen"])


def downgrade() -> None:
    """Back to revision 0004."""
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_contacts_peer_citizen"))
        batch_op.drop_column("peer_citizen")
