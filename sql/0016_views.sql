-- Views of the SQL surface (docs/sql.md): instances and pictures under their public names, without the
-- storage layout (partitions, key digests, vectors, cast expressions).

CREATE VIEW imagesearch.instance_list AS
SELECT i.name, i.service_type, i.capacity, i.qps, i.picture_count, i.encoder, i.embedding_dim, i.region,
       i.status, i.tags, i.created_at, i.expires_at
FROM imagesearch.instances i;

-- Read one instance's pictures with WHERE instance = '...': the join then reads only its partition.
CREATE VIEW imagesearch.picture_list AS
SELECT i.name AS instance, p.product_id, p.pic_name, p.category_id, p.custom_content,
       p.int_attr, p.int_attr2, p.int_attr3, p.int_attr4, p.str_attr, p.str_attr2, p.str_attr3, p.str_attr4,
       p.region, p.created_at, p.updated_at
FROM imagesearch.pictures p JOIN imagesearch.instances i ON i.id = p.instance_id;
