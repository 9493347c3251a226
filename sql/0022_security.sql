-- Migration 0022: the SQL surface's security model (docs/sql.md, "Security model").
--
-- * The public functions run as imagesearch_definer (SECURITY DEFINER), a NOLOGIN role that is not a
--   superuser and holds only what they need: it reads instances and pictures and writes the picture queue;
--   it cannot read the service's secrets (access keys, console accounts and key, shard logins).
-- * They run with search_path = pg_catalog, pg_temp: every other object they reach is named with its
--   schema, imagesearch or pgvector's (written @vector_schema@ here; store/schema.py puts the extension's
--   schema in when the file is run), so no object a caller creates can stand in for one of them.
-- * Synced tables: a sync is its trigger (the section below), which runs as imagesearch_definer on the
--   genuine rows a statement changed, reading only columns of built-in types.

-- ---- searches: pgvector's types, operators and functions named with their schema --------------------------

CREATE FUNCTION imagesearch.plan_search(p_instance text, p_filter text, p_category_id integer,
                                        p_exclude_product text, p_num integer, p_start integer,
                                        p_threshold double precision, p_distinct boolean)
RETURNS imagesearch.search_plan
LANGUAGE plpgsql AS $$
DECLARE
    r imagesearch.search_plan;
    compiled imagesearch.compiled_filter;
    inst imagesearch.instances;
    category integer;
    conditions text[] := '{}';
    plan jsonb;
BEGIN
    -- In the order the service checks them (Searches._window).
    PERFORM imagesearch.check_window(p_num, p_start, p_threshold);
    compiled := imagesearch.compile_filter(p_filter);
    inst := imagesearch.instance_named(p_instance);
    category := imagesearch.checked_category(inst.service_type, p_category_id);
    IF compiled.condition IS NOT NULL THEN
        conditions := conditions || ('(' || compiled.condition || ')');
    END IF;
    IF category IS NOT NULL THEN
        conditions := conditions || 'p.category_id = $5'::text;
    END IF;
    IF p_exclude_product IS NOT NULL THEN
        conditions := conditions || 'p.product_id <> $6'::text;
    END IF;
    r := ROW(inst.id, inst.embedding_dim, imagesearch.partition_name(inst.id), inst.encoder,
             CASE WHEN cardinality(conditions) > 0 THEN array_to_string(conditions, ' AND ') END,
             compiled.ints, compiled.strs, category, p_exclude_product,
             p_num, p_start, p_threshold, coalesce(p_distinct, false), NULL, NULL);
    IF r.condition IS NOT NULL THEN
        EXECUTE format('EXPLAIN (FORMAT JSON) SELECT 1 FROM imagesearch.%1$I p WHERE %2$s'
                       ' UNION ALL SELECT 1 FROM imagesearch.%1$I p', r.part, r.condition)
            INTO plan USING r.ints, r.strs, NULL::@vector_schema@.vector, NULL::integer, r.category_id, r.exclude_product;
        plan := plan -> 0 -> 'Plan';
        IF plan ->> 'Node Type' = 'Append' AND jsonb_array_length(plan -> 'Plans') = 2 THEN
            r.matching := (plan -> 'Plans' -> 0 ->> 'Plan Rows')::float8;
            r.total := (plan -> 'Plans' -> 1 ->> 'Plan Rows')::float8;
        ELSE
            r.matching := 0;  -- the planner proved that nothing matches
            r.total := (plan ->> 'Plan Rows')::float8;
        END IF;
    END IF;
    RETURN r;
END $$;

