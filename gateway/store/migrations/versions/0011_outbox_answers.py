"""outbox answers: the Message-ID of the mail a row answers and that mail's References, so that the answer threads under it

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 10:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbox') as batch:
        batch.add_column(sa.Column('in_reply_to', sa.String(length=500), nullable=False, server_default=''))
        batch.add_column(sa.Column('reference_ids', sa.Text(), nullable=False, server_default=''))


def downgrade() -> None:
    with op.batch_alter_table('outbox') as batch:
        batch.drop_column('reference_ids')
        batch.drop_column('in_reply_to')
