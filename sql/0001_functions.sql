-- The SQL surface installed into a database by migration 0001.
-- Each instance's pictures live in their own LIST partition of imagesearch.pictures with its own HNSW
-- index, so a small instance next to a large one keeps full recall, and dropping an instance is instant.
-- The parent's embedding column has no fixed dimension; each partition pins its instance's dimension
-- with a CHECK and indexes the cast expression, which queries repeat to use the index.

CREATE FUNCTION imagesearch.partition_name(p_instance_id integer) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT 'pictures_' || p_instance_id $$;

-- The dimension comes from the instance's row: one source of truth for the CHECK and the index.
CREATE FUNCTION imagesearch.create_picture_partition(p_instance_id integer) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    part text := imagesearch.partition_name(p_instance_id);
    p_dim integer;
BEGIN
    SELECT embedding_dim INTO STRICT p_dim FROM imagesearch.instances WHERE id = p_instance_id;
    IF p_dim < 1 OR p_dim > 2000 THEN
        RAISE EXCEPTION 'embedding dimension % is outside 1..2000 (pgvector HNSW limit)', p_dim;
    END IF;
    EXECUTE format('CREATE TABLE imagesearch.%I PARTITION OF imagesearch.pictures FOR VALUES IN (%s)',
                   part, p_instance_id);
    EXECUTE format('ALTER TABLE imagesearch.%I ADD CONSTRAINT %I CHECK (vector_dims(embedding) = %s)',
                   part, part || '_dim', p_dim);
    -- Vectors stay in the row (not TOAST): exact scans over matching rows ran 5x faster measured at
    -- 1280-d. Past ~1800-d a row could outgrow a page, so those may move out of line (MAIN).
    EXECUTE format('ALTER TABLE imagesearch.%I ALTER COLUMN embedding SET STORAGE %s',
                   part, CASE WHEN p_dim <= 1800 THEN 'PLAIN' ELSE 'MAIN' END);
    PERFORM imagesearch.create_picture_index(p_instance_id);
END $$;

-- An HNSW index of one vector column of an instance's partition (cosine; m=16, ef_construction=64), on the
-- cast to the instance's dimension that queries repeat. Bulk loads drop the indexes (drop_vector_index),
-- load, and build them once here: one parallel build is far faster than inserting row by row into the graph.
-- p_column is 'embedding' (vector) or 'silhouette' (halfvec, migration 0006).
CREATE FUNCTION imagesearch.create_vector_index(p_instance_id integer, p_column text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    part text := imagesearch.partition_name(p_instance_id);
    kind text := CASE p_column WHEN 'embedding' THEN 'vector' WHEN 'silhouette' THEN 'halfvec' END;
    dim integer;
BEGIN
    IF kind IS NULL THEN
        RAISE EXCEPTION 'no vector column %', p_column;
    END IF;
    SELECT embedding_dim INTO STRICT dim FROM imagesearch.instances WHERE id = p_instance_id;
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON imagesearch.%I'
                   ' USING hnsw ((%I::%s(%s)) %s) WITH (m = 16, ef_construction = 64)',
                   part || '_' || p_column || '_hnsw', part, p_column, kind, dim, kind || '_cosine_ops');
END $$;

CREATE FUNCTION imagesearch.drop_vector_index(p_instance_id integer, p_column text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('DROP INDEX IF EXISTS imagesearch.%I', imagesearch.partition_name(p_instance_id) || '_' || p_column || '_hnsw');
END $$;

CREATE FUNCTION imagesearch.create_picture_index(p_instance_id integer) RETURNS void
LANGUAGE plpgsql AS $$ BEGIN PERFORM imagesearch.create_vector_index(p_instance_id, 'embedding'); END $$;

CREATE FUNCTION imagesearch.drop_picture_index(p_instance_id integer) RETURNS void
LANGUAGE plpgsql AS $$ BEGIN PERFORM imagesearch.drop_vector_index(p_instance_id, 'embedding'); END $$;

CREATE FUNCTION imagesearch.drop_picture_partition(p_instance_id integer) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('DROP TABLE IF EXISTS imagesearch.%I', imagesearch.partition_name(p_instance_id));
END $$;

-- Score in 0..1 from cosine distance (0..2): the cosine similarity, floored at 0.
-- Embeddings of the default encoder are non-negative, so their cosine is never below 0 anyway.
CREATE FUNCTION imagesearch.cosine_score(p_distance double precision) RETURNS double precision
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$ SELECT greatest(0.0, least(1.0, 1.0 - p_distance)) $$;

-- Nearest stored pictures to a query vector, for use from SQL (JOIN the result with your own tables).
CREATE FUNCTION imagesearch.search_by_vector(p_instance text, p_query vector, p_limit integer DEFAULT 10)
RETURNS TABLE (product_id text, pic_name text, score double precision)
LANGUAGE plpgsql STABLE SET hnsw.ef_search = 100 AS $$
DECLARE
    inst record;
BEGIN
    SELECT id, embedding_dim INTO inst FROM imagesearch.instances WHERE name = p_instance;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no instance named %', p_instance USING ERRCODE = 'no_data_found';
    END IF;
    RETURN QUERY EXECUTE format(
        'SELECT p.product_id, p.pic_name, imagesearch.cosine_score(p.embedding::vector(%1$s) <=> $1::vector(%1$s))'
        ' FROM imagesearch.%2$I p ORDER BY p.embedding::vector(%1$s) <=> $1::vector(%1$s) LIMIT $2',
        inst.embedding_dim, imagesearch.partition_name(inst.id))
    USING p_query, p_limit;
END $$;

-- Nearest stored pictures to a stored one (itself included, first).
CREATE FUNCTION imagesearch.search_by_name(p_instance text, p_product_id text, p_pic_name text,
                                           p_limit integer DEFAULT 10)
RETURNS TABLE (product_id text, pic_name text, score double precision)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    query vector;
BEGIN
    SELECT p.embedding INTO query
    FROM imagesearch.pictures p JOIN imagesearch.instances i ON i.id = p.instance_id
    WHERE i.name = p_instance AND p.product_id = p_product_id AND p.pic_name = p_pic_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no picture %/% in instance %', p_product_id, p_pic_name, p_instance
            USING ERRCODE = 'no_data_found';
    END IF;
    RETURN QUERY SELECT * FROM imagesearch.search_by_vector(p_instance, query, p_limit);
END $$;
