"""mailbox handoffs: what a listener in front of the mailboxes handed on, per recipient, so that an MTA's
retry is not delivered twice; and on each intake row whether the mailbox already has the message

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 16:30:00.000000
"""

import sqlalchemy as sa
from alembic import op

from gateway.store.schema import UTCDateTime

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'handoffs',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('digest', sa.String(length=64), nullable=False),
        sa.Column('recipient', sa.String(length=320), nullable=False),
        sa.Column('delivered_at', UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('digest', 'recipient'),
    )
    op.create_index('ix_handoffs_delivered_at', 'handoffs', ['delivered_at'])
    with op.batch_alter_table('intake') as batch:
        batch.add_column(sa.Column('handed_on', sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table('intake') as batch:
        batch.drop_column('handed_on')
    op.drop_index('ix_handoffs_delivered_at', table_name='handoffs')
    op.drop_table('handoffs')
