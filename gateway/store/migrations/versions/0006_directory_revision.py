"""directory revision: a random number renewed with every change to principals or aliases, so that each
process may keep the directory in memory and check it with one query per transaction

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 09:00:00.000000
"""

import secrets

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        'directory_revision',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('revision', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_directory_revision')),
    )
    op.bulk_insert(table, [{'id': 1, 'revision': secrets.randbits(62)}])


def downgrade() -> None:
    op.drop_table('directory_revision')
