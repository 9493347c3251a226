-- Silhouette vectors (trademark encoder): their own HNSW index per partition, made only for instances
-- whose encoder gives silhouettes. halfvec: half the bytes, so a row with both vectors still fits in a
-- page and stays in line (STORAGE MAIN, set on the parent column by migration 0006).

CREATE FUNCTION imagesearch.create_silhouette_index(p_instance_id integer) RETURNS void
LANGUAGE plpgsql AS $$ BEGIN PERFORM imagesearch.create_vector_index(p_instance_id, 'silhouette'); END $$;

CREATE FUNCTION imagesearch.drop_silhouette_index(p_instance_id integer) RETURNS void
LANGUAGE plpgsql AS $$ BEGIN PERFORM imagesearch.drop_vector_index(p_instance_id, 'silhouette'); END $$;
