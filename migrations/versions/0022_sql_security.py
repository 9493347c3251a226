"""The SQL surface's security model (sql/0022_security.sql, docs/sql.md "Security model"): the public
functions run as imagesearch_definer, a role without power of its own, with search_path pg_catalog,
pg_temp and every other object named with its schema. A sync is its trigger (the table
imagesearch.synced_tables becomes a view of those triggers), so the steps that registered one are gone;
the trigger reads only columns of built-in types. A worker claims an instance by a row lock no other role
can take (imagesearch.picture_queue_claims) instead of an advisory lock anyone could.

Syncs made before are moved onto triggers of the new form, which needs this user to own their tables
(or be a superuser); a sync with a column of a type of its own cannot be moved. Either way the upgrade
stops, changing nothing, and says which tables.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07
"""

from alembic import op

from imagesearch_pg.store.schema import run_sql_functions

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

FILE = "0022_security.sql"
NEW = ("sync_label", "trigger_argument", "sync_settings", "syncable_types", "key_types", "unsyncable_column", "synced_values_sql", "sync_instance_id",
       "queue_synced_row", "map_shard_for_definer", "shard_exec", "refuse_definer_ddl")
REDEFINED = ("plan_search", "scan", "nearest_fused", "duplicate_pairs", "search_by_picture", "search_by_vector",
             "search_by_product", "synced_row_changed", "sync_table", "unsync_table", "create_picture_partition",
             "drop_picture_partition", "create_vector_index", "drop_vector_index", "add_shard", "drop_shard",
             "grant_roles")
REGISTRATION = ("register_sync(text, regclass, text[], text, jsonb, text)", "unregister_sync(text, regclass)",
                "enqueue_synced_add(imagesearch.synced_tables, text, anyelement)",
                "synced_values(imagesearch.synced_tables, anyelement)")
BEFORE = {"0016_search.sql": ("plan_search", "search_by_picture", "search_by_vector", "search_by_product"),
          "0018_halfvec_embeddings.sql": ("scan", "nearest_fused", "duplicate_pairs"),
          "0020_shards.sql": ("create_picture_partition", "drop_picture_partition", "create_vector_index",
                              "drop_vector_index", "add_shard", "drop_shard"),
          "0016_queue.sql": ("synced_values", "enqueue_synced_add", "synced_row_changed", "sync_table",
                             "register_sync", "unsync_table", "unregister_sync"),
          "0016_roles.sql": ("grant_roles",)}
OWNED_BY_DEFINER = ("search_by_picture(text, text, text, integer, integer, text, integer, boolean, double precision)",
                    "search_by_vector(text, vector, integer, integer, text, integer, boolean, double precision)",
                    "search_by_product(text, text, integer, integer, text, integer, boolean, double precision)",
                    "duplicate_pairs(text, double precision, integer)", "add_image(text, text, text, bytea, jsonb)",
                    "add_image_from_storage(text, text, text, text, text, jsonb)", "delete_image(text, text, text)",
                    "retry_failed(text)", "sync_instance_id(text, jsonb, text)",
                    "queue_synced_row(integer, regclass, text, text, bytea, text, jsonb)", "synced_row_changed()")

SYNCED_TABLES_VIEW = """
    CREATE VIEW imagesearch.synced_tables AS
    SELECT i.name AS instance, t.tgrelid::regclass AS source,
           ARRAY(SELECT jsonb_array_elements_text(s.settings -> 'key_columns')) AS key_columns,
           s.settings ->> 'picture_column' AS picture_column, s.settings -> 'attribute_columns' AS attribute_columns,
           s.settings ->> 'picture_location' AS picture_location
    FROM pg_trigger t CROSS JOIN LATERAL (SELECT imagesearch.sync_settings(imagesearch.trigger_argument(t.tgargs)) AS settings) s
    JOIN imagesearch.instances i ON i.id::text = s.settings ->> 'instance_id'
    WHERE t.tgfoid = 'imagesearch.synced_row_changed()'::regprocedure"""


def upgrade() -> None:
    # What a worker locks (FOR UPDATE) while it works on an instance's queued items: a row no other role may
    # lock, where an advisory lock's key was anyone's to take (store/picture_queue.py).
    op.execute("""
        CREATE TABLE imagesearch.picture_queue_claims (
            instance_id integer PRIMARY KEY REFERENCES imagesearch.instances (id) ON DELETE CASCADE
        )""")
    for signature in REGISTRATION:
        op.execute(f"DROP FUNCTION imagesearch.{signature}")
    run_sql_functions(op.get_bind(), FILE, NEW + REDEFINED)
    op.execute("""
        DO $$
        DECLARE
            s record;
            settings jsonb;
            unsafe text;
        BEGIN
            FOR s IN SELECT * FROM imagesearch.synced_tables LOOP
                settings := jsonb_build_object('instance_id', s.instance_id, 'key_columns', to_jsonb(s.key_columns),
                    'picture_column', s.picture_column, 'attribute_columns', s.attribute_columns,
                    'picture_location', s.picture_location);
                unsafe := imagesearch.unsyncable_column(s.source, settings);
                IF unsafe IS NOT NULL THEN
                    RAISE EXCEPTION 'imagesearch: the synced table %''s column % (a sync now needs built-in '
                                    'types); unsync it (SELECT imagesearch.unsync_table(...)) or change the column, '
                                    'then upgrade', imagesearch.sync_label(s.source), unsafe;
                END IF;
                EXECUTE format('DROP TRIGGER %I ON %s', 'imagesearch_sync_' || s.id, imagesearch.sync_label(s.source));
                EXECUTE format('CREATE TRIGGER %I AFTER INSERT OR UPDATE OR DELETE ON %s FOR EACH ROW'
                               ' EXECUTE FUNCTION imagesearch.synced_row_changed(%L)', 'imagesearch_sync_' || s.instance_id,
                               imagesearch.sync_label(s.source), settings::text);
            END LOOP;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE EXCEPTION 'imagesearch: the synced tables % get triggers of a new form, which this user may not '
                            'make (%); run imagesearch db upgrade as their owner or a superuser',
                (SELECT string_agg(source::text, ', ') FROM imagesearch.synced_tables), SQLERRM;
        END $$""")
    op.execute("DROP TABLE imagesearch.synced_tables")
    op.execute(SYNCED_TABLES_VIEW)
    op.execute("SELECT imagesearch.grant_roles()")


