-- Who may use the SQL surface (docs/sql.md, "Roles"): imagesearch_reader searches and reads the views;
-- imagesearch_writer also adds, deletes and syncs. A DBA grants them to application roles:
--     GRANT imagesearch_reader TO shop_app;
-- The public functions run as this schema's owner (SECURITY DEFINER, with a fixed search_path), so the
-- roles need no rights on the tables behind them; everything else in the schema is not theirs to call.

CREATE FUNCTION imagesearch.grant_roles() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    vector_schema constant text := (SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'vector');
    definer constant text[] := ARRAY[
        'search_by_picture(text, text, text, integer, integer, text, integer, boolean, double precision)',
        'search_by_vector(text, vector, integer, integer, text, integer, boolean, double precision)',
        'search_by_product(text, text, integer, integer, text, integer, boolean, double precision)',
        'duplicate_pairs(text, double precision, integer)',
        'add_image(text, text, text, bytea, jsonb)',
        'add_image_from_storage(text, text, text, text, text, jsonb)',
        'delete_image(text, text, text)',
        'retry_failed(text)',
        'register_sync(text, regclass, text[], text, jsonb, text)',
        'unregister_sync(text, regclass)',
        'enqueue_synced_add(imagesearch.synced_tables, text, anyelement)',
        'synced_row_changed()'];
    reading constant text[] := definer[1:4];
    writing constant text[] := definer[5:12] || ARRAY[
        'sync_table(text, regclass, text[], text, jsonb, text)', 'unsync_table(text, regclass)'];
    fn text;
BEGIN
    FOREACH fn IN ARRAY definer LOOP
        EXECUTE format('ALTER FUNCTION imagesearch.%s SECURITY DEFINER SET search_path = pg_catalog, %I, pg_temp',
                       fn, vector_schema);
    END LOOP;
    -- Internal steps are not an interface: nobody but the owner calls them (functions are PUBLIC by default).
    REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA imagesearch FROM PUBLIC;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'imagesearch_reader')
       OR NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'imagesearch_writer') THEN
        BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'imagesearch_reader') THEN
                CREATE ROLE imagesearch_reader NOLOGIN;
            END IF;
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'imagesearch_writer') THEN
                CREATE ROLE imagesearch_writer NOLOGIN;
            END IF;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE NOTICE 'imagesearch: the roles imagesearch_reader and imagesearch_writer were not created (this '
                         'user may not create roles). A DBA creates them (CREATE ROLE ... NOLOGIN) and runs '
                         'SELECT imagesearch.grant_roles(); as this user (docs/sql.md).';
            RETURN;
        END;
    END IF;
    GRANT USAGE ON SCHEMA imagesearch TO imagesearch_reader, imagesearch_writer;
    IF NOT pg_has_role('imagesearch_writer', 'imagesearch_reader', 'MEMBER') THEN  -- a DBA may have made them so
        GRANT imagesearch_reader TO imagesearch_writer;
    END IF;
    FOREACH fn IN ARRAY reading LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION imagesearch.%s TO imagesearch_reader', fn);
    END LOOP;
    FOREACH fn IN ARRAY writing LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION imagesearch.%s TO imagesearch_writer', fn);
    END LOOP;
    GRANT SELECT ON imagesearch.instance_list, imagesearch.picture_list, imagesearch.category_list TO imagesearch_reader;
    GRANT SELECT ON imagesearch.queue_status, imagesearch.queue_errors, imagesearch.synced_tables TO imagesearch_writer;
END $$;

SELECT imagesearch.grant_roles();
