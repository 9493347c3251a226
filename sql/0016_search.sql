-- The search functions of the SQL surface (docs/sql.md): the service's searches by a stored picture, by a
-- vector and by a product, with its options, checks, messages and plans, step for step as
-- imagesearch_pg/service/searching.py, search_window.py and store/picture_search.py take them, so that the
-- answer is the service's (tests/test_sql_search.py compares the two). Names of the Python functions
-- mirrored are given beside each step.

CREATE TYPE imagesearch.search_result AS (
    product_id text, pic_name text, score double precision, category_id integer, custom_content text,
    int_attr integer, int_attr2 integer, int_attr3 integer, int_attr4 integer,
    str_attr text, str_attr2 text, str_attr3 text, str_attr4 text
);

-- The category table of product instances (spec/categories.md; categories.py).
CREATE VIEW imagesearch.category_list (category_id, name) AS
VALUES (0, 'Tops'), (1, 'Dress'), (2, 'Bottoms'), (3, 'Bag'), (4, 'Shoes'), (5, 'Accessories'), (6, 'Snack'),
       (7, 'Makeup'), (8, 'Bottle'), (9, 'Furniture'), (20, 'Toy'), (21, 'Underwear'), (22, 'Digital device'),
       (88888888, 'Other');

-- What the searches need of an encoder (vision/encoders): the margin its silhouette distances carry, NULL
-- for an encoder without silhouettes.
CREATE FUNCTION imagesearch.silhouette_margin(p_encoder text) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE p_encoder WHEN 'efficientnet-lite0-trademark' THEN 0.05::float8 END
$$;

CREATE FUNCTION imagesearch.key_digest(p_product_id text, p_pic_name text) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT sha256(convert_to(p_product_id, 'UTF8') || '\x00'::bytea || convert_to(p_pic_name, 'UTF8'))
$$;

-- ---- checks (service/validation.py), in the order the service makes them -------------------------------

CREATE FUNCTION imagesearch.check_text(p_name text, p_value text, p_max integer, p_required boolean) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    shortest constant integer := p_required::integer;  -- a required text has 1 character or more
BEGIN
    IF p_value IS NULL OR (p_required AND p_value = '') THEN
        IF p_required THEN
            PERFORM imagesearch.raise_error('MissingParameter', p_name || ' is required');
        END IF;
        RETURN;
    END IF;
    IF length(p_value) NOT BETWEEN shortest AND p_max THEN
        PERFORM imagesearch.raise_error('InvalidParameter', format('%s must be %s-%s characters, got %s', p_name,
            shortest, p_max, length(p_value)));
    END IF;
END $$;

-- Num 1-100, Start 0-499, Start+Num <= 500, ScoreThreshold 0-1 (validation.window, score_threshold).
CREATE FUNCTION imagesearch.check_window(p_num integer, p_start integer, p_threshold double precision) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p_num IS NULL OR p_num < 1 THEN
        PERFORM imagesearch.raise_error('InvalidParameter',
            format('Num must be an integer from 1 to 100, got %s', coalesce(p_num::text, 'NULL')));
    ELSIF p_num > 100 THEN
        PERFORM imagesearch.raise_error('OverflowMaxReturnNum',
            format('Num is %s; at most 100 results are returned per request', p_num));
    END IF;
    IF p_start IS NULL OR p_start NOT BETWEEN 0 AND 499 THEN
        PERFORM imagesearch.raise_error('InvalidStartParameter',
            format('Start must be an integer from 0 to 499, got %s', coalesce(p_start::text, 'NULL')));
    END IF;
    IF p_start + p_num > 500 THEN
        PERFORM imagesearch.raise_error('OverflowMaxResultNum',
            format('Start+Num is %s; results beyond the first 500 are not served', p_start + p_num));
    END IF;
    IF p_threshold IS NOT NULL AND NOT (p_threshold BETWEEN 0 AND 1) THEN  -- NaN is above every number
        PERFORM imagesearch.raise_error('InvalidParameter',
            format('ScoreThreshold must be a number from 0 to 1, got %s', lower(p_threshold::text)));
    END IF;
END $$;

-- The instance by name (instances.current).
CREATE FUNCTION imagesearch.instance_named(p_instance text) RETURNS imagesearch.instances
LANGUAGE plpgsql STABLE AS $$
DECLARE
    inst imagesearch.instances;
BEGIN
    PERFORM imagesearch.check_text('InstanceName', p_instance, 64, true);
    SELECT * INTO inst FROM imagesearch.instances WHERE name = p_instance;
    IF NOT FOUND THEN
        PERFORM imagesearch.raise_error('InvalidInstance', format('no instance named %s', imagesearch.py_repr(left(p_instance, 80))));
    END IF;
    RETURN inst;
