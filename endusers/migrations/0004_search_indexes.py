"""PostgreSQL search support: pg_trgm, and GIN indexes for contact search and org-wide memory search.

Per-end-user memory search reads the end user's active memories through memory_user_created_idx
(about a thousand rows at most) and ranks them; the GIN indexes serve the searches that span an
organization. SQLite has none of this and uses the fallback ranking in endusers/search.py.
"""

from django.contrib.postgres.operations import TrigramExtension
from django.db import migrations

INDEXES = [
    ("enduser_name_trgm_idx", 'CREATE INDEX IF NOT EXISTS enduser_name_trgm_idx ON "A_end_users" USING gin (upper(display_name) gin_trgm_ops)'),
    ("identity_value_trgm_idx", 'CREATE INDEX IF NOT EXISTS identity_value_trgm_idx ON "A_end_user_identities" USING gin (upper(value) gin_trgm_ops)'),
    ("memory_org_fts_idx", "CREATE INDEX IF NOT EXISTS memory_org_fts_idx ON \"A_end_user_memories\" USING gin (to_tsvector('simple'::regconfig, text)) WHERE end_user_id IS NULL"),
    ("memory_org_trgm_idx", 'CREATE INDEX IF NOT EXISTS memory_org_trgm_idx ON "A_end_user_memories" USING gin (text gin_trgm_ops) WHERE end_user_id IS NULL'),
]


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for _name, sql in INDEXES:
        schema_editor.execute(sql)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, _sql in INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("endusers", "0003_timeline_memory")]

    operations = [
        TrigramExtension(),
        migrations.RunPython(forwards, backwards),
    ]
