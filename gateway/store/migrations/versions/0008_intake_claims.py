"""intake claims: how many times a queued message was claimed without an outcome, so that one which
kills its processor every time is held as worker-crashed instead of being claimed for ever

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 07:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('intake') as batch:
        batch.add_column(sa.Column('claims', sa.Integer(), nullable=False, server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('intake') as batch:
        batch.drop_column('claims')