-- The HNSW walk (p_exact false: ORDER BY the partition's index expression) or the exact scan of the
-- matches (no cast to the instance's dimension, so no index), best first.
CREATE FUNCTION imagesearch.scan(r imagesearch.search_plan, p_query @vector_schema@.vector, p_limit integer,
                                 p_exact boolean)
RETURNS SETOF imagesearch.search_result
LANGUAGE plpgsql STABLE AS $$
DECLARE
    distance text := CASE WHEN p_exact THEN 'p.embedding OPERATOR(@vector_schema@.<=>) $3::@vector_schema@.halfvec'
                          ELSE format('p.embedding::@vector_schema@.halfvec(%1$s) OPERATOR(@vector_schema@.<=>)'
                                      ' $3::@vector_schema@.halfvec(%1$s)', r.dim) END;
BEGIN
    RETURN QUERY EXECUTE format(
        'SELECT p.product_id, p.pic_name, imagesearch.cosine_score(%1$s), p.category_id, p.custom_content,'
        ' p.int_attr, p.int_attr2, p.int_attr3, p.int_attr4, p.str_attr, p.str_attr2, p.str_attr3, p.str_attr4'
        ' FROM imagesearch.%2$I p%3$s ORDER BY %1$s LIMIT $4',
        distance, r.part, CASE WHEN r.condition IS NULL THEN '' ELSE ' WHERE ' || r.condition END)
    USING r.ints, r.strs, p_query, p_limit, r.category_id, r.exclude_product;
END $$;

-- A stored picture's embedding and silhouette together: a picture's distance is the least of its
-- embedding's to p_query and its silhouette's to p_silhouette plus p_margin.
CREATE FUNCTION imagesearch.nearest_fused(r imagesearch.search_plan, p_query @vector_schema@.vector,
                                          p_silhouette @vector_schema@.halfvec, p_margin double precision,
                                          p_limit integer)
RETURNS SETOF imagesearch.search_result
LANGUAGE plpgsql STABLE AS $$
DECLARE
    columns constant text := 'p.product_id, p.pic_name, imagesearch.cosine_score(%s), p.category_id, p.custom_content,'
        ' p.int_attr, p.int_attr2, p.int_attr3, p.int_attr4, p.str_attr, p.str_attr2, p.str_attr3, p.str_attr4';
    least_distance constant text := 'least(p.embedding OPERATOR(@vector_schema@.<=>) $3::@vector_schema@.halfvec,'
        ' (p.silhouette OPERATOR(@vector_schema@.<=>) $7) + $8)';
BEGIN
    IF r.condition IS NOT NULL THEN
        RETURN QUERY EXECUTE 'SELECT ' || format(columns, least_distance)
            || format(' FROM imagesearch.%I p WHERE %s ORDER BY %s LIMIT $4', r.part, r.condition, least_distance)
        USING r.ints, r.strs, p_query, p_limit, r.category_id, r.exclude_product, p_silhouette, p_margin;
        RETURN;
    END IF;
    -- Each vector walks its own index for its p_limit nearest; a picture of the fused top p_limit is in the
    -- top p_limit of the vector that gives its least distance.
    RETURN QUERY EXECUTE format(
        'SELECT %3$s FROM imagesearch.%2$I p JOIN ('
        '  SELECT hits.key_digest, min(hits.distance + hits.margin) AS distance FROM ('
        '    (SELECT p.key_digest, p.embedding::@vector_schema@.halfvec(%1$s) OPERATOR(@vector_schema@.<=>)'
        '       $3::@vector_schema@.halfvec(%1$s) AS distance, 0.0::float8 AS margin'
        '     FROM imagesearch.%2$I p ORDER BY p.embedding::@vector_schema@.halfvec(%1$s) OPERATOR(@vector_schema@.<=>)'
        '       $3::@vector_schema@.halfvec(%1$s) LIMIT $4)'
        '    UNION ALL'
        '    (SELECT p.key_digest, p.silhouette::@vector_schema@.halfvec(%1$s) OPERATOR(@vector_schema@.<=>) $7'
        '       AS distance, $8 AS margin'
        '     FROM imagesearch.%2$I p ORDER BY p.silhouette::@vector_schema@.halfvec(%1$s) OPERATOR(@vector_schema@.<=>) $7'
        '     LIMIT $4)'
        '  ) hits GROUP BY hits.key_digest ORDER BY min(hits.distance + hits.margin) LIMIT $4'
        ') best ON p.key_digest = best.key_digest ORDER BY best.distance',
        r.dim, r.part, format(columns, 'best.distance'))
    USING r.ints, r.strs, p_query, p_limit, r.category_id, r.exclude_product, p_silhouette, p_margin;
END $$;

CREATE FUNCTION imagesearch.duplicate_pairs(instance text, min_score double precision, neighbours integer DEFAULT 10)
RETURNS TABLE (product_id_a text, pic_name_a text, product_id_b text, pic_name_b text, score double precision)
LANGUAGE plpgsql
SET hnsw.ef_search = 80 SET hnsw.iterative_scan = strict_order AS $$
DECLARE
    inst imagesearch.instances;
    part text;
BEGIN
    IF min_score IS NULL OR NOT (min_score BETWEEN 0 AND 1) THEN
        PERFORM imagesearch.raise_error('InvalidParameter', format('min_score must be a number from 0 to 1, got %s',
            coalesce(lower(min_score::text), 'NULL')));
    END IF;
    IF neighbours IS NULL OR neighbours NOT BETWEEN 1 AND 100 THEN
        PERFORM imagesearch.raise_error('InvalidParameter', format('neighbours must be an integer from 1 to 100, got %s',
            coalesce(neighbours::text, 'NULL')));
    END IF;
    inst := imagesearch.instance_named(instance);
    part := imagesearch.partition_name(inst.id);
    RETURN QUERY EXECUTE format(
        'SELECT d.pa, d.na, d.pb, d.nb, d.score FROM ('
        ' SELECT DISTINCT ON (x.low, x.high) x.pa, x.na, x.pb, x.nb, x.score FROM ('
        '  SELECT least(a.key_digest, b.key_digest) AS low, greatest(a.key_digest, b.key_digest) AS high,'
        '         CASE WHEN a.key_digest < b.key_digest THEN a.product_id ELSE b.product_id END AS pa,'
        '         CASE WHEN a.key_digest < b.key_digest THEN a.pic_name ELSE b.pic_name END AS na,'
        '         CASE WHEN a.key_digest < b.key_digest THEN b.product_id ELSE a.product_id END AS pb,'
        '         CASE WHEN a.key_digest < b.key_digest THEN b.pic_name ELSE a.pic_name END AS nb,'
        '         imagesearch.cosine_score(b.distance) AS score'
        '  FROM imagesearch.%2$I a CROSS JOIN LATERAL ('
        '    SELECT p.key_digest, p.product_id, p.pic_name, p.embedding::@vector_schema@.halfvec(%1$s)'
        '           OPERATOR(@vector_schema@.<=>) a.embedding::@vector_schema@.halfvec(%1$s) AS distance'
        '    FROM imagesearch.%2$I p ORDER BY p.embedding::@vector_schema@.halfvec(%1$s)'
        '           OPERATOR(@vector_schema@.<=>) a.embedding::@vector_schema@.halfvec(%1$s) LIMIT $1 + 1) b'
        '  WHERE b.key_digest <> a.key_digest AND imagesearch.cosine_score(b.distance) >= $2'
        ' ) x ORDER BY x.low, x.high'
        ') d ORDER BY d.score DESC, d.pa COLLATE "C", d.na COLLATE "C", d.pb COLLATE "C", d.nb COLLATE "C"',
        inst.embedding_dim, part)
    USING neighbours, min_score;
END $$;

CREATE FUNCTION imagesearch.search_by_picture(instance text, product_id text, pic_name text, num integer DEFAULT 10,
    start integer DEFAULT 0, filter text DEFAULT NULL, category_id integer DEFAULT NULL,
    distinct_product_id boolean DEFAULT false, score_threshold double precision DEFAULT NULL)
RETURNS SETOF imagesearch.search_result
LANGUAGE plpgsql
SET hnsw.ef_search = 80 SET hnsw.iterative_scan = strict_order AS $$
DECLARE
    r imagesearch.search_plan;
    query @vector_schema@.vector;
    silhouette @vector_schema@.halfvec;
    margin double precision;
BEGIN
    PERFORM imagesearch.check_text('ProductId', product_id, 512, true);
    PERFORM imagesearch.check_text('PicName', pic_name, 512, true);
    r := imagesearch.plan_search(instance, filter, category_id, NULL, num, start, score_threshold, distinct_product_id);
    EXECUTE format('SELECT p.embedding::@vector_schema@.vector, p.silhouette FROM imagesearch.%I p'
                   ' WHERE p.key_digest = $1', r.part)
        INTO query, silhouette USING imagesearch.key_digest(product_id, pic_name);
    IF query IS NULL THEN
        PERFORM imagesearch.raise_error('NoSpecifiedSearchPic', format('no picture with ProductId %s and PicName %s',
            imagesearch.py_repr(product_id), imagesearch.py_repr(pic_name)));
    END IF;
    margin := imagesearch.silhouette_margin(r.encoder);
    IF margin IS NOT NULL AND silhouette IS NOT NULL THEN
        RETURN QUERY SELECT * FROM imagesearch.ranked(r, 'fused', query, silhouette, margin, NULL);
    ELSE
        RETURN QUERY SELECT * FROM imagesearch.ranked(r, 'vector', query, NULL, NULL, NULL);
    END IF;
END $$;

CREATE FUNCTION imagesearch.search_by_vector(instance text, query @vector_schema@.vector, num integer DEFAULT 10,
    start integer DEFAULT 0, filter text DEFAULT NULL, category_id integer DEFAULT NULL,
    distinct_product_id boolean DEFAULT false, score_threshold double precision DEFAULT NULL)
RETURNS SETOF imagesearch.search_result
LANGUAGE plpgsql
SET hnsw.ef_search = 80 SET hnsw.iterative_scan = strict_order AS $$
DECLARE
    r imagesearch.search_plan := imagesearch.plan_search(instance, filter, category_id, NULL, num, start,
                                                         score_threshold, distinct_product_id);
BEGIN
    IF query IS NULL THEN
        PERFORM imagesearch.raise_error('InvalidParameter', format('the query vector must be a list of %s numbers', r.dim));
    ELSIF @vector_schema@.vector_dims(query) <> r.dim THEN
        PERFORM imagesearch.raise_error('InvalidParameter', format(
            'the query vector has shape (%s,); the instance''s vectors have %s numbers',
            @vector_schema@.vector_dims(query), r.dim));
    ELSIF @vector_schema@.vector_norm(query) = 0 THEN
        PERFORM imagesearch.raise_error('InvalidParameter', 'the query vector is all zeros; a direction is needed');
    END IF;
    RETURN QUERY SELECT * FROM imagesearch.ranked(r, 'vector', @vector_schema@.l2_normalize(query), NULL, NULL, NULL);
END $$;

CREATE FUNCTION imagesearch.search_by_product(instance text, product_id text, num integer DEFAULT 10,
    start integer DEFAULT 0, filter text DEFAULT NULL, category_id integer DEFAULT NULL,
    distinct_product_id boolean DEFAULT false, score_threshold double precision DEFAULT NULL)
RETURNS SETOF imagesearch.search_result
LANGUAGE plpgsql
SET hnsw.ef_search = 80 SET hnsw.iterative_scan = strict_order AS $$
DECLARE
    r imagesearch.search_plan;
    queries @vector_schema@.vector[];
BEGIN
    PERFORM imagesearch.check_text('ProductId', product_id, 512, true);
    r := imagesearch.plan_search(instance, filter, category_id, product_id, num, start, score_threshold,
                                 distinct_product_id);
    EXECUTE format('SELECT array_agg(e ORDER BY n COLLATE "C") FROM (SELECT p.embedding::@vector_schema@.vector,'
                   ' p.pic_name FROM imagesearch.%I p WHERE p.product_id = $1 ORDER BY p.pic_name COLLATE "C"'
                   ' LIMIT 100) f(e, n)', r.part)
        INTO queries USING product_id;
    IF queries IS NULL THEN
        PERFORM imagesearch.raise_error('NoSpecifiedSearchPic',
            format('no pictures with ProductId %s', imagesearch.py_repr(product_id)));
    END IF;
    RETURN QUERY SELECT * FROM imagesearch.ranked(r, 'any', NULL, NULL, NULL, queries);
END $$;

-- ---- synced tables ---------------------------------------------------------------------------------------
-- A sync is its trigger: an AFTER ROW trigger of synced_row_changed on the user's table, named
-- imagesearch_sync_<instance id>, its settings in its one argument. Only a role allowed to create a trigger on
-- the table and to execute synced_row_changed (imagesearch_writer) makes one; only the table's owner drops it.
-- synced_row_changed runs as imagesearch_definer, and PostgreSQL runs a trigger function only as a trigger:
-- what it queues is a change a statement made to a row of that table. It reads only columns of built-in
-- types (or domains over them), whose casts and output functions no role can replace, so no code of a
-- caller's runs with its rights.

-- A table's name as queue items show their source: schema and name, quoted where they need it.
CREATE FUNCTION imagesearch.sync_label(p_table regclass) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT pg_catalog.format('%I.%I', n.nspname, c.relname)
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = p_table
$$;

-- A trigger's first argument, from pg_trigger.tgargs (each argument's text, then a zero byte); NULL for a
-- trigger without one.
CREATE FUNCTION imagesearch.trigger_argument(p_tgargs bytea) RETURNS text
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT CASE WHEN pg_catalog.position(p_tgargs, '\x00'::bytea) > 0
                THEN pg_catalog.convert_from(pg_catalog.substring(p_tgargs, 1, pg_catalog.position(p_tgargs, '\x00'::bytea) - 1),
                                             pg_catalog.getdatabaseencoding()) END
$$;

-- A sync's settings, read from its trigger's argument: {"instance_id": integer, "key_columns": [one or two
-- names], "picture_column": name, "attribute_columns": {API name: column name}, "picture_location": name or
-- null}. NULL for anything else (a trigger made by hand): it syncs nothing.
CREATE FUNCTION imagesearch.sync_settings(p_argument text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
    settings jsonb;
BEGIN
    settings := p_argument::jsonb;
    IF pg_catalog.jsonb_typeof(settings) = 'object'
       AND pg_catalog.jsonb_typeof(settings -> 'instance_id') = 'number'
       AND (settings ->> 'instance_id') ~ '^[0-9]{1,10}$'
       AND pg_catalog.jsonb_typeof(settings -> 'key_columns') = 'array'
       AND pg_catalog.jsonb_array_length(settings -> 'key_columns') BETWEEN 1 AND 2
       AND NOT EXISTS (SELECT FROM pg_catalog.jsonb_array_elements(settings -> 'key_columns') k
                       WHERE pg_catalog.jsonb_typeof(k) <> 'string')
       AND pg_catalog.jsonb_typeof(settings -> 'picture_column') = 'string'
       AND pg_catalog.jsonb_typeof(settings -> 'attribute_columns') = 'object'
       AND NOT EXISTS (SELECT FROM pg_catalog.jsonb_each(settings -> 'attribute_columns') a
                       WHERE pg_catalog.jsonb_typeof(a.value) <> 'string')
       AND coalesce(pg_catalog.jsonb_typeof(settings -> 'picture_location'), 'null') IN ('null', 'string') THEN
        RETURN settings;
    END IF;
    RETURN NULL;
EXCEPTION WHEN data_exception THEN  -- not JSON
    RETURN NULL;
END $$;

-- The types a synced column may have: built-in ones, whose casts and output functions no role can replace
-- (a role may give its own types, an enum or a domain, casts to text or json of its own making).
CREATE FUNCTION imagesearch.syncable_types() RETURNS oid[]
LANGUAGE sql IMMUTABLE AS $$
    -- By their fixed OIDs (a cheap constant where every changed row tests its columns against it): boolean,
    -- bytea, name, bigint, smallint, integer, text, oid, json, cidr, real, double precision, money, macaddr,
    -- inet, character, character varying, date, time, timestamp, timestamp with time zone, interval,
    -- time with time zone, numeric, uuid, jsonb.
    SELECT '{16,17,19,20,21,23,25,26,114,650,700,701,790,829,869,1042,1043,1082,1083,1114,1184,1186,1266,1700,2950,3802}'
           ::pg_catalog.oid[]
$$;

-- The types a key column may have: those whose text no session setting changes (boolean, name, bigint,
-- smallint, integer, text, oid, character, character varying, numeric, uuid).
CREATE FUNCTION imagesearch.key_types() RETURNS oid[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT '{16,19,20,21,23,25,26,1042,1043,1700,2950}'::pg_catalog.oid[]
$$;

-- Why a table cannot be synced by these columns (key, picture, attributes), or NULL: a column that is not
-- there, or one of a type not in syncable_types() (a domain included: sync a generated column instead).
CREATE FUNCTION imagesearch.unsyncable_column(p_table regclass, p_settings jsonb) RETURNS text
LANGUAGE sql STABLE AS $$
    WITH used(name) AS (
        SELECT pg_catalog.jsonb_array_elements_text(p_settings -> 'key_columns')
        UNION SELECT p_settings ->> 'picture_column'
        UNION SELECT a.value FROM pg_catalog.jsonb_each_text(p_settings -> 'attribute_columns') a
    )
    SELECT pg_catalog.format('%s: %s', coalesce(pg_catalog.quote_ident(u.name), 'NULL'),
                             CASE WHEN a.atttypid IS NULL THEN 'no such column'
                                  WHEN a.attgenerated = 'v' THEN 'a virtual generated column, which a trigger sees as NULL'
                                  WHEN a.atttypid::pg_catalog.oid <> ALL (imagesearch.syncable_types())
                                  THEN pg_catalog.format('of type %s, which a sync does not read',
                                                         pg_catalog.format_type(a.atttypid, NULL))
                                  ELSE pg_catalog.format('of type %s, which a key may not be (its text depends on '
                                                         'session settings)', pg_catalog.format_type(a.atttypid, NULL)) END)
    FROM used u LEFT JOIN pg_catalog.pg_attribute a
        ON a.attrelid = p_table AND a.attname = u.name AND a.attnum > 0 AND NOT a.attisdropped
    WHERE a.atttypid IS NULL OR a.attgenerated = 'v'
       OR a.atttypid::pg_catalog.oid <> ALL (imagesearch.syncable_types())
       OR (u.name IN (SELECT pg_catalog.jsonb_array_elements_text(p_settings -> 'key_columns'))
           AND a.atttypid::pg_catalog.oid <> ALL (imagesearch.key_types()))
    ORDER BY 1 LIMIT 1
$$;

-- The query of a synced row's values, over p_from (the table, or (SELECT ($1).*) for a row passed to EXECUTE),
-- its columns named bare (a bare name that is no column is an error, never a function of the whole row):
-- product_id and pic_name as text (a NULL product_id: the row is not synced), the picture's bytes or its
-- path in the sync's location, the attributes under the API's names as JSON, and whether it has a picture.
CREATE FUNCTION imagesearch.synced_values_sql(p_settings jsonb, p_from text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT pg_catalog.format('SELECT %1$I::pg_catalog.text AS product_id, %2$s AS pic_name, %3$s AS picture,'
                             ' %4$s AS path, %5$s AS attributes, %6$I IS NOT NULL AS has_picture FROM %7$s AS synced',
        p_settings -> 'key_columns' ->> 0,
        CASE WHEN pg_catalog.jsonb_array_length(p_settings -> 'key_columns') > 1
             THEN pg_catalog.format('%I::pg_catalog.text', p_settings -> 'key_columns' ->> 1)
             ELSE pg_catalog.format('%L::pg_catalog.text', p_settings ->> 'picture_column') END,
        CASE WHEN p_settings ->> 'picture_location' IS NULL
             THEN pg_catalog.format('%I::pg_catalog.bytea', p_settings ->> 'picture_column') ELSE 'NULL::pg_catalog.bytea' END,
        CASE WHEN p_settings ->> 'picture_location' IS NULL THEN 'NULL::pg_catalog.text'
             ELSE pg_catalog.format('%I::pg_catalog.text', p_settings ->> 'picture_column') END,
        coalesce((SELECT 'pg_catalog.jsonb_build_object(' || pg_catalog.string_agg(pg_catalog.format(
                      '%L, pg_catalog.to_jsonb(%I)', a.key, a.value), ', ' ORDER BY a.key) || ')'
                  FROM pg_catalog.jsonb_each_text(p_settings -> 'attribute_columns') a), '''{}''::pg_catalog.jsonb'),
        p_settings ->> 'picture_column', p_from)
$$;

-- What sync_table needs checked with this schema's data: the instance (its id is returned), the attribute
-- names and the storage location. It changes nothing.
CREATE FUNCTION imagesearch.sync_instance_id(instance text, attribute_columns jsonb, picture_location text)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    inst imagesearch.instances := imagesearch.instance_named(instance);
BEGIN
    IF attribute_columns IS NULL OR jsonb_typeof(attribute_columns) <> 'object'
       OR EXISTS (SELECT FROM jsonb_each(attribute_columns) a WHERE jsonb_typeof(a.value) <> 'string') THEN
        PERFORM imagesearch.raise_error('InvalidParameter',
            'attribute_columns must be a JSON object of attribute names to column names, such as {"IntAttr": "price"}');
    END IF;
    PERFORM imagesearch.check_queued_attributes(inst.service_type,
        (SELECT coalesce(jsonb_object_agg(key, NULL), '{}') FROM jsonb_each(attribute_columns)));
    IF picture_location IS NOT NULL AND NOT EXISTS (
            SELECT FROM imagesearch.storage_locations l WHERE l.name = picture_location
            AND (l.instances IS NULL OR inst.name = ANY (l.instances))) THEN
        PERFORM imagesearch.raise_error('InvalidParameter', format('no storage location %s for instance %s',
            imagesearch.py_repr(picture_location), imagesearch.py_repr(inst.name)));
    END IF;
    RETURN inst.id;
END $$;

-- A row that was in the table before its sync began, queued by sync_table (which read it as its caller) as
-- the trigger queues an inserted one: to the instance of the table's sync, its location, its name as source.
-- False if the table carries no sync of that instance.
CREATE FUNCTION imagesearch.queue_synced_row(p_instance_id integer, p_source regclass, p_product_id text,
                                             p_pic_name text, p_picture bytea, p_path text, p_attributes jsonb)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    settings jsonb := (SELECT imagesearch.sync_settings(imagesearch.trigger_argument(t.tgargs)) FROM pg_trigger t
                       WHERE t.tgrelid = p_source AND t.tgname = 'imagesearch_sync_' || p_instance_id
                         AND t.tgfoid = 'imagesearch.synced_row_changed()'::regprocedure);
BEGIN
    IF settings IS NULL OR settings ->> 'instance_id' <> p_instance_id::text THEN
        RETURN false;
    END IF;
    INSERT INTO imagesearch.picture_queue
        (instance_id, operation, product_id, pic_name, picture, location, path, attributes, source)
    VALUES (p_instance_id, 'add', p_product_id, p_pic_name, p_picture, settings ->> 'picture_location', p_path,
            coalesce(p_attributes, '{}'), imagesearch.sync_label(p_source));
    RETURN true;
END $$;

-- One changed row of a synced table, as queue items: a new or re-pictured row is an add (embedded again),
-- an attribute-only change an update, a deleted row (or one whose key or picture went away) a delete.
CREATE FUNCTION imagesearch.synced_row_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    settings jsonb;
    instance_id integer;
    source constant text := format('%I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME);
    reading text;
    was record;
    now_ record;
    had boolean := false;     -- the row was synced: a ProductId and a picture
    has boolean := false;     -- and is now
    moved boolean := false;   -- to another key
    repictured boolean := false;
    columns text[];
BEGIN
    IF TG_WHEN <> 'AFTER' OR TG_LEVEL <> 'ROW' OR TG_OP NOT IN ('INSERT', 'UPDATE', 'DELETE') THEN
        RAISE EXCEPTION 'imagesearch.synced_row_changed syncs a table as an AFTER INSERT OR UPDATE OR DELETE '
                        'FOR EACH ROW trigger, made by imagesearch.sync_table';
    END IF;
    -- Settings of any other shape (a trigger made by hand) make this fail before anything is read: every name
    -- in them goes into SQL as a quoted identifier or literal, and each of its columns is checked below.
    settings := TG_ARGV[0]::jsonb;
    instance_id := (settings ->> 'instance_id')::integer;
    IF TG_NAME <> 'imagesearch_sync_' || instance_id THEN  -- one sync per table and instance, found by its name
        RAISE EXCEPTION 'imagesearch: trigger % on % is no sync of instance %: a sync''s trigger is named '
                        'imagesearch_sync_<instance id>', quote_ident(TG_NAME), source, instance_id
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT FROM imagesearch.instances i WHERE i.id = instance_id) THEN
        -- Its instance was deleted: the user's writes go on; the trigger is theirs to drop.
        RAISE WARNING 'imagesearch: table % is no longer synced (its instance was deleted); DROP TRIGGER % ON % removes this trigger',
            source, quote_ident(TG_NAME), source;
        RETURN NULL;
    END IF;
    -- Checked at every change, before any value is read (a table's owner may alter a column after the sync
    -- began; nothing alters it during this statement): each column is there, of a syncable type.
    columns := ARRAY(SELECT pg_catalog.jsonb_array_elements_text(settings -> 'key_columns'))
               || (settings ->> 'picture_column')
               || ARRAY(SELECT a.value FROM pg_catalog.jsonb_each_text(settings -> 'attribute_columns') a);
    IF (SELECT pg_catalog.count(*) FROM pg_catalog.pg_attribute a
        WHERE a.attrelid = TG_RELID AND a.attname = ANY (columns) AND a.attnum > 0 AND NOT a.attisdropped
          AND a.attgenerated <> 'v' AND a.atttypid::pg_catalog.oid = ANY (imagesearch.syncable_types())
          AND (a.atttypid::pg_catalog.oid = ANY (imagesearch.key_types())
               OR NOT a.attname::pg_catalog.text = ANY (columns[1:pg_catalog.jsonb_array_length(settings -> 'key_columns')])))
       <> (SELECT pg_catalog.count(DISTINCT c) FROM pg_catalog.unnest(columns) c) THEN
        RAISE EXCEPTION 'imagesearch: table % is synced, and its column %', source,
            coalesce(imagesearch.unsyncable_column(TG_RELID, settings), 'settings are not a sync''s')
            USING ERRCODE = 'wrong_object_type',
                  HINT = 'A synced table''s key, picture and attribute columns are of built-in types (a generated '
                         'text column can stand in for another); or unsync it with imagesearch.unsync_table.';
    END IF;
    reading := imagesearch.synced_values_sql(settings, '(SELECT ($1).*)');
    IF TG_OP <> 'INSERT' THEN
        EXECUTE reading INTO was USING OLD;
        had := was.product_id IS NOT NULL AND was.has_picture;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        EXECUTE reading INTO now_ USING NEW;
        has := now_.product_id IS NOT NULL AND now_.has_picture;
    END IF;
    IF had AND has THEN
        moved := (was.product_id, was.pic_name) IS DISTINCT FROM (now_.product_id, now_.pic_name);
        repictured := was.picture IS DISTINCT FROM now_.picture OR was.path IS DISTINCT FROM now_.path;
    END IF;
    IF had AND (moved OR NOT has) THEN
        INSERT INTO imagesearch.picture_queue (instance_id, operation, product_id, pic_name, source)
        VALUES (instance_id, 'delete', was.product_id, was.pic_name, source);
    END IF;
    IF NOT has THEN
        RETURN NULL;
    END IF;
    IF NOT had OR moved OR repictured THEN
        INSERT INTO imagesearch.picture_queue
            (instance_id, operation, product_id, pic_name, picture, location, path, attributes, source)
        VALUES (instance_id, 'add', now_.product_id, now_.pic_name, now_.picture, settings ->> 'picture_location',
                now_.path, now_.attributes, source);
    ELSIF was.attributes IS DISTINCT FROM now_.attributes THEN
        INSERT INTO imagesearch.picture_queue (instance_id, operation, product_id, pic_name, attributes, source)
        VALUES (instance_id, 'update', now_.product_id, now_.pic_name, now_.attributes, source);
    END IF;
    RETURN NULL;
END $$;

-- Keep the pictures of a table of your own in an instance: every row with a picture is queued now, and
-- the trigger queues every later insert, update and delete. key_columns: ProductId's column, then PicName's
-- (without one, PicName is the picture column's name). The picture column is bytea (the file's bytes), or
-- text with picture_location: paths inside that storage location. Returns how many rows were queued.
-- It runs as its caller, who must be allowed to create a trigger on the table, read it and write it.
CREATE FUNCTION imagesearch.sync_table(instance text, source regclass, key_columns text[], picture_column text,
                                       attribute_columns jsonb DEFAULT '{}', picture_location text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    instance_id constant integer := imagesearch.sync_instance_id(instance, attribute_columns, picture_location);
    picture_type constant text := CASE WHEN picture_location IS NULL THEN 'bytea' ELSE 'text' END;
    trigger_name constant text := 'imagesearch_sync_' || instance_id;
    label text;
    settings jsonb;
    kind text;
    column_name text;
    unsafe text;
    queued integer;
BEGIN
    IF source IS NULL THEN
        PERFORM imagesearch.raise_error('MissingParameter', 'source is required');
    END IF;
    IF key_columns IS NULL OR cardinality(key_columns) NOT BETWEEN 1 AND 2 OR array_position(key_columns, NULL) IS NOT NULL THEN
        PERFORM imagesearch.raise_error('InvalidParameter',
            'key_columns must name ProductId''s column, and optionally PicName''s: 1 or 2 columns');
    END IF;
    IF picture_column IS NULL THEN
        PERFORM imagesearch.raise_error('MissingParameter', 'picture_column is required');
    END IF;
    label := imagesearch.sync_label(source);
    IF (SELECT c.relkind FROM pg_class c WHERE c.oid = source) NOT IN ('r', 'p') THEN
        PERFORM imagesearch.raise_error('InvalidParameter', format('%s is not a table; a sync follows a table''s rows', label));
    END IF;
    FOREACH column_name IN ARRAY key_columns || picture_column
                                 || ARRAY(SELECT value FROM jsonb_each_text(attribute_columns)) LOOP
        kind := (SELECT format_type(a.atttypid, NULL) FROM pg_attribute a
                 WHERE a.attrelid = source AND a.attname = column_name AND a.attnum > 0 AND NOT a.attisdropped);
        IF kind IS NULL THEN
            PERFORM imagesearch.raise_error('InvalidParameter',
                format('table %s has no column %s', label, imagesearch.py_repr(column_name)));
        END IF;
        IF column_name = picture_column AND kind <> picture_type THEN
            PERFORM imagesearch.raise_error('InvalidParameter', format(
                'the picture column %s is %s; it must be bytea (the file''s bytes), or text with picture_location',
                imagesearch.py_repr(column_name), kind));
        END IF;
    END LOOP;
    settings := jsonb_build_object('instance_id', instance_id, 'key_columns', to_jsonb(key_columns),
                                   'picture_column', picture_column, 'attribute_columns', attribute_columns,
                                   'picture_location', picture_location);
    unsafe := imagesearch.unsyncable_column(source, settings);
    IF unsafe IS NOT NULL THEN
        PERFORM imagesearch.raise_error('InvalidParameter', format(
            'table %s cannot be synced by column %s: a synced column is of a built-in type (a boolean, number, '
            'text, uuid, bytea, date, time, json or network type); sync a generated column of type text instead',
            label, unsafe));
    END IF;
    IF NOT has_table_privilege(source, 'SELECT') OR NOT has_any_column_privilege(source, 'INSERT, UPDATE') THEN
        PERFORM imagesearch.raise_error('NoPermission',
            format('table %s must be readable and writable by the role that syncs it', label));
    END IF;
    IF EXISTS (SELECT FROM pg_trigger t WHERE t.tgrelid = source AND t.tgname = trigger_name) THEN
        PERFORM imagesearch.raise_error('InvalidParameter',
            format('table %s is already synced to instance %s', label, imagesearch.py_repr(instance)));
    END IF;
    EXECUTE format('CREATE TRIGGER %I AFTER INSERT OR UPDATE OR DELETE ON %s FOR EACH ROW'
                   ' EXECUTE FUNCTION imagesearch.synced_row_changed(%L)', trigger_name, label, settings::text);
    -- The rows already there: read as this role, queued as if each were inserted now.
    EXECUTE format('SELECT count(*) FILTER (WHERE imagesearch.queue_synced_row($1, $2, v.product_id, v.pic_name,'
                   ' v.picture, v.path, v.attributes)) FROM (%s) v WHERE v.product_id IS NOT NULL AND v.has_picture',
                   imagesearch.synced_values_sql(settings, label))
        INTO queued USING instance_id, source;
    RETURN queued;
END $$;

-- Stop syncing a table: its trigger goes (dropping it needs the table's owner); its pictures stay.
CREATE FUNCTION imagesearch.unsync_table(instance text, source regclass) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    trigger_name constant text := 'imagesearch_sync_' || imagesearch.sync_instance_id(instance, '{}', NULL);
BEGIN
    IF NOT EXISTS (SELECT FROM pg_trigger t WHERE t.tgrelid = source AND t.tgname = trigger_name
                   AND t.tgfoid = 'imagesearch.synced_row_changed()'::regprocedure) THEN
        PERFORM imagesearch.raise_error('InvalidParameter', format('table %s is not synced to instance %s',
            source, imagesearch.py_repr(instance)));
    END IF;
    EXECUTE format('DROP TRIGGER %I ON %s', trigger_name, source);
END $$;

-- ---- pictures, shards and roles --------------------------------------------------------------------------

-- The service's own connections search pg_catalog alone (store/database.py): what they call names every other
-- object with its schema, pgvector's and dblink's included.

-- Run a statement on a shard, through dblink over its foreign server.
CREATE FUNCTION imagesearch.shard_exec(p_server name, p_statement text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('SELECT %I.dblink_exec($1, $2)', (SELECT n.nspname FROM pg_extension e
                                                     JOIN pg_namespace n ON n.oid = e.extnamespace
                                                     WHERE e.extname = 'dblink'))
        USING p_server, p_statement;
END $$;

-- As sql/0020's, and readable by the SQL surface's functions (imagesearch_definer), here or on a shard.
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
        EXECUTE format('ALTER TABLE imagesearch.%I ADD CONSTRAINT %I CHECK (@vector_schema@.vector_dims(embedding) = %s)',
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
        PERFORM imagesearch.shard_exec(srv, format(
            'CREATE TABLE imagesearch.%I (%s, PRIMARY KEY (instance_id, key_digest),'
            ' CONSTRAINT %I CHECK (instance_id = %s), CONSTRAINT %I CHECK (@vector_schema@.vector_dims(embedding) = %s))',
            part, columns, part || '_instance', p_instance_id, part || '_dim', p_dim));
        PERFORM imagesearch.shard_exec(srv, format('ALTER TABLE imagesearch.%I ALTER COLUMN embedding SET STORAGE PLAIN', part));
        PERFORM imagesearch.shard_exec(srv, format('ALTER TABLE imagesearch.%I ALTER COLUMN thumbnail SET STORAGE EXTERNAL', part));
        FOR ix IN SELECT pg_get_indexdef(indexrelid) AS def, c.relname FROM pg_index JOIN pg_class c ON c.oid = indexrelid
                  WHERE indrelid = 'imagesearch.pictures'::regclass AND NOT indisunique LOOP
            PERFORM imagesearch.shard_exec(srv, replace(replace(ix.def, 'ON ONLY imagesearch.pictures ', format('ON imagesearch.%I ', part)),
                                                        'INDEX ' || ix.relname || ' ', format('INDEX %I ', replace(ix.relname, 'pictures_', part || '_'))));
        END LOOP;
        -- With the defaults: a foreign table sends every column, NULL where it has no default of its own.
        EXECUTE format('IMPORT FOREIGN SCHEMA imagesearch LIMIT TO (%I) FROM SERVER %I INTO imagesearch'
                       ' OPTIONS (import_default %L)', part, srv, 'true');
    END IF;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'imagesearch_definer') THEN
        EXECUTE format('GRANT SELECT ON imagesearch.%I TO imagesearch_definer', part);
    END IF;
    PERFORM imagesearch.create_picture_index(p_instance_id);
END $$;

CREATE FUNCTION imagesearch.drop_picture_partition(p_instance_id integer) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    part text := imagesearch.partition_name(p_instance_id);
    srv name := imagesearch.shard_server(p_instance_id);
BEGIN
    -- CASCADE: whatever another role made depend on the instance's table (a view, a column's regclass default)
    -- goes with it, rather than keep the instance from ever being deleted.
    IF srv IS NULL THEN
        EXECUTE format('DROP TABLE IF EXISTS imagesearch.%I CASCADE', part);
    ELSE
        EXECUTE format('DROP FOREIGN TABLE IF EXISTS imagesearch.%I CASCADE', part);
        PERFORM imagesearch.shard_exec(srv, format('DROP TABLE IF EXISTS imagesearch.%I', part));
    END IF;
END $$;

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
    ddl := format('CREATE INDEX IF NOT EXISTS %I ON imagesearch.%I USING hnsw ((%I::@vector_schema@.halfvec(%s))'
                  ' @vector_schema@.halfvec_cosine_ops) WITH (m = 16, ef_construction = 64)',
                  part || '_' || p_column || '_hnsw', part, p_column, dim);
    IF srv IS NULL THEN
        EXECUTE ddl;
    ELSE
        PERFORM imagesearch.shard_exec(srv, ddl);
    END IF;
END $$;

CREATE FUNCTION imagesearch.drop_vector_index(p_instance_id integer, p_column text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    ddl text := format('DROP INDEX IF EXISTS imagesearch.%I CASCADE',  -- nothing another role made keeps it
                       imagesearch.partition_name(p_instance_id) || '_' || p_column || '_hnsw');
    srv name := imagesearch.shard_server(p_instance_id);
BEGIN
    IF srv IS NULL THEN
        EXECUTE ddl;
    ELSE
        PERFORM imagesearch.shard_exec(srv, ddl);
    END IF;
END $$;

-- The login the SQL surface's functions use on a shard (they read its foreign tables as imagesearch_definer):
-- a copy of the service's, which that role cannot read (it has no USAGE on the foreign server).
CREATE FUNCTION imagesearch.map_shard_for_definer(p_server name) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    options text[] := (SELECT m.umoptions FROM pg_user_mappings m WHERE m.srvname = p_server AND m.usename = current_user);
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'imagesearch_definer') THEN
        RETURN;
    END IF;
    EXECUTE format('DROP USER MAPPING IF EXISTS FOR imagesearch_definer SERVER %I', p_server);
    -- postgres_fdw lets a role without superuser use a login only if the shard asked for its password; a
    -- superuser may waive that (a shard that trusts this host). The role cannot point it anywhere else: it has
    -- no USAGE on the server, so it cannot make foreign tables of its own.
    IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        options := options || 'password_required=false'::text;
    END IF;
    EXECUTE format('CREATE USER MAPPING FOR imagesearch_definer SERVER %I OPTIONS (%s)', p_server,
                   (SELECT string_agg(format('%I %L', split_part(o, '=', 1), substr(o, strpos(o, '=') + 1)), ', ')
                    FROM unnest(options) o));
END $$;

CREATE FUNCTION imagesearch.add_shard(p_name text, p_host text, p_port integer, p_dbname text, p_user text,
                                      p_password text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    srv text := 'imagesearch_shard_' || p_name;
    fn record;
BEGIN
    -- Beside pgvector (a search_path of pg_catalog alone names no schema to make them in).
    CREATE EXTENSION IF NOT EXISTS postgres_fdw SCHEMA @vector_schema@;
    CREATE EXTENSION IF NOT EXISTS dblink SCHEMA @vector_schema@;
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
    PERFORM imagesearch.map_shard_for_definer(srv);
    BEGIN
        PERFORM imagesearch.shard_exec(srv, 'CREATE EXTENSION IF NOT EXISTS vector');
        PERFORM imagesearch.shard_exec(srv, 'CREATE SCHEMA IF NOT EXISTS imagesearch');
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
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'imagesearch_definer') THEN
            EXECUTE format('DROP USER MAPPING IF EXISTS FOR imagesearch_definer SERVER %I', srv);
        END IF;
        EXECUTE format('DROP SERVER IF EXISTS %I', srv);
    END IF;
END $$;

-- The guard's function (grant_roles makes the event trigger): no DDL command runs as imagesearch_definer, which
-- has no reason to run any.
CREATE FUNCTION imagesearch.refuse_definer_ddl() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF current_user = 'imagesearch_definer' THEN
        RAISE EXCEPTION 'imagesearch: % refused: the role imagesearch_definer changes no object', tg_tag
            USING ERRCODE = 'insufficient_privilege';
    END IF;
END $$;

-- Who may use the SQL surface (docs/sql.md, "Roles" and "Security model"), applied again after every
-- migration that defines functions anew. imagesearch_reader searches and reads the views; imagesearch_writer
-- also adds, deletes and syncs; the public functions run as imagesearch_definer. The three roles are made
-- here if missing and this user may; if not, a DBA makes them (docs/sql.md) and this user runs
-- SELECT imagesearch.grant_roles(); until then nobody is granted the surface.
CREATE FUNCTION imagesearch.grant_roles() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    definer constant text[] := ARRAY[
        'search_by_picture(text, text, text, integer, integer, text, integer, boolean, double precision)',
        'search_by_vector(text, @vector_schema@.vector, integer, integer, text, integer, boolean, double precision)',
        'search_by_product(text, text, integer, integer, text, integer, boolean, double precision)',
        'duplicate_pairs(text, double precision, integer)',
        'add_image(text, text, text, bytea, jsonb)',
        'add_image_from_storage(text, text, text, text, text, jsonb)',
        'delete_image(text, text, text)',
        'retry_failed(text)',
        'sync_instance_id(text, jsonb, text)',
        'queue_synced_row(integer, regclass, text, text, bytea, text, jsonb)',
        'synced_row_changed()'];
    reading constant text[] := definer[1:4];
    -- sync_table and unsync_table run as their caller: they and their pure helpers (a message, an error).
    writing constant text[] := definer[5:11] || ARRAY['sync_table(text, regclass, text[], text, jsonb, text)',
        'unsync_table(text, regclass)', 'raise_error(text, text)', 'py_repr(text)', 'sync_label(regclass)',
        'synced_values_sql(jsonb, text)', 'unsyncable_column(regclass, jsonb)', 'syncable_types()', 'key_types()',
        -- and the synced_tables view's (functions in a view run with the rights of whoever reads it)
        'sync_settings(text)', 'trigger_argument(bytea)'];
    -- What the definer functions call, with the definer's rights: the surface's own steps.
    steps constant text[] := ARRAY['raise_error(text, text)', 'py_repr(text)', 'filter_shown(text, boolean)',
        'filter_fail(integer, text)', 'compile_filter(text)', 'check_text(text, text, integer, boolean)',
        'check_window(integer, integer, double precision)', 'instance_named(text)', 'checked_category(text, integer)',
        'partition_name(integer)', 'key_digest(text, text)', 'cosine_score(double precision)',
        'silhouette_margin(text)',
        'plan_search(text, text, integer, text, integer, integer, double precision, boolean)',
        'scan(imagesearch.search_plan, @vector_schema@.vector, integer, boolean)',
        'nearest(imagesearch.search_plan, @vector_schema@.vector, integer)',
        'nearest_fused(imagesearch.search_plan, @vector_schema@.vector, @vector_schema@.halfvec, double precision, integer)',
        'nearest_any(imagesearch.search_plan, @vector_schema@.vector[], integer)',
        'ranked(imagesearch.search_plan, text, @vector_schema@.vector, @vector_schema@.halfvec, double precision, @vector_schema@.vector[])',
        'check_queued_attributes(text, jsonb)',
        'enqueue(text, text, text, text, bytea, text, text, jsonb, text)',
        'sync_settings(text)', 'trigger_argument(bytea)', 'sync_label(regclass)', 'synced_values_sql(jsonb, text)',
        'unsyncable_column(regclass, jsonb)', 'syncable_types()', 'key_types()'];
    missing text[];
    fn text;
    part record;
BEGIN
    -- Internal steps are not an interface: nobody but their owner calls them (functions are PUBLIC's by
    -- default). The roles' grants are made again below, once the definer functions are the definer's.
    REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA imagesearch FROM PUBLIC;
    FOREACH fn IN ARRAY ARRAY['imagesearch_reader', 'imagesearch_writer'] LOOP
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = fn) THEN
            EXECUTE format('REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA imagesearch FROM %I', fn);
        END IF;
    END LOOP;
    missing := ARRAY(SELECT r FROM unnest(ARRAY['imagesearch_definer', 'imagesearch_reader', 'imagesearch_writer']) r
                     WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r));
    BEGIN
        FOREACH fn IN ARRAY missing LOOP
            EXECUTE format('CREATE ROLE %I NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS', fn);
        END LOOP;
        -- This user hands the functions to the definer and redefines them later: it must be able to act as
        -- their owner. (A role made by a user with CREATEROLE is only administered by it, from PostgreSQL 16.)
        IF current_setting('server_version_num')::integer >= 160000 THEN
            IF NOT (pg_has_role('imagesearch_definer', 'SET') AND pg_has_role('imagesearch_definer', 'USAGE')) THEN
                EXECUTE format('GRANT imagesearch_definer TO %I WITH INHERIT TRUE, SET TRUE', current_user);
            END IF;
        ELSIF NOT pg_has_role('imagesearch_definer', 'USAGE') THEN
            EXECUTE format('GRANT imagesearch_definer TO %I', current_user);
        END IF;
    EXCEPTION WHEN insufficient_privilege THEN
        RAISE NOTICE 'imagesearch: this user may not make the roles of the SQL surface or act as imagesearch_definer, '
                     'so no role is granted the surface. A DBA runs: %GRANT imagesearch_definer TO %; and then this '
                     'user runs SELECT imagesearch.grant_roles(); (docs/sql.md)',
            (SELECT string_agg(format('CREATE ROLE %I NOLOGIN; ', r), '') FROM unnest(missing) r), quote_ident(current_user);
        RETURN;
    END;
    -- The definer must be a role without power of its own: never a superuser, never able to make or become
    -- other roles, never past row security, a member of nothing.
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'imagesearch_definer'
               AND (rolsuper OR rolcreaterole OR rolbypassrls OR rolcreatedb OR rolreplication OR rolcanlogin))
       OR EXISTS (SELECT FROM pg_auth_members WHERE member = 'imagesearch_definer'::regrole) THEN
        RAISE EXCEPTION 'imagesearch: the role imagesearch_definer must be NOLOGIN, without SUPERUSER, CREATEDB, '
                        'CREATEROLE, REPLICATION or BYPASSRLS, and a member of no role';
    END IF;
    -- Ownership passes only to a role that may create in the schema: for that moment, and no longer.
    GRANT CREATE ON SCHEMA imagesearch TO imagesearch_definer;
    FOREACH fn IN ARRAY definer LOOP
        EXECUTE format('ALTER FUNCTION imagesearch.%s OWNER TO imagesearch_definer', fn);
        -- Every setting as written here, whatever was set since (its owner may alter it: see the guard below).
        EXECUTE format('ALTER FUNCTION imagesearch.%s RESET ALL', fn);
        -- Their bodies are compiled in the caller's session: string literals read as written, whatever it set.
        EXECUTE format('ALTER FUNCTION imagesearch.%s SECURITY DEFINER SET search_path = pg_catalog, pg_temp'
                       ' SET standard_conforming_strings = on', fn);
        IF fn = ANY (reading) THEN
            EXECUTE format('ALTER FUNCTION imagesearch.%s SET hnsw.ef_search = 80 SET hnsw.iterative_scan = strict_order', fn);
        END IF;
    END LOOP;
    REVOKE CREATE ON SCHEMA imagesearch FROM imagesearch_definer;
    -- The owner of a function may alter it (make it SECURITY INVOKER, give it another search_path), and these
    -- run as their owner: code that ever ran as imagesearch_definer could turn its functions against their
    -- callers. An event trigger refuses every DDL command run as that role; only a superuser may make one.
    IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        IF NOT EXISTS (SELECT FROM pg_event_trigger WHERE evtname = 'imagesearch_definer_guard') THEN
            CREATE EVENT TRIGGER imagesearch_definer_guard ON ddl_command_start
                EXECUTE FUNCTION imagesearch.refuse_definer_ddl();
        END IF;
    ELSIF NOT EXISTS (SELECT FROM pg_event_trigger WHERE evtname = 'imagesearch_definer_guard') THEN
        RAISE NOTICE 'imagesearch: without a superuser, the guard that keeps imagesearch_definer from altering its '
                     'own functions is not made; a superuser runs: CREATE EVENT TRIGGER imagesearch_definer_guard '
                     'ON ddl_command_start EXECUTE FUNCTION imagesearch.refuse_definer_ddl(); (docs/sql.md)';
    END IF;

    GRANT USAGE ON SCHEMA imagesearch TO imagesearch_definer;
    FOREACH fn IN ARRAY steps LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION imagesearch.%s TO imagesearch_definer', fn);
    END LOOP;
    GRANT SELECT ON imagesearch.instances, imagesearch.category_list TO imagesearch_definer;
    GRANT SELECT (name, instances) ON imagesearch.storage_locations TO imagesearch_definer;
    GRANT SELECT, INSERT, UPDATE ON imagesearch.picture_queue TO imagesearch_definer;
    GRANT USAGE ON SEQUENCE imagesearch.picture_queue_id_seq TO imagesearch_definer;
    FOR part IN SELECT id FROM imagesearch.instances LOOP
        EXECUTE format('GRANT SELECT ON imagesearch.%I TO imagesearch_definer', imagesearch.partition_name(part.id));
    END LOOP;
    FOR part IN SELECT server FROM imagesearch.shards LOOP
        PERFORM imagesearch.map_shard_for_definer(part.server);
    END LOOP;

    IF NOT pg_has_role('imagesearch_writer', 'imagesearch_reader', 'MEMBER') THEN
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
