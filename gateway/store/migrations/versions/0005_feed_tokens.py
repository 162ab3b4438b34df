"""calendar feeds: each principal's secret feed token; a revision for every version of a calendar object
and of each principal's calendar (what the free/busy times cache is checked against)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 09:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('principals', sa.Column('feed_token', sa.String(length=64), nullable=False, server_default=''))
    op.add_column('calendar_objects', sa.Column('revision', sa.BigInteger(), nullable=False, server_default='0'))
    op.add_column('principals', sa.Column('calendar_revision', sa.BigInteger(), nullable=False, server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('calendar_objects') as batch:
        batch.drop_column('revision')
    with op.batch_alter_table('principals') as batch:
        batch.drop_column('calendar_revision')
        batch.drop_column('feed_token')
