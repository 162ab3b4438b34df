"""ordering tombstones: the versions applied to a UID whose object is gone or was never stored (a CANCEL that
came first), kept so that an older message arriving later is stale and cannot bring the object back

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 22:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

from gateway.store.schema import UTCDateTime

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'ordering_tombstones',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('principal_id', sa.Integer(), nullable=False),
        sa.Column('uid', sa.String(length=500), nullable=False),
        sa.Column('state', sa.JSON(), nullable=False),
        sa.Column('kept_until', UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['principal_id'], ['principals.id'], name=op.f('fk_ordering_tombstones_principal_id_principals'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_ordering_tombstones')),
        sa.UniqueConstraint('principal_id', 'uid', name=op.f('uq_ordering_tombstones_principal_id_uid')),
    )
    op.create_index('ix_ordering_tombstones_kept_until', 'ordering_tombstones', ['kept_until'])


def downgrade() -> None:
    op.drop_index('ix_ordering_tombstones_kept_until', table_name='ordering_tombstones')
    op.drop_table('ordering_tombstones')
