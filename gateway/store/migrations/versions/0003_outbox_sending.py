"""outbox sending: the sender's lease and when a message reached its last state

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 09:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

from gateway.store.schema import UTCDateTime

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('outbox', sa.Column('claimed_until', UTCDateTime(), nullable=True))
    op.add_column('outbox', sa.Column('finished_at', UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('outbox') as batch:
        batch.drop_column('finished_at')
        batch.drop_column('claimed_until')
