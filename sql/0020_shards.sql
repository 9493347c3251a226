-- Migration 0020: instances whose pictures live on another PostgreSQL server (a shard), through postgres_fdw.
-- The shard holds the instance's table with its HNSW and attribute indexes; this database holds a foreign
-- table of the same name (imagesearch.pictures_<id>), so every statement the service makes of an instance
-- runs unchanged, and postgres_fdw sends the nearest-neighbour ORDER BY ... LIMIT to the shard.
-- The foreign table is not attached to imagesearch.pictures: PostgreSQL refuses a foreign partition under a
-- parent with a unique index, and the key is what AddImage's upsert stands on (docs/scaling.md).
-- DDL on a shard goes through dblink over the same foreign server (its user mapping holds the login); it
-- commits there at once, whatever becomes of the transaction here.
-- The table imagesearch.shards and the column instances.shard are made by the migration.

-- Register a shard: the foreign server (pgvector's operators may be sent to it; the planner asks it for
-- estimates; the sessions it opens there get the service's HNSW settings, which a session's own SET does
-- not pass on), the login, and on the shard itself pgvector and the schema.
CREATE FUNCTION imagesearch.add_shard(p_name text, p_host text, p_port integer, p_dbname text, p_user text,
                                      p_password text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    srv text := 'imagesearch_shard_' || p_name;
    fn record;
BEGIN
    CREATE EXTENSION IF NOT EXISTS postgres_fdw;
    CREATE EXTENSION IF NOT EXISTS dblink;
    -- dblink's functions are PUBLIC's to call by default: any role could open connections from this host.
    FOR fn IN SELECT p.oid::regprocedure AS sig FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid
              WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'dblink') AND d.classid = 'pg_proc'::regclass LOOP
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', fn.sig);
    END LOOP;
    INSERT INTO imagesearch.shards (name, server) VALUES (p_name, srv);
    EXECUTE format('CREATE SERVER %I FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host %L, port %L, dbname %L,'
                   ' extensions %L, use_remote_estimate %L, fetch_size %L, batch_size %L, options %L)',
                   srv, p_host, p_port::text, p_dbname, 'vector', 'true', '100', '100',
                   '-c hnsw.ef_search=80 -c hnsw.iterative_scan=strict_order');
    IF p_password IS NULL THEN
        EXECUTE format('CREATE USER MAPPING FOR CURRENT_USER SERVER %I OPTIONS (user %L)', srv, p_user);
    ELSE
        EXECUTE format('CREATE USER MAPPING FOR CURRENT_USER SERVER %I OPTIONS (user %L, password %L)',
                       srv, p_user, p_password);
    END IF;
    BEGIN
        PERFORM dblink_exec(srv, 'CREATE EXTENSION IF NOT EXISTS vector');
        PERFORM dblink_exec(srv, 'CREATE SCHEMA IF NOT EXISTS imagesearch');
    EXCEPTION WHEN sqlclient_unable_to_establish_sqlconnection OR undefined_file OR insufficient_privilege THEN
        -- Refused here as a bad argument (the transaction, server and mapping included, rolls back).
        RAISE EXCEPTION 'the shard % cannot be used: %', p_name, split_part(SQLERRM, E'\n', 1)
            USING ERRCODE = 'invalid_parameter_value', DETAIL = 'InvalidParameter';
    END;
END $$;

CREATE FUNCTION imagesearch.drop_shard(p_name text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    srv name;
BEGIN
    DELETE FROM imagesearch.shards WHERE name = p_name RETURNING server INTO srv;  -- refused while instances use it
    IF srv IS NOT NULL THEN
        EXECUTE format('DROP USER MAPPING IF EXISTS FOR CURRENT_USER SERVER %I', srv);
        EXECUTE format('DROP SERVER IF EXISTS %I', srv);
    END IF;
END $$;

-- The foreign server of an instance's shard, or NULL when its pictures are here.
CREATE FUNCTION imagesearch.shard_server(p_instance_id integer) RETURNS name
LANGUAGE sql STABLE AS $$
    SELECT s.server FROM imagesearch.instances i JOIN imagesearch.shards s ON s.name = i.shard WHERE i.id = p_instance_id
$$;

-- As sql/0018's, and for an instance on a shard: its table made there (the parent's columns, key, dimension
-- check and attribute indexes), then imported here as a foreign table.
CREATE FUNCTION imagesearch.create_picture_partition(p_instance_id integer) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    part text := imagesearch.partition_name(p_instance_id);
    srv name := imagesearch.shard_server(p_instance_id);
    p_dim integer;
    columns text;
    ix record;
