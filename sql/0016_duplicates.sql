-- Near-duplicate pairs (docs/sql.md): every picture's nearest neighbours by the instance's HNSW index,
-- kept where the score reaches min_score, each pair once (the lesser key first), best first.
-- Cost: one index walk per picture (docs/benchmarks.md has it at 100,000 pictures). A picture with more
-- than `neighbours` pictures above min_score contributes its `neighbours` nearest (the others may still
-- come from their side).
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
        '    SELECT p.key_digest, p.product_id, p.pic_name, p.embedding::vector(%1$s) <=> a.embedding::vector(%1$s) AS distance'
        '    FROM imagesearch.%2$I p ORDER BY p.embedding::vector(%1$s) <=> a.embedding::vector(%1$s) LIMIT $1 + 1) b'
        '  WHERE b.key_digest <> a.key_digest AND imagesearch.cosine_score(b.distance) >= $2'
        ' ) x ORDER BY x.low, x.high'
        ') d ORDER BY d.score DESC, d.pa COLLATE "C", d.na COLLATE "C", d.pb COLLATE "C", d.nb COLLATE "C"',
        inst.embedding_dim, part)
    USING neighbours, min_score;
END $$;
