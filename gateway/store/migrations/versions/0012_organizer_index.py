"""calendar objects by principal and organizer: whether a sender organizes something in a calendar is one index lookup

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 19:00:00.000000
"""

from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_calendar_objects_principal_id_organizer', 'calendar_objects', ['principal_id', 'organizer'])


def downgrade() -> None:
    op.drop_index('ix_calendar_objects_principal_id_organizer', 'calendar_objects')
