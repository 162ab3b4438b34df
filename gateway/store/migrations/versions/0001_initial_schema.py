"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-23 04:44:12.464409
"""

import sqlalchemy as sa
from alembic import op

from gateway.store.schema import UTCDateTime

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('intake',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('received_at', UTCDateTime(), nullable=False),
    sa.Column('source', sa.String(length=20), nullable=False),
    sa.Column('envelope_sender', sa.String(length=320), nullable=False),
    sa.Column('recipients', sa.JSON(), nullable=False),
    sa.Column('message_id', sa.String(length=500), nullable=False),
    sa.Column('raw', sa.LargeBinary(), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('claimed_until', UTCDateTime(), nullable=True),
    sa.Column('reason', sa.String(length=100), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('processed_at', UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_intake'))
    )
    with op.batch_alter_table('intake', schema=None) as batch_op:
        batch_op.create_index('ix_intake_state_id', ['state', 'id'], unique=False)

    op.create_table('outbox',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('method', sa.String(length=20), nullable=False),
    sa.Column('uid', sa.String(length=500), nullable=False),
    sa.Column('sender', sa.String(length=320), nullable=False),
    sa.Column('recipient', sa.String(length=320), nullable=False),
    sa.Column('ical', sa.Text(), nullable=False),
    sa.Column('message_id', sa.String(length=500), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', UTCDateTime(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox'))
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_state_next_attempt_at', ['state', 'next_attempt_at'], unique=False)

    op.create_table('principals',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('address', sa.String(length=320), nullable=False),
    sa.Column('display_name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_principals')),
    sa.UniqueConstraint('address', name=op.f('uq_principals_address'))
    )
    op.create_table('aliases',
    sa.Column('address', sa.String(length=320), nullable=False),
    sa.Column('principal_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['principal_id'], ['principals.id'], name=op.f('fk_aliases_principal_id_principals'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('address', name=op.f('pk_aliases'))
    )
    with op.batch_alter_table('aliases', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_aliases_principal_id'), ['principal_id'], unique=False)

    op.create_table('calendar_objects',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('principal_id', sa.Integer(), nullable=False),
    sa.Column('uid', sa.String(length=500), nullable=False),
    sa.Column('component', sa.String(length=20), nullable=False),
    sa.Column('organizer', sa.String(length=320), nullable=True),
    sa.Column('sequence', sa.BigInteger(), nullable=False),
    sa.Column('ical', sa.Text(), nullable=False),
    sa.Column('state', sa.JSON(), nullable=False),
    sa.Column('updated_at', UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['principal_id'], ['principals.id'], name=op.f('fk_calendar_objects_principal_id_principals'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_calendar_objects')),
    sa.UniqueConstraint('principal_id', 'uid', name=op.f('uq_calendar_objects_principal_id_uid'))
    )
    op.create_table('inbox',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('principal_id', sa.Integer(), nullable=False),
    sa.Column('intake_id', sa.Integer(), nullable=True),
    sa.Column('received_at', UTCDateTime(), nullable=False),
    sa.Column('method', sa.String(length=20), nullable=False),
    sa.Column('uid', sa.String(length=500), nullable=False),
    sa.Column('sender', sa.String(length=320), nullable=False),
    sa.Column('outcome', sa.String(length=20), nullable=False),
    sa.Column('reason', sa.String(length=100), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('ical', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['intake_id'], ['intake.id'], name=op.f('fk_inbox_intake_id_intake'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['principal_id'], ['principals.id'], name=op.f('fk_inbox_principal_id_principals'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inbox'))
    )
    with op.batch_alter_table('inbox', schema=None) as batch_op:
        batch_op.create_index('ix_inbox_principal_id_id', ['principal_id', 'id'], unique=False)

    op.create_table('ledger',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('principal_id', sa.Integer(), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['principal_id'], ['principals.id'], name=op.f('fk_ledger_principal_id_principals'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger')),
    sa.UniqueConstraint('principal_id', 'fingerprint', name=op.f('uq_ledger_principal_id_fingerprint'))
    )


def downgrade() -> None:
    op.drop_table('ledger')
    with op.batch_alter_table('inbox', schema=None) as batch_op:
        batch_op.drop_index('ix_inbox_principal_id_id')

    op.drop_table('inbox')
    op.drop_table('calendar_objects')
    with op.batch_alter_table('aliases', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_aliases_principal_id'))

    op.drop_table('aliases')
    op.drop_table('principals')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_state_next_attempt_at')

    op.drop_table('outbox')
    with op.batch_alter_table('intake', schema=None) as batch_op:
        batch_op.drop_index('ix_intake_state_id')

    op.drop_table('intake')
