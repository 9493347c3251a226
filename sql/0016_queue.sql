-- Writing pictures from SQL (docs/sql.md): add_image and delete_image enqueue, synced tables enqueue from
-- triggers, and the worker (imagesearch_pg/tasks/picture_queue.py) takes each item through AddImage's own
-- steps. Status and errors are views; failed items can be retried.

CREATE TABLE imagesearch.picture_queue (
    id bigserial PRIMARY KEY,
    instance_id integer NOT NULL REFERENCES imagesearch.instances (id) ON DELETE CASCADE,
    operation text NOT NULL CHECK (operation IN ('add', 'update', 'delete')),
    product_id text NOT NULL,
    pic_name text,                      -- NULL: a delete of every picture of the product
    picture bytea,                      -- an add's picture, dropped once it is done ...
    location text,                      -- ... or the storage location and path it is read from
    path text,
    attributes jsonb NOT NULL DEFAULT '{}',
    source text NOT NULL,               -- 'add_image', 'delete_image' or the synced table
    state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    error_code text,
    error_message text,
    enqueued_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
-- The worker's claim: an instance's pending items in the order they came.
CREATE INDEX picture_queue_pending_idx ON imagesearch.picture_queue (instance_id, id) WHERE state = 'pending';

CREATE TABLE imagesearch.synced_tables (
    id serial PRIMARY KEY,
    instance_id integer NOT NULL REFERENCES imagesearch.instances (id) ON DELETE CASCADE,
    source regclass NOT NULL,
    key_columns text[] NOT NULL,        -- ProductId's column, then PicName's if there is one
    picture_column text NOT NULL,
    attribute_columns jsonb NOT NULL,   -- {"IntAttr": "price_cents", ...}: the API's key -> the column
    picture_location text,              -- a text picture column holds paths inside this storage location
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (instance_id, source)
);

-- Wakes the workers (tasks/worker.py listens) when the enqueuing transaction commits.
CREATE FUNCTION imagesearch.notify_picture_queue() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('imagesearch_pictures', NEW.instance_id::text);
    RETURN NULL;
END $$;

CREATE TRIGGER picture_queue_notify AFTER INSERT OR UPDATE OF state ON imagesearch.picture_queue
FOR EACH ROW WHEN (NEW.state = 'pending') EXECUTE FUNCTION imagesearch.notify_picture_queue();

-- ---- the checks an item gets when it is enqueued ---------------------------------------------------------
-- The worker checks every item again through the service (tasks/picture_queue.queued_add); these refuse at
-- once what needs no picture to be refused, with the same messages (tests/test_sql_queue.py compares them).

CREATE FUNCTION imagesearch.check_queued_attributes(p_service_type text, p_attributes jsonb) RETURNS void
LANGUAGE plpgsql STABLE AS $$
DECLARE
    allowed constant text[] := ARRAY['CustomContent', 'IntAttr', 'IntAttr2', 'IntAttr3', 'IntAttr4', 'StrAttr',
                                     'StrAttr2', 'StrAttr3', 'StrAttr4', 'CategoryId', 'Crop', 'Region'];
    key text;
    value jsonb;
BEGIN
    IF p_attributes IS NULL OR jsonb_typeof(p_attributes) <> 'object' THEN
        PERFORM imagesearch.raise_error('InvalidParameter', format(
            'attributes must be a JSON object of %s, got %s', array_to_string(allowed, ', '),
            coalesce(jsonb_typeof(p_attributes), 'NULL')));
    END IF;
    FOR key, value IN SELECT e.key, e.value FROM jsonb_each(p_attributes) e ORDER BY e.key COLLATE "C" LOOP
        IF NOT key = ANY (allowed) THEN
            PERFORM imagesearch.raise_error('InvalidParameter', format('unknown attribute %s; allowed: %s',
                imagesearch.py_repr(key), array_to_string(allowed, ', ')));
        END IF;
        CONTINUE WHEN jsonb_typeof(value) = 'null';
        IF key LIKE 'IntAttr%' THEN
            IF jsonb_typeof(value) <> 'number' OR value::text !~ '^-?[0-9]+$' THEN
                PERFORM imagesearch.raise_error('InvalidParameter', key || ' must be an integer');
            ELSIF value::text::numeric NOT BETWEEN -2147483648 AND 2147483647 THEN
                PERFORM imagesearch.raise_error('InvalidParameter', format(
                    '%s must be a 32-bit signed integer (-2147483648..2147483647), got %s', key, value::text));
            END IF;
        ELSIF key LIKE 'StrAttr%' OR key IN ('CustomContent', 'Region') THEN
            IF jsonb_typeof(value) <> 'string' THEN
                PERFORM imagesearch.raise_error('InvalidParameter', key || ' must be a string');
            END IF;
            IF key <> 'Region' THEN
                PERFORM imagesearch.check_text(key, value #>> '{}', CASE key WHEN 'CustomContent' THEN 4096 ELSE 128 END, false);
            END IF;
        ELSIF key = 'Crop' THEN
            IF jsonb_typeof(value) <> 'boolean' THEN
                PERFORM imagesearch.raise_error('InvalidParameter', 'Crop must be true or false');
            END IF;
        ELSIF key = 'CategoryId' AND p_service_type = 'product' AND (jsonb_typeof(value) <> 'number'
                OR value::text !~ '^-?[0-9]+$' OR NOT EXISTS (
                    SELECT FROM imagesearch.category_list c WHERE c.category_id::text = value::text)) THEN
            PERFORM imagesearch.raise_error('InvalidCategory', format('CategoryId %s is not a category; allowed: %s',
                CASE jsonb_typeof(value) WHEN 'string' THEN imagesearch.py_repr(value #>> '{}')
                     WHEN 'boolean' THEN initcap(value::text) ELSE value::text END,
                (SELECT string_agg(c.category_id::text, ', ' ORDER BY c.category_id) FROM imagesearch.category_list c)));
        END IF;
    END LOOP;
END $$;

CREATE FUNCTION imagesearch.enqueue(p_instance text, p_operation text, p_product_id text, p_pic_name text,
                                    p_picture bytea, p_location text, p_path text, p_attributes jsonb, p_source text)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    inst imagesearch.instances := imagesearch.instance_named(p_instance);
    queued bigint;
BEGIN
    INSERT INTO imagesearch.picture_queue
        (instance_id, operation, product_id, pic_name, picture, location, path, attributes, source)
    VALUES (inst.id, p_operation, p_product_id, p_pic_name, p_picture, p_location, p_path,
            coalesce(p_attributes, '{}'), p_source)
    RETURNING id INTO queued;
    RETURN queued;
END $$;

-- ---- the public functions ------------------------------------------------------------------------------

-- Queue a picture (its file's bytes) to be stored under (product_id, pic_name) as AddImage would, with
-- attributes under the API's names; returns the item's id (queue_status shows how it went).
CREATE FUNCTION imagesearch.add_image(instance text, product_id text, pic_name text, picture bytea,
                                      attributes jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM imagesearch.check_text('ProductId', product_id, 512, true);
    PERFORM imagesearch.check_text('PicName', pic_name, 512, true);
    IF picture IS NULL OR length(picture) = 0 THEN
        PERFORM imagesearch.raise_error('MissingParameter', 'PicContent is required');
    ELSIF length(picture) > 4 * 1024 * 1024 THEN
        PERFORM imagesearch.raise_error('InvalidImageSize',
            format('the picture is %s bytes; at most %s (4 MB) are allowed', length(picture), 4 * 1024 * 1024));
    END IF;
    PERFORM imagesearch.check_queued_attributes((imagesearch.instance_named(instance)).service_type, attributes);
    RETURN imagesearch.enqueue(instance, 'add', product_id, pic_name, picture, NULL, NULL, attributes, 'add_image');
END $$;

-- The same with the picture read by the worker from a file of a declared storage location
-- (`imagesearch storage add`); the path is checked as a batch import's PicName is.
CREATE FUNCTION imagesearch.add_image_from_storage(instance text, product_id text, pic_name text, location text,
                                                   path text, attributes jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM imagesearch.check_text('ProductId', product_id, 512, true);
    PERFORM imagesearch.check_text('PicName', pic_name, 512, true);
    PERFORM imagesearch.check_text('location', location, 64, true);
    PERFORM imagesearch.check_text('path', path, 1024, true);
    PERFORM imagesearch.check_queued_attributes((imagesearch.instance_named(instance)).service_type, attributes);
    RETURN imagesearch.enqueue(instance, 'add', product_id, pic_name, NULL, location, path, attributes,
                               'add_image_from_storage');
END $$;

-- Queue the delete of a picture, or of every picture of a product when pic_name is NULL.
CREATE FUNCTION imagesearch.delete_image(instance text, product_id text, pic_name text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM imagesearch.check_text('ProductId', product_id, 512, true);
    PERFORM imagesearch.check_text('PicName', pic_name, 512, false);
    IF pic_name = '' THEN
        PERFORM imagesearch.raise_error('InvalidParameter', 'PicName must be 1-512 characters, got 0');
    END IF;
    RETURN imagesearch.enqueue(instance, 'delete', product_id, pic_name, NULL, NULL, NULL, NULL, 'delete_image');
END $$;

-- Failed items (of one instance, or all) go back to pending; returns how many.
CREATE FUNCTION imagesearch.retry_failed(instance text DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    retried integer;
BEGIN
    UPDATE imagesearch.picture_queue q
    SET state = 'pending', attempts = 0, error_code = NULL, error_message = NULL, finished_at = NULL
    WHERE q.state = 'failed'
      AND (instance IS NULL OR q.instance_id = (imagesearch.instance_named(instance)).id);
    GET DIAGNOSTICS retried = ROW_COUNT;
    RETURN retried;
END $$;

CREATE VIEW imagesearch.queue_status AS
SELECT q.id, i.name AS instance, q.operation, q.product_id, q.pic_name, q.source, q.state, q.attempts,
       q.enqueued_at, q.finished_at
FROM imagesearch.picture_queue q JOIN imagesearch.instances i ON i.id = q.instance_id;

CREATE VIEW imagesearch.queue_errors AS
SELECT q.id, i.name AS instance, q.operation, q.product_id, q.pic_name, q.source, q.error_code AS code,
       q.error_message AS message, q.finished_at AS failed_at
FROM imagesearch.picture_queue q JOIN imagesearch.instances i ON i.id = q.instance_id
WHERE q.state = 'failed';

-- ---- synced tables -------------------------------------------------------------------------------------

-- A synced row's ProductId and PicName (as text; NULL without a ProductId), its attributes under the API's
-- names (JSON values as the columns hold them) and whether it has a picture: one statement over the row,
-- which never turns the picture itself into text.
CREATE FUNCTION imagesearch.synced_values(p_sync imagesearch.synced_tables, p_row anyelement,
                                          OUT key text[], OUT attributes jsonb, OUT has_picture boolean)
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('SELECT CASE WHEN ($1).%1$I IS NOT NULL THEN ARRAY[($1).%1$I::text, %2$s] END, %3$s, ($1).%4$I IS NOT NULL',
        p_sync.key_columns[1],
        CASE WHEN cardinality(p_sync.key_columns) > 1 THEN format('($1).%I::text', p_sync.key_columns[2])
             ELSE format('%L::text', p_sync.picture_column) END,
        coalesce((SELECT 'jsonb_build_object(' || string_agg(format('%L, to_jsonb(($1).%I)', a.key, a.value), ', ') || ')'
                  FROM jsonb_each_text(p_sync.attribute_columns) a), '''{}''::jsonb'),
        p_sync.picture_column)
    INTO key, attributes, has_picture USING p_row;
END $$;

-- Queue a synced row's picture (bytes, or a path inside the sync's location) to be added; false when the
-- row has no ProductId or no picture. Bad values (a key too long, an attribute out of range, a picture too
-- big) fail the item, never the user's statement: they land in queue_errors with the API's message.
CREATE FUNCTION imagesearch.enqueue_synced_add(p_sync imagesearch.synced_tables, p_instance text, p_row anyelement)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v record;
    picture bytea;
    path text;
BEGIN
    v := imagesearch.synced_values(p_sync, p_row);
    IF v.key IS NULL OR NOT v.has_picture THEN
        RETURN false;
    END IF;
    IF p_sync.picture_location IS NULL THEN
        EXECUTE format('SELECT ($1).%I', p_sync.picture_column) INTO picture USING p_row;
    ELSE
        EXECUTE format('SELECT ($1).%I::text', p_sync.picture_column) INTO path USING p_row;
    END IF;
    PERFORM imagesearch.enqueue(p_instance, 'add', v.key[1], v.key[2], picture, p_sync.picture_location, path,
                                v.attributes, p_sync.source::text);
    RETURN true;
END $$;

-- One changed row of a synced table, as queue items: a new or re-pictured row is an add (embedded again),
-- an attribute-only change an update, a deleted row (or one whose key or picture went away) a delete.
CREATE FUNCTION imagesearch.synced_row_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    sync imagesearch.synced_tables;
    inst text;
    was record;
    now_ record;
    picture_changed boolean := false;
BEGIN
    SELECT * INTO sync FROM imagesearch.synced_tables WHERE id = TG_ARGV[0]::integer;
    IF NOT FOUND THEN
        -- Its instance was deleted (the sync with it): the user's writes go on; the trigger is theirs to drop.
        RAISE WARNING 'imagesearch: table % is no longer synced (its instance was deleted); DROP TRIGGER % ON % removes this trigger',
            TG_RELID::regclass, TG_NAME, TG_RELID::regclass;
        RETURN NULL;
    END IF;
    IF sync.source <> TG_RELID THEN
        RAISE EXCEPTION 'imagesearch.synced_row_changed: sync % is of table %, not %', TG_ARGV[0], sync.source,
            TG_RELID::regclass;
    END IF;
    inst := (SELECT name FROM imagesearch.instances WHERE id = sync.instance_id);
    IF TG_OP = 'INSERT' THEN
        PERFORM imagesearch.enqueue_synced_add(sync, inst, NEW);
        RETURN NULL;
    END IF;
    was := imagesearch.synced_values(sync, OLD);
    IF TG_OP = 'DELETE' THEN
        IF was.key IS NOT NULL AND was.has_picture THEN
            PERFORM imagesearch.enqueue(inst, 'delete', was.key[1], was.key[2], NULL, NULL, NULL, NULL, sync.source::text);
        END IF;
        RETURN NULL;
    END IF;
    now_ := imagesearch.synced_values(sync, NEW);
    EXECUTE format('SELECT ($1).%1$I IS DISTINCT FROM ($2).%1$I', sync.picture_column) INTO picture_changed USING NEW, OLD;
    IF was.key IS NOT NULL AND was.has_picture AND (was.key IS DISTINCT FROM now_.key OR NOT now_.has_picture) THEN
        PERFORM imagesearch.enqueue(inst, 'delete', was.key[1], was.key[2], NULL, NULL, NULL, NULL, sync.source::text);
    END IF;
    IF now_.key IS NULL OR NOT now_.has_picture THEN
        RETURN NULL;
    END IF;
    IF picture_changed OR was.key IS DISTINCT FROM now_.key OR NOT was.has_picture THEN
        PERFORM imagesearch.enqueue_synced_add(sync, inst, NEW);
    ELSIF was.attributes IS DISTINCT FROM now_.attributes THEN
        PERFORM imagesearch.enqueue(inst, 'update', now_.key[1], now_.key[2], NULL, NULL, NULL, now_.attributes,
                                    sync.source::text);
    END IF;
    RETURN NULL;
END $$;

-- Keep the pictures of a table of your own in an instance: every row with a picture is queued now, and
-- triggers queue every later insert, update and delete. key_columns: ProductId's column, then PicName's
-- (without one, PicName is the picture column's name). The picture column is bytea (the file's bytes), or
-- text with picture_location: paths inside that storage location. Returns how many rows were queued.
-- It runs as its caller, who must be allowed to create a trigger on the table; the steps that touch this
-- schema's tables run as its owner (register_sync, enqueue_synced_add, the trigger function).
CREATE FUNCTION imagesearch.sync_table(instance text, source regclass, key_columns text[], picture_column text,
                                       attribute_columns jsonb DEFAULT '{}', picture_location text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    sync imagesearch.synced_tables := imagesearch.register_sync(instance, source, key_columns, picture_column,
                                                                attribute_columns, picture_location);
    queued integer;
BEGIN
    EXECUTE format('CREATE TRIGGER %I AFTER INSERT OR UPDATE OR DELETE ON %s FOR EACH ROW'
                   ' EXECUTE FUNCTION imagesearch.synced_row_changed(%s)',
                   'imagesearch_sync_' || sync.id, source, sync.id);
    -- The rows already there: as if each were inserted now.
    EXECUTE format('SELECT count(*) FILTER (WHERE imagesearch.enqueue_synced_add($1, $2, t)) FROM %s t', source)
        INTO queued USING sync, instance;
    RETURN queued;
END $$;

CREATE FUNCTION imagesearch.register_sync(p_instance text, p_source regclass, p_key_columns text[],
                                          p_picture_column text, p_attribute_columns jsonb, p_picture_location text)
RETURNS imagesearch.synced_tables
LANGUAGE plpgsql AS $$
DECLARE
    inst imagesearch.instances := imagesearch.instance_named(p_instance);
    sync imagesearch.synced_tables;
    kind text;
    column_name text;
    picture_type constant text := CASE WHEN p_picture_location IS NULL THEN 'bytea' ELSE 'text' END;
BEGIN
    IF p_source IS NULL THEN
        PERFORM imagesearch.raise_error('MissingParameter', 'source is required');
    END IF;
    IF p_key_columns IS NULL OR cardinality(p_key_columns) NOT BETWEEN 1 AND 2 OR array_position(p_key_columns, NULL) IS NOT NULL THEN
        PERFORM imagesearch.raise_error('InvalidParameter',
            'key_columns must name ProductId''s column, and optionally PicName''s: 1 or 2 columns');
    END IF;
    IF p_picture_column IS NULL THEN
        PERFORM imagesearch.raise_error('MissingParameter', 'picture_column is required');
    END IF;
    IF p_attribute_columns IS NULL OR jsonb_typeof(p_attribute_columns) <> 'object'
       OR EXISTS (SELECT FROM jsonb_each(p_attribute_columns) a WHERE jsonb_typeof(a.value) <> 'string') THEN
        PERFORM imagesearch.raise_error('InvalidParameter',
            'attribute_columns must be a JSON object of attribute names to column names, such as {"IntAttr": "price"}');
    END IF;
    PERFORM imagesearch.check_queued_attributes(inst.service_type,
        (SELECT coalesce(jsonb_object_agg(key, NULL), '{}') FROM jsonb_each(p_attribute_columns)));
    IF p_picture_location IS NOT NULL AND NOT EXISTS (
            SELECT FROM imagesearch.storage_locations l WHERE l.name = p_picture_location
            AND (l.instances IS NULL OR inst.name = ANY (l.instances))) THEN
        PERFORM imagesearch.raise_error('InvalidParameter', format('no storage location %s for instance %s',
            imagesearch.py_repr(p_picture_location), imagesearch.py_repr(inst.name)));
    END IF;
    FOREACH column_name IN ARRAY p_key_columns || p_picture_column
                                 || ARRAY(SELECT value FROM jsonb_each_text(p_attribute_columns)) LOOP
        kind := (SELECT format_type(a.atttypid, NULL) FROM pg_attribute a
                 WHERE a.attrelid = p_source AND a.attname = column_name AND a.attnum > 0 AND NOT a.attisdropped);
        IF kind IS NULL THEN
            PERFORM imagesearch.raise_error('InvalidParameter',
                format('table %s has no column %s', p_source, imagesearch.py_repr(column_name)));
        END IF;
        IF column_name = p_picture_column AND kind <> picture_type THEN
            PERFORM imagesearch.raise_error('InvalidParameter', format(
                'the picture column %s is %s; it must be bytea (the file''s bytes), or text with picture_location',
                imagesearch.py_repr(column_name), kind));
        END IF;
    END LOOP;
    IF EXISTS (SELECT FROM imagesearch.synced_tables s WHERE s.instance_id = inst.id AND s.source = p_source) THEN
        PERFORM imagesearch.raise_error('InvalidParameter',
            format('table %s is already synced to instance %s', p_source, imagesearch.py_repr(inst.name)));
    END IF;
    INSERT INTO imagesearch.synced_tables (instance_id, source, key_columns, picture_column, attribute_columns, picture_location)
    VALUES (inst.id, p_source, p_key_columns, p_picture_column, p_attribute_columns, p_picture_location)
    RETURNING * INTO sync;
    RETURN sync;
END $$;

-- Stop syncing a table: its trigger goes; its pictures stay in the instance.
CREATE FUNCTION imagesearch.unsync_table(instance text, source regclass) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    sync_id integer := imagesearch.unregister_sync(instance, source);
BEGIN
    EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', 'imagesearch_sync_' || sync_id, source);
END $$;

CREATE FUNCTION imagesearch.unregister_sync(p_instance text, p_source regclass) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    sync_id integer;
BEGIN
    DELETE FROM imagesearch.synced_tables s
    WHERE s.instance_id = (imagesearch.instance_named(p_instance)).id AND s.source = p_source
    RETURNING s.id INTO sync_id;
    IF sync_id IS NULL THEN
        PERFORM imagesearch.raise_error('InvalidParameter', format('table %s is not synced to instance %s',
            p_source, imagesearch.py_repr(p_instance)));
    END IF;
    RETURN sync_id;
END $$;
