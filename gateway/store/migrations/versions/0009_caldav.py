"""CalDAV: calendar collections with their sync state and change log, each object's place (calendar, href),
ETag, Schedule-Tag and time hull, inbox lines a client dismissed, and app passwords

Every principal gets its default calendar, named ``default``, holding the objects it
has; an object's resource name is made from its UID. Hulls are left unknown (every
time-range query reads the object) until the object is next written.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 12:30:00.000000
"""

import hashlib
import re

import sqlalchemy as sa
from alembic import op

from gateway.store.schema import UTCDateTime

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

_PLAIN = re.compile(r"[A-Za-z0-9._@+-]{1,200}")


def _href(uid: str) -> str:
    return (uid if _PLAIN.fullmatch(uid) else hashlib.sha1(uid.encode()).hexdigest()) + ".ics"


def upgrade() -> None:
    op.create_table(
        'calendars',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('principal_id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('display_name', sa.String(length=200), nullable=False),
        sa.Column('description', sa.Text(), nullable=False),
        sa.Column('color', sa.String(length=20), nullable=False),
        sa.Column('sort_order', sa.Integer(), nullable=False),
        sa.Column('timezone', sa.Text(), nullable=False),
        sa.Column('transparent', sa.Boolean(), nullable=False),
        sa.Column('components', sa.String(length=100), nullable=False),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.Column('sync_seq', sa.BigInteger(), nullable=False),
        sa.Column('pruned_through', sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(['principal_id'], ['principals.id'], name=op.f('fk_calendars_principal_id_principals'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_calendars')),
        sa.UniqueConstraint('principal_id', 'name', name=op.f('uq_calendars_principal_id_name')),
    )
    op.create_table(
        'calendar_changes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('calendar_id', sa.Integer(), nullable=False),
        sa.Column('href', sa.String(length=500), nullable=False),
        sa.Column('seq', sa.BigInteger(), nullable=False),
        sa.Column('deleted', sa.Boolean(), nullable=False),
        sa.Column('changed_at', UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['calendar_id'], ['calendars.id'], name=op.f('fk_calendar_changes_calendar_id_calendars'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_calendar_changes')),
        sa.UniqueConstraint('calendar_id', 'href', name=op.f('uq_calendar_changes_calendar_id_href')),
    )
    op.create_index('ix_calendar_changes_calendar_id_seq', 'calendar_changes', ['calendar_id', 'seq'])
    op.create_table(
        'app_passwords',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('principal_id', sa.Integer(), nullable=False),
        sa.Column('label', sa.String(length=100), nullable=False),
        sa.Column('hash', sa.String(length=300), nullable=False),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.Column('last_used_at', UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(['principal_id'], ['principals.id'], name=op.f('fk_app_passwords_principal_id_principals'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_app_passwords')),
        sa.UniqueConstraint('principal_id', 'label', name=op.f('uq_app_passwords_principal_id_label')),
    )
    op.create_index(op.f('ix_app_passwords_principal_id'), 'app_passwords', ['principal_id'])
    with op.batch_alter_table('calendar_objects') as batch:
        batch.add_column(sa.Column('calendar_id', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('href', sa.String(length=500), nullable=False, server_default=''))
        batch.add_column(sa.Column('etag', sa.String(length=64), nullable=False, server_default=''))
        batch.add_column(sa.Column('schedule_tag', sa.String(length=64), nullable=False, server_default=''))
        batch.add_column(sa.Column('hull_start', UTCDateTime(), nullable=True))
        batch.add_column(sa.Column('hull_end', UTCDateTime(), nullable=True))
        batch.create_foreign_key(op.f('fk_calendar_objects_calendar_id_calendars'), 'calendars', ['calendar_id'], ['id'], ondelete='CASCADE')
    with op.batch_alter_table('inbox') as batch:
        batch.add_column(sa.Column('dismissed_at', UTCDateTime(), nullable=True))
    _default_calendars()
    with op.batch_alter_table('calendar_objects') as batch:
        batch.create_unique_constraint(op.f('uq_calendar_objects_calendar_id_href'), ['calendar_id', 'href'])
        batch.create_index('ix_calendar_objects_calendar_id_hull_end', ['calendar_id', 'hull_end'])


def _default_calendars() -> None:
    """A default calendar for every principal, holding its objects, each named after its UID."""
    bind = op.get_bind()
    principals = sa.table('principals', sa.column('id'), sa.column('display_name'), sa.column('created_at'))
    calendars = sa.table('calendars', *(sa.column(n) for n in (
        'id', 'principal_id', 'name', 'display_name', 'description', 'color', 'sort_order', 'timezone',
        'transparent', 'components', 'created_at', 'sync_seq', 'pruned_through')))
    changes = sa.table('calendar_changes', sa.column('calendar_id'), sa.column('href'), sa.column('seq'),
                       sa.column('deleted'), sa.column('changed_at'))
    objects = sa.table('calendar_objects', sa.column('id'), sa.column('principal_id'), sa.column('uid'),
                       sa.column('calendar_id'), sa.column('href'), sa.column('etag'), sa.column('schedule_tag'),
                       sa.column('revision'), sa.column('updated_at'))
    for principal in bind.execute(sa.select(principals)).all():
        calendar_id = bind.execute(sa.insert(calendars).returning(calendars.c.id), {
            'principal_id': principal.id, 'name': 'default', 'display_name': principal.display_name or 'Calendar',
            'description': '', 'color': '', 'sort_order': 0, 'timezone': '', 'transparent': False,
            'components': 'VEVENT,VTODO,VJOURNAL', 'created_at': principal.created_at, 'sync_seq': 0,
            'pruned_through': 0,
        }).scalar_one()
        rows = bind.execute(sa.select(objects.c.id, objects.c.uid, objects.c.revision, objects.c.updated_at)
                            .where(objects.c.principal_id == principal.id).order_by(objects.c.id)).all()
        for seq, row in enumerate(rows, start=1):
            tag = f"{row.revision:x}"
            bind.execute(sa.update(objects).where(objects.c.id == row.id), {
                'calendar_id': calendar_id, 'href': _href(row.uid), 'etag': tag, 'schedule_tag': tag,
            })
            bind.execute(sa.insert(changes), {'calendar_id': calendar_id, 'href': _href(row.uid), 'seq': seq,
                                              'deleted': False, 'changed_at': row.updated_at})
        bind.execute(sa.update(calendars).where(calendars.c.id == calendar_id), {'sync_seq': len(rows)})


def downgrade() -> None:
    with op.batch_alter_table('calendar_objects') as batch:
        batch.drop_index('ix_calendar_objects_calendar_id_hull_end')
        batch.drop_constraint(op.f('uq_calendar_objects_calendar_id_href'), type_='unique')
        batch.drop_constraint(op.f('fk_calendar_objects_calendar_id_calendars'), type_='foreignkey')
        for column in ('hull_end', 'hull_start', 'schedule_tag', 'etag', 'href', 'calendar_id'):
            batch.drop_column(column)
    with op.batch_alter_table('inbox') as batch:
        batch.drop_column('dismissed_at')
    op.drop_index(op.f('ix_app_passwords_principal_id'), table_name='app_passwords')
    op.drop_table('app_passwords')
    op.drop_index('ix_calendar_changes_calendar_id_seq', table_name='calendar_changes')
    op.drop_table('calendar_changes')
    op.drop_table('calendars')