END $$;

-- A CategoryId on an instance of a type with categories (product); NULL on the others (validation.category).
CREATE FUNCTION imagesearch.checked_category(p_service_type text, p_category_id integer) RETURNS integer
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF p_category_id IS NULL OR p_service_type <> 'product' THEN
        RETURN NULL;
    END IF;
    IF NOT EXISTS (SELECT FROM imagesearch.category_list c WHERE c.category_id = p_category_id) THEN
        PERFORM imagesearch.raise_error('InvalidCategory', format('CategoryId %s is not a category; allowed: %s',
            p_category_id, (SELECT string_agg(c.category_id::text, ', ' ORDER BY c.category_id) FROM imagesearch.category_list c)));
    END IF;
    RETURN p_category_id;
END $$;

-- ---- the plans (store/picture_search.py) ----------------------------------------------------------------

-- A search's request, checked: what every step below needs.
CREATE TYPE imagesearch.search_plan AS (
    instance_id integer, dim integer, part text, encoder text,
    condition text, ints integer[], strs text[],  -- the filter, the category and the excluded product
    category_id integer, exclude_product text,
    num integer, start integer, threshold double precision, distinct_products boolean,
    matching double precision, total double precision  -- the planner's estimate (NULL unfiltered)
);

-- The request checked as the service checks it (window, filter, instance, category, in that order), with
-- its filter compiled and its conditions joined ($1 ints, $2 strs, $5 the category,
-- $6 the excluded product: the parameters every statement below passes), and the planner's estimate of
-- the matches beside all the instance's pictures (picture_search.estimate).
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
            INTO plan USING r.ints, r.strs, NULL::vector, NULL::integer, r.category_id, r.exclude_product;
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
-- matches (no cast, so no index), best first.
CREATE FUNCTION imagesearch.scan(r imagesearch.search_plan, p_query vector, p_limit integer, p_exact boolean)
RETURNS SETOF imagesearch.search_result
LANGUAGE plpgsql STABLE AS $$
DECLARE
    distance text := CASE WHEN p_exact THEN 'p.embedding <=> $3' ELSE format('p.embedding::vector(%s) <=> $3', r.dim) END;
BEGIN
    RETURN QUERY EXECUTE format(
        'SELECT p.product_id, p.pic_name, imagesearch.cosine_score(%1$s), p.category_id, p.custom_content,'
        ' p.int_attr, p.int_attr2, p.int_attr3, p.int_attr4, p.str_attr, p.str_attr2, p.str_attr3, p.str_attr4'
        ' FROM imagesearch.%2$I p%3$s ORDER BY %1$s LIMIT $4',
        distance, r.part, CASE WHEN r.condition IS NULL THEN '' ELSE ' WHERE ' || r.condition END)
    USING r.ints, r.strs, p_query, p_limit, r.category_id, r.exclude_product;
END $$;

-- The p_limit nearest matching pictures, never fewer because a walk gave up (picture_search.nearest and
-- walk_breadth): unfiltered, the walk; filtered, a walk as broad as the filter's share of the pictures
-- needs, or the exact scan when few match or the walk came back short.
CREATE FUNCTION imagesearch.nearest(r imagesearch.search_plan, p_query vector, p_limit integer)
RETURNS SETOF imagesearch.search_result
LANGUAGE plpgsql AS $$
DECLARE
    share double precision;
    breadth integer;
    rows imagesearch.search_result[];
BEGIN
    IF r.condition IS NULL THEN
        RETURN QUERY SELECT * FROM imagesearch.scan(r, p_query, p_limit, false);
        RETURN;
    END IF;
    share := CASE WHEN r.total > 0 THEN r.matching / r.total ELSE 1.0 END;
    IF r.matching > 5000 AND share >= 0.095 THEN
        breadth := greatest(80, ceil(40 / share)::integer);
        -- Local to the calling search function, whose SET clause restores its own value when it returns.
        PERFORM set_config('hnsw.ef_search', breadth::text, true);
        rows := ARRAY(SELECT s FROM imagesearch.scan(r, p_query, p_limit, false) s);
        PERFORM set_config('hnsw.ef_search', '80', true);
        IF cardinality(rows) = p_limit THEN
            RETURN QUERY SELECT (rows[i]).* FROM generate_subscripts(rows, 1) i ORDER BY i;
            RETURN;
        END IF;
    END IF;
    RETURN QUERY SELECT * FROM imagesearch.scan(r, p_query, p_limit, true);
END $$;

