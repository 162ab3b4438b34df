"""imap state

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 05:21:36.588304
"""

import sqlalchemy as sa
from alembic import op

from gateway.store.schema import UTCDateTime

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('imap_mailboxes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('host', sa.String(length=255), nullable=False),
    sa.Column('username', sa.String(length=320), nullable=False),
    sa.Column('folder', sa.String(length=500), nullable=False),
    sa.Column('uidvalidity', sa.BigInteger(), nullable=False),
    sa.Column('last_uid', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_imap_mailboxes')),
    sa.UniqueConstraint('host', 'username', 'folder', name=op.f('uq_imap_mailboxes_host_username_folder'))
    )


def downgrade() -> None:
    op.drop_table('imap_mailboxes')
