"""The TV calls one of the citizen's contacts: the request names the contact and when a central
instance first rang the contact's page.

Revision 0004, after 0003.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``callee`` and ``rung_at`` to the call requests."""
    with op.batch_alter_table("citizen_call_requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("callee", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("rung_at", sa.Float(), nullable=True))


def downgrade() -> None:
    """Back to revision 0003."""
    with op.batch_alter_table("citizen_call_requests", schema=None) as batch_op:
        batch_op.drop_column("rung_at")
        batch_op.drop_column("callee")