-- A stored picture's embedding and silhouette together (picture_search._fused_statement, _exact_statement
-- with silhouettes): a picture's distance is the least of its embedding's to p_query and its silhouette's
-- to p_silhouette plus p_margin.
CREATE FUNCTION imagesearch.nearest_fused(r imagesearch.search_plan, p_query vector, p_silhouette halfvec,
                                          p_margin double precision, p_limit integer)
RETURNS SETOF imagesearch.search_result
LANGUAGE plpgsql STABLE AS $$
DECLARE
    columns constant text := 'p.product_id, p.pic_name, imagesearch.cosine_score(%s), p.category_id, p.custom_content,'
        ' p.int_attr, p.int_attr2, p.int_attr3, p.int_attr4, p.str_attr, p.str_attr2, p.str_attr3, p.str_attr4';
    least_distance constant text := 'least(p.embedding <=> $3, (p.silhouette <=> $7) + $8)';
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
        '    (SELECT p.key_digest, p.embedding::vector(%1$s) <=> $3 AS distance, 0.0::float8 AS margin'
        '     FROM imagesearch.%2$I p ORDER BY p.embedding::vector(%1$s) <=> $3 LIMIT $4)'
        '    UNION ALL'
        '    (SELECT p.key_digest, p.silhouette::halfvec(%1$s) <=> $7 AS distance, $8 AS margin'
        '     FROM imagesearch.%2$I p ORDER BY p.silhouette::halfvec(%1$s) <=> $7 LIMIT $4)'
        '  ) hits GROUP BY hits.key_digest ORDER BY min(hits.distance + hits.margin) LIMIT $4'
        ') best ON p.key_digest = best.key_digest ORDER BY best.distance',
        r.dim, r.part, format(columns, 'best.distance'))
    USING r.ints, r.strs, p_query, p_limit, r.category_id, r.exclude_product, p_silhouette, p_margin;
END $$;

-- The nearest pictures to any of a product's pictures (Searches.by_product): each of its vectors finds its
-- p_limit nearest; a picture keeps its best score; ties in code-point order of ProductId, PicName.
CREATE FUNCTION imagesearch.nearest_any(r imagesearch.search_plan, p_queries vector[], p_limit integer)
RETURNS SETOF imagesearch.search_result
LANGUAGE sql AS $$
    SELECT (s).* FROM (
        SELECT DISTINCT ON (h.product_id, h.pic_name) h AS s
        FROM unnest(p_queries) q, imagesearch.nearest(r, q, p_limit) h
        ORDER BY h.product_id, h.pic_name, h.score DESC
    ) best
    ORDER BY (s).score DESC, (s).product_id COLLATE "C", (s).pic_name COLLATE "C"
    LIMIT p_limit
$$;

-- The result window (search_window.ranked): the first start + num rows after ScoreThreshold and
-- DistinctProductId, asking the source for more rows while DistinctProductId leaves too few (up to 20,000).
-- p_kind: 'vector' (p_query), 'fused' (p_query and p_silhouette) or 'any' (p_queries).
CREATE FUNCTION imagesearch.ranked(r imagesearch.search_plan, p_kind text, p_query vector, p_silhouette halfvec,
                                   p_margin double precision, p_queries vector[])
RETURNS SETOF imagesearch.search_result
LANGUAGE plpgsql AS $$
DECLARE
    wanted integer := r.start + r.num;
    target integer := CASE WHEN r.threshold IS NOT NULL THEN 500 ELSE wanted END;
    lim integer := target;
    rows imagesearch.search_result[];
    kept imagesearch.search_result[];
    ended boolean;
BEGIN
    IF r.threshold IS NULL AND NOT r.distinct_products AND p_kind = 'vector' THEN
        -- One fetch of start + num rows is the whole window (the common case, without the arrays below).
        RETURN QUERY SELECT * FROM imagesearch.nearest(r, p_query, wanted) OFFSET r.start;
        RETURN;
    END IF;
    LOOP
        IF p_kind = 'vector' THEN
            rows := ARRAY(SELECT s FROM imagesearch.nearest(r, p_query, lim) s);
        ELSIF p_kind = 'fused' THEN
            rows := ARRAY(SELECT s FROM imagesearch.nearest_fused(r, p_query, p_silhouette, p_margin, lim) s);
        ELSE
            rows := ARRAY(SELECT s FROM imagesearch.nearest_any(r, p_queries, lim) s);
        END IF;
        kept := ARRAY(SELECT rows[i] FROM generate_subscripts(rows, 1) i
                      WHERE r.threshold IS NULL OR (rows[i]).score >= r.threshold ORDER BY i);
        ended := cardinality(rows) < lim OR cardinality(kept) < cardinality(rows);
        IF r.distinct_products THEN  -- each product's first picture
            kept := ARRAY(SELECT kept[i] FROM (
                SELECT i, row_number() OVER (PARTITION BY (kept[i]).product_id ORDER BY i) AS nth
                FROM generate_subscripts(kept, 1) i) f WHERE nth = 1 ORDER BY i);
        END IF;
        EXIT WHEN ended OR cardinality(kept) >= target OR lim >= 20000;
        lim := least(lim * 4, 20000);
    END LOOP;
    RETURN QUERY SELECT (kept[i]).* FROM generate_subscripts(kept, 1) i WHERE i BETWEEN r.start + 1 AND wanted ORDER BY i;