BEGIN
    SELECT embedding_dim INTO STRICT p_dim FROM imagesearch.instances WHERE id = p_instance_id;
    IF p_dim < 1 OR p_dim > 2000 THEN
        RAISE EXCEPTION 'embedding dimension % is outside 1..2000 (pgvector HNSW limit)', p_dim;
    END IF;
    IF srv IS NULL THEN
        EXECUTE format('CREATE TABLE imagesearch.%I PARTITION OF imagesearch.pictures FOR VALUES IN (%s)',
                       part, p_instance_id);
        EXECUTE format('ALTER TABLE imagesearch.%I ADD CONSTRAINT %I CHECK (vector_dims(embedding) = %s)',
                       part, part || '_dim', p_dim);
        -- Vectors stay in the row (not TOAST): a halfvec of up to 2000 numbers (4 kB) always fits a page.
        EXECUTE format('ALTER TABLE imagesearch.%I ALTER COLUMN embedding SET STORAGE PLAIN', part);
    ELSE
        SELECT string_agg(format('%I %s', a.attname, format_type(a.atttypid, a.atttypmod))
                          || coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '')
                          || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END, ', ' ORDER BY a.attnum)
        INTO columns
        FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attrelid = 'imagesearch.pictures'::regclass AND a.attnum > 0 AND NOT a.attisdropped;
        PERFORM dblink_exec(srv, format(
            'CREATE TABLE imagesearch.%I (%s, PRIMARY KEY (instance_id, key_digest),'
            ' CONSTRAINT %I CHECK (instance_id = %s), CONSTRAINT %I CHECK (vector_dims(embedding) = %s))',
            part, columns, part || '_instance', p_instance_id, part || '_dim', p_dim));
        PERFORM dblink_exec(srv, format('ALTER TABLE imagesearch.%I ALTER COLUMN embedding SET STORAGE PLAIN', part));
        PERFORM dblink_exec(srv, format('ALTER TABLE imagesearch.%I ALTER COLUMN thumbnail SET STORAGE EXTERNAL', part));
        FOR ix IN SELECT pg_get_indexdef(indexrelid) AS def, c.relname FROM pg_index JOIN pg_class c ON c.oid = indexrelid
                  WHERE indrelid = 'imagesearch.pictures'::regclass AND NOT indisunique LOOP
            PERFORM dblink_exec(srv, replace(replace(ix.def, 'ON ONLY imagesearch.pictures ', format('ON imagesearch.%I ', part)),
                                             'INDEX ' || ix.relname || ' ', format('INDEX %I ', replace(ix.relname, 'pictures_', part || '_'))));
        END LOOP;
        -- With the defaults: a foreign table sends every column, NULL where it has no default of its own.
        EXECUTE format('IMPORT FOREIGN SCHEMA imagesearch LIMIT TO (%I) FROM SERVER %I INTO imagesearch'
                       ' OPTIONS (import_default %L)', part, srv, 'true');
    END IF;
    PERFORM imagesearch.create_picture_index(p_instance_id);
END $$;

CREATE FUNCTION imagesearch.drop_picture_partition(p_instance_id integer) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    part text := imagesearch.partition_name(p_instance_id);
    srv name := imagesearch.shard_server(p_instance_id);
BEGIN
    IF srv IS NULL THEN
        EXECUTE format('DROP TABLE IF EXISTS imagesearch.%I', part);
    ELSE
        EXECUTE format('DROP FOREIGN TABLE IF EXISTS imagesearch.%I', part);
        PERFORM dblink_exec(srv, format('DROP TABLE IF EXISTS imagesearch.%I', part));
    END IF;
END $$;

-- As sql/0018's, on the shard for an instance there.
CREATE FUNCTION imagesearch.create_vector_index(p_instance_id integer, p_column text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    part text := imagesearch.partition_name(p_instance_id);
    srv name := imagesearch.shard_server(p_instance_id);
    dim integer;
    ddl text;
BEGIN
    IF p_column NOT IN ('embedding', 'silhouette') THEN
        RAISE EXCEPTION 'no vector column %', p_column;
    END IF;
    SELECT embedding_dim INTO STRICT dim FROM imagesearch.instances WHERE id = p_instance_id;
    ddl := format('CREATE INDEX IF NOT EXISTS %I ON imagesearch.%I'
                  ' USING hnsw ((%I::halfvec(%s)) halfvec_cosine_ops) WITH (m = 16, ef_construction = 64)',
                  part || '_' || p_column || '_hnsw', part, p_column, dim);
    IF srv IS NULL THEN
        EXECUTE ddl;
    ELSE
        PERFORM dblink_exec(srv, ddl);
    END IF;
END $$;

CREATE FUNCTION imagesearch.drop_vector_index(p_instance_id integer, p_column text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    ddl text := format('DROP INDEX IF EXISTS imagesearch.%I',
                       imagesearch.partition_name(p_instance_id) || '_' || p_column || '_hnsw');
    srv name := imagesearch.shard_server(p_instance_id);
BEGIN
    IF srv IS NULL THEN
        EXECUTE ddl;
    ELSE
        PERFORM dblink_exec(srv, ddl);
    END IF;
END $$;
