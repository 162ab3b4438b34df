"""reply tokens: per (event, outside party) reply and bounce addresses; what each recipient was sent before;
the sender domain of intake messages, for the per-domain rate limit

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 09:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

from gateway.store.schema import UTCDateTime

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'reply_tokens',
        sa.Column('token', sa.String(length=40), nullable=False),
        sa.Column('principal_id', sa.Integer(), nullable=False),
        sa.Column('uid', sa.String(length=500), nullable=False),
        sa.Column('address', sa.String(length=320), nullable=False),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.Column('expires_at', UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(['principal_id'], ['principals.id'], name=op.f('fk_reply_tokens_principal_id_principals'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('token', name=op.f('pk_reply_tokens')),
        sa.UniqueConstraint('principal_id', 'uid', 'address', name=op.f('uq_reply_tokens_principal_id_uid_address')),
    )
    op.add_column('outbox', sa.Column('reply_token', sa.String(length=40), nullable=False, server_default=''))
    op.add_column('outbox', sa.Column('previous_ical', sa.Text(), nullable=False, server_default=''))
    op.create_index('ix_outbox_uid_recipient', 'outbox', ['uid', 'recipient'])
    op.create_index('ix_outbox_message_id', 'outbox', ['message_id'])
    op.add_column('intake', sa.Column('sender_domain', sa.String(length=255), nullable=False, server_default=''))
    op.create_index('ix_intake_sender_domain_received_at', 'intake', ['sender_domain', 'received_at'])


def downgrade() -> None:
    op.drop_index('ix_intake_sender_domain_received_at', table_name='intake')
    op.drop_index('ix_outbox_message_id', table_name='outbox')
    op.drop_index('ix_outbox_uid_recipient', table_name='outbox')
    with op.batch_alter_table('intake') as batch:
        batch.drop_column('sender_domain')
    with op.batch_alter_table('outbox') as batch:
        batch.drop_column('previous_ical')
        batch.drop_column('reply_token')
    op.drop_table('reply_tokens')