END $$;

-- ---- the public functions -------------------------------------------------------------------------------
-- Each runs at the service's settings (picture_search.HNSW_SETTINGS) whatever the session's are. They are
-- VOLATILE, as the steps above that ask the planner (EXPLAIN) or set hnsw.ef_search must be.

-- The nearest pictures to a stored one (SearchImageByName): it finds itself first unless filtered out.
-- On trademark instances its silhouette searches too, as the API's search by name does (no geometric
-- re-ranking: that needs the keypoints of a query picture).
CREATE FUNCTION imagesearch.search_by_picture(instance text, product_id text, pic_name text, num integer DEFAULT 10,
    start integer DEFAULT 0, filter text DEFAULT NULL, category_id integer DEFAULT NULL,
    distinct_product_id boolean DEFAULT false, score_threshold double precision DEFAULT NULL)
RETURNS SETOF imagesearch.search_result
LANGUAGE plpgsql
SET hnsw.ef_search = 80 SET hnsw.iterative_scan = strict_order AS $$
DECLARE
    r imagesearch.search_plan;
    query vector;
    silhouette halfvec;
    margin double precision;
BEGIN
    PERFORM imagesearch.check_text('ProductId', product_id, 512, true);
    PERFORM imagesearch.check_text('PicName', pic_name, 512, true);
    r := imagesearch.plan_search(instance, filter, category_id, NULL, num, start, score_threshold, distinct_product_id);
    EXECUTE format('SELECT p.embedding, p.silhouette FROM imagesearch.%I p WHERE p.key_digest = $1', r.part)
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

-- The nearest pictures to a vector of the instance's dimension (Searches.by_vector): for embeddings made
-- elsewhere. Trademark instances rank by the picture vectors alone.
CREATE FUNCTION imagesearch.search_by_vector(instance text, query vector, num integer DEFAULT 10,
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
    ELSIF vector_dims(query) <> r.dim THEN
        PERFORM imagesearch.raise_error('InvalidParameter', format(
            'the query vector has shape (%s,); the instance''s vectors have %s numbers', vector_dims(query), r.dim));
    ELSIF vector_norm(query) = 0 THEN
        PERFORM imagesearch.raise_error('InvalidParameter', 'the query vector is all zeros; a direction is needed');
    END IF;
    RETURN QUERY SELECT * FROM imagesearch.ranked(r, 'vector', l2_normalize(query), NULL, NULL, NULL);
END $$;

-- The nearest pictures of other products to any picture of a product (Searches.by_product): "which products
-- look like this one". Its first 100 pictures by PicName are the queries; its own pictures are left out.
CREATE FUNCTION imagesearch.search_by_product(instance text, product_id text, num integer DEFAULT 10,
    start integer DEFAULT 0, filter text DEFAULT NULL, category_id integer DEFAULT NULL,
    distinct_product_id boolean DEFAULT false, score_threshold double precision DEFAULT NULL)
RETURNS SETOF imagesearch.search_result
LANGUAGE plpgsql
SET hnsw.ef_search = 80 SET hnsw.iterative_scan = strict_order AS $$
DECLARE
    r imagesearch.search_plan;
    queries vector[];
BEGIN
    PERFORM imagesearch.check_text('ProductId', product_id, 512, true);
    r := imagesearch.plan_search(instance, filter, category_id, product_id, num, start, score_threshold,
                                 distinct_product_id);
    EXECUTE format('SELECT array_agg(e ORDER BY n COLLATE "C") FROM (SELECT p.embedding, p.pic_name FROM imagesearch.%I p'
                   ' WHERE p.product_id = $1 ORDER BY p.pic_name COLLATE "C" LIMIT 100) f(e, n)', r.part)
        INTO queries USING product_id;
    IF queries IS NULL THEN
        PERFORM imagesearch.raise_error('NoSpecifiedSearchPic',
            format('no pictures with ProductId %s', imagesearch.py_repr(product_id)));
    END IF;
    RETURN QUERY SELECT * FROM imagesearch.ranked(r, 'any', NULL, NULL, NULL, queries);
END $$;