def downgrade() -> None:
    op.execute("DROP EVENT TRIGGER IF EXISTS imagesearch_definer_guard")
    op.execute("DROP VIEW imagesearch.synced_tables")
    op.execute("""
        CREATE TABLE imagesearch.synced_tables (
            id serial PRIMARY KEY,
            instance_id integer NOT NULL REFERENCES imagesearch.instances (id) ON DELETE CASCADE,
            source regclass NOT NULL,
            key_columns text[] NOT NULL,
            picture_column text NOT NULL,
            attribute_columns jsonb NOT NULL,
            picture_location text,
            created_at timestamptz NOT NULL DEFAULT now(),
            UNIQUE (instance_id, source)
        )""")
    op.execute("""
        DO $$
        DECLARE
            s record;
            sync_id integer;
        BEGIN
            FOR s IN SELECT t.tgrelid::regclass AS source, t.tgname, imagesearch.sync_settings(imagesearch.trigger_argument(t.tgargs)) AS settings
                     FROM pg_trigger t WHERE t.tgfoid = 'imagesearch.synced_row_changed()'::regprocedure LOOP
                sync_id := 0;  -- a trigger whose instance is gone: the old trigger function warns about it
                IF EXISTS (SELECT FROM imagesearch.instances i WHERE i.id::text = s.settings ->> 'instance_id') THEN
                    INSERT INTO imagesearch.synced_tables (instance_id, source, key_columns, picture_column,
                                                           attribute_columns, picture_location)
                    VALUES ((s.settings ->> 'instance_id')::integer, s.source,
                            ARRAY(SELECT jsonb_array_elements_text(s.settings -> 'key_columns')),
                            s.settings ->> 'picture_column', s.settings -> 'attribute_columns',
                            s.settings ->> 'picture_location')
                    RETURNING id INTO sync_id;
                END IF;
                EXECUTE format('DROP TRIGGER %I ON %s', s.tgname, imagesearch.sync_label(s.source));
                EXECUTE format('CREATE TRIGGER %I AFTER INSERT OR UPDATE OR DELETE ON %s FOR EACH ROW'
                               ' EXECUTE FUNCTION imagesearch.synced_row_changed(%s)', 'imagesearch_sync_' || sync_id,
                               imagesearch.sync_label(s.source), sync_id);
            END LOOP;
        END $$""")
    # Back to this user (the role goes below, unless another database still uses it).
    for signature in OWNED_BY_DEFINER:
        op.execute(f"ALTER FUNCTION imagesearch.{signature} OWNER TO CURRENT_USER")
    op.execute("""
        DO $$
        DECLARE s record;
        BEGIN
            FOR s IN SELECT server FROM imagesearch.shards LOOP
                EXECUTE format('DROP USER MAPPING IF EXISTS FOR imagesearch_definer SERVER %I', s.server);
            END LOOP;
        EXCEPTION WHEN undefined_object THEN
            NULL;  -- no such role
        END $$""")
    for filename, names in BEFORE.items():
        run_sql_functions(op.get_bind(), filename, names)
    for name in NEW:
        op.execute(f"DROP FUNCTION imagesearch.{name}")
    op.execute("DROP TABLE imagesearch.picture_queue_claims")
    op.execute("""
        DO $$
        BEGIN
            IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'imagesearch_definer') THEN
                REVOKE ALL ON ALL TABLES IN SCHEMA imagesearch FROM imagesearch_definer;
                REVOKE ALL ON ALL SEQUENCES IN SCHEMA imagesearch FROM imagesearch_definer;
                REVOKE ALL ON ALL FUNCTIONS IN SCHEMA imagesearch FROM imagesearch_definer;
                REVOKE ALL ON SCHEMA imagesearch FROM imagesearch_definer;
                BEGIN
                    DROP ROLE imagesearch_definer;
                EXCEPTION WHEN dependent_objects_still_exist OR insufficient_privilege THEN
                    RAISE NOTICE 'imagesearch: the role imagesearch_definer stays (%)', SQLERRM;
                END;
            END IF;
        END $$""")
    op.execute("SELECT imagesearch.grant_roles()")
