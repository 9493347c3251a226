-- Migration 0018: the pictures' embeddings are stored as halfvec (16-bit floats), in the rows and in the
-- HNSW indexes. At 1280-d a row then takes 2.8 kB instead of a whole 8 kB page, and an index entry 4.1 kB
-- instead of 8.2 kB, with the same recall@10 (docs/scaling.md, benchmarks/vector_storage.py).
-- The functions below are those of sql/0001_functions.sql, 0016_search.sql and 0016_duplicates.sql that
-- name the embedding's type; the query vectors they take stay `vector` and are cast where compared.

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
    -- 1280-d. A halfvec of up to 2000 numbers (4 kB) always fits a page.
    EXECUTE format('ALTER TABLE imagesearch.%I ALTER COLUMN embedding SET STORAGE PLAIN', part);
    PERFORM imagesearch.create_picture_index(p_instance_id);
END $$;

CREATE FUNCTION imagesearch.create_vector_index(p_instance_id integer, p_column text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    part text := imagesearch.partition_name(p_instance_id);
    kind text := CASE WHEN p_column IN ('embedding', 'silhouette') THEN 'halfvec' END;
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

CREATE FUNCTION imagesearch.scan(r imagesearch.search_plan, p_query vector, p_limit integer, p_exact boolean)
RETURNS SETOF imagesearch.search_result
LANGUAGE plpgsql STABLE AS $$
DECLARE
    distance text := CASE WHEN p_exact THEN 'p.embedding <=> $3::halfvec'
                                   ELSE format('p.embedding::halfvec(%1$s) <=> $3::halfvec(%1$s)', r.dim) END;
BEGIN
    RETURN QUERY EXECUTE format(
        'SELECT p.product_id, p.pic_name, imagesearch.cosine_score(%1$s), p.category_id, p.custom_content,'
        ' p.int_attr, p.int_attr2, p.int_attr3, p.int_attr4, p.str_attr, p.str_attr2, p.str_attr3, p.str_attr4'
        ' FROM imagesearch.%2$I p%3$s ORDER BY %1$s LIMIT $4',
        distance, r.part, CASE WHEN r.condition IS NULL THEN '' ELSE ' WHERE ' || r.condition END)
    USING r.ints, r.strs, p_query, p_limit, r.category_id, r.exclude_product;
END $$;

CREATE FUNCTION imagesearch.nearest_fused(r imagesearch.search_plan, p_query vector, p_silhouette halfvec,
                                          p_margin double precision, p_limit integer)
RETURNS SETOF imagesearch.search_result
LANGUAGE plpgsql STABLE AS $$
DECLARE
    columns constant text := 'p.product_id, p.pic_name, imagesearch.cosine_score(%s), p.category_id, p.custom_content,'
        ' p.int_attr, p.int_attr2, p.int_attr3, p.int_attr4, p.str_attr, p.str_attr2, p.str_attr3, p.str_attr4';
    least_distance constant text := 'least(p.embedding <=> $3::halfvec, (p.silhouette <=> $7) + $8)';
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
        '    (SELECT p.key_digest, p.embedding::halfvec(%1$s) <=> $3::halfvec(%1$s) AS distance, 0.0::float8 AS margin'
        '     FROM imagesearch.%2$I p ORDER BY p.embedding::halfvec(%1$s) <=> $3::halfvec(%1$s) LIMIT $4)'
        '    UNION ALL'
        '    (SELECT p.key_digest, p.silhouette::halfvec(%1$s) <=> $7 AS distance, $8 AS margin'
        '     FROM imagesearch.%2$I p ORDER BY p.silhouette::halfvec(%1$s) <=> $7 LIMIT $4)'
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
        '    SELECT p.key_digest, p.product_id, p.pic_name, p.embedding::halfvec(%1$s) <=> a.embedding::halfvec(%1$s) AS distance'
        '    FROM imagesearch.%2$I p ORDER BY p.embedding::halfvec(%1$s) <=> a.embedding::halfvec(%1$s) LIMIT $1 + 1) b'
        '  WHERE b.key_digest <> a.key_digest AND imagesearch.cosine_score(b.distance) >= $2'
        ' ) x ORDER BY x.low, x.high'
        ') d ORDER BY d.score DESC, d.pa COLLATE "C", d.na COLLATE "C", d.pb COLLATE "C", d.nb COLLATE "C"',
        inst.embedding_dim, part)
    USING neighbours, min_score;
END $$;
