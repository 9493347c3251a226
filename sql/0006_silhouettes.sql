-- Silhouette vectors (trademark encoder): their own HNSW index per partition, made only for instances
-- whose encoder gives silhouettes. halfvec: half the bytes, so a row with both vectors still fits in a
-- page and stays in line (STORAGE MAIN, set on the parent column by migration 0006).

CREATE FUNCTION imagesearch.create_silhouette_index(p_instance_id integer) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    part text := imagesearch.partition_name(p_instance_id);
    dim integer;
BEGIN
    SELECT embedding_dim INTO STRICT dim FROM imagesearch.instances WHERE id = p_instance_id;
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON imagesearch.%I'
                   ' USING hnsw ((silhouette::halfvec(%s)) halfvec_cosine_ops) WITH (m = 16, ef_construction = 64)',
                   part || '_silhouette_hnsw', part, dim);
END $$;

CREATE FUNCTION imagesearch.drop_silhouette_index(p_instance_id integer) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('DROP INDEX IF EXISTS imagesearch.%I', imagesearch.partition_name(p_instance_id) || '_silhouette_hnsw');
END $$;
