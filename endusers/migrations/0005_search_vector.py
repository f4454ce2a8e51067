"""Contacts list index for current end users; on PostgreSQL a stored tsvector and GIN indexes for memory search.

`search_vector` is a generated column Django never writes (the model does not declare it): the
database keeps it in step with `text`, and memory search reads it instead of re-parsing every text.
"""

from django.db import migrations, models

MEMORY_SQL = [
    ("ALTER TABLE \"A_end_user_memories\" ADD COLUMN IF NOT EXISTS search_vector tsvector "
     "GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, text)) STORED",
     'ALTER TABLE "A_end_user_memories" DROP COLUMN IF EXISTS search_vector'),
    ("DROP INDEX IF EXISTS memory_org_fts_idx", None),
    ("DROP INDEX IF EXISTS memory_org_trgm_idx", None),
    ('CREATE INDEX IF NOT EXISTS memory_fts_idx ON "A_end_user_memories" USING gin (search_vector) '
     "WHERE superseded_by_id IS NULL AND deleted_at IS NULL",
     "DROP INDEX IF EXISTS memory_fts_idx"),
    ('CREATE INDEX IF NOT EXISTS memory_trgm_idx ON "A_end_user_memories" USING gin (text gin_trgm_ops) '
     "WHERE superseded_by_id IS NULL AND deleted_at IS NULL",
     "DROP INDEX IF EXISTS memory_trgm_idx"),
]


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for sql, _undo in MEMORY_SQL:
            schema_editor.execute(sql)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for _sql, undo in reversed(MEMORY_SQL):
            if undo:
                schema_editor.execute(undo)


class Migration(migrations.Migration):
    dependencies = [("endusers", "0004_search_indexes")]

    operations = [
        migrations.RemoveIndex(model_name="enduser", name="enduser_org_seen_idx"),
        migrations.AddIndex(
            model_name="enduser",
            index=models.Index(condition=models.Q(("merged_into__isnull", True)), fields=["organization", "-last_seen_at"],
                               name="enduser_org_current_idx"),
        ),
        migrations.RunPython(forwards, backwards),
    ]
