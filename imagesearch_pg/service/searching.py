"""The searches: by picture, by a stored picture (name), by vector, by text, by filter, and the comparison of two
pictures. Each kind is a source of ranked rows for the one result window (search_window.ranked)."""

from __future__ import annotations

import time
import dataclasses
from dataclasses import dataclass

from imagesearch_pg.errors import InvalidParameter, MissingParameter, NoSpecifiedSearchPic
from imagesearch_pg.service import reranking, validation
from imagesearch_pg.service.instances import Instances
from imagesearch_pg.service.models import PicInfo, SearchResult
from imagesearch_pg.service.picture_pipeline import PicturePipeline, category
from imagesearch_pg.service.search_window import Fetch, Window, ranked, result
from imagesearch_pg.store import duplicates, picture_search
from imagesearch_pg.store import pictures as picture_store
from imagesearch_pg.store.filters import parse_filter

MAX_PRODUCT_QUERIES = 100  # a search by a product searches with this many of its pictures at most


@dataclass(frozen=True)
class SearchRequest:
    """What every search is asked besides its query."""

    instance_name: str
    num: int = 10
    start: int = 0
    filter: str | None = None
    category_id: int | None = None  # product instances: search within this category
    score_threshold: float | None = None
    distinct_product_id: bool = False


class Searches:
    def __init__(self, instances: Instances, pipeline: PicturePipeline):
        self.instances = instances
        self.pipeline = pipeline

    def by_picture(self, request: SearchRequest, picture: bytes, *, crop: bool = True,
                   region: str | None = None) -> SearchResult:
        """Search with a picture. A CategoryId (product instances) searches within that category; without
        one the category is predicted and reported in PicInfo, and every category is searched."""
        began = time.perf_counter()
        window, instance = self._window(request)
        prepared = self.pipeline.prepare(instance, picture, crop=crop, region=region, query=True, keypoints=True)
        pic_info = prepared.pic_info(category(self.instances, instance, prepared, window.category_id))
        description, encoder = prepared.description, prepared.encoder
        verified: dict = {}  # inliers by picture, kept over the passes of a long window

        def fetch(conn, instance, limit, expected):
            if prepared.keypoints is None:
                return picture_search.nearest(
                    conn, instance.id, instance.embedding_dim, description.embedding, limit, window.filter,
                    window.category_id, expected=expected,
                )
            rows = picture_search.nearest(
                conn, instance.id, instance.embedding_dim, description.embedding,
                max(limit, reranking.CANDIDATES), window.filter, window.category_id, list(description.silhouettes),
                keypoints_for=reranking.CANDIDATES, silhouette_margin=encoder.silhouette_margin,
            )
            return reranking.rerank(rows, prepared.keypoints.result(), verified)[:limit]

        return self._search(request, window, fetch, began, pic_info)

    def by_name(self, request: SearchRequest, product_id: str, pic_name: str) -> SearchResult:
        """Search with the vectors of a stored picture (which finds itself first, unless filtered out); its
        PicInfo is the stored picture's category and region."""
        began = time.perf_counter()
        validation.picture_key(product_id, pic_name)
        window, cached = self._window(request)
        encoder = self.pipeline.encoders.get(cached.encoder)
        searched: list[PicInfo] = []
        missing = f"no picture with ProductId {product_id!r} and PicName {pic_name!r}"

        def fetch(conn, instance, limit, expected):
            dim = instance.embedding_dim
            stored = picture_search.StoredPicture(product_id, pic_name)
            # The stored picture's own silhouette searches the others' (no re-ranking: its keypoints are
            # kept in one polarity only, and its own vectors already find copies of it).
            stored_silhouettes = (
                [picture_search.StoredPicture(product_id, pic_name, "silhouette")]
                if encoder.silhouettes
                else None
            )
            rows = picture_search.nearest(
                conn, instance.id, dim, stored, limit, window.filter, window.category_id, stored_silhouettes,
                expected=expected, silhouette_margin=encoder.silhouette_margin,
            )
            # A missing picture gives no query vector, hence rows without a score (or none at all).
            if rows and rows[0].score is None:
                raise NoSpecifiedSearchPic(missing)
            if not searched:
                # Its PicInfo from its own row, which it finds first; read apart only when filtered out.
                own = next((row for row in rows if (row.product_id, row.pic_name) == (product_id, pic_name)), None)
                own = own or picture_store.stored(conn, instance.id, product_id, pic_name)
                if own is None:
                    raise NoSpecifiedSearchPic(missing)
                searched.append(PicInfo(own.category_id, own.region, [own.region]))
            return rows

        found = self._search(request, window, fetch, began)
        return dataclasses.replace(found, pic_info=searched[0])

    def by_vector(self, request: SearchRequest, vector) -> SearchResult:
        """Search with a vector of the instance's dimension (scaled to unit length), as the encoder would
        give: for callers with their own embeddings, and the SQL surface. Trademark instances rank by the
        picture vectors alone (no silhouettes, no re-ranking)."""
        began = time.perf_counter()
        window, instance = self._window(request)
        query = validation.query_vector(vector, instance.embedding_dim)

        def fetch(conn, instance, limit, expected):
            return picture_search.nearest(
                conn, instance.id, instance.embedding_dim, query, limit, window.filter, window.category_id,
                expected=expected,
            )

        return self._search(request, window, fetch, began)

    def by_product(self, request: SearchRequest, product_id: str) -> SearchResult:
        """Pictures of other products near any picture of this one ("which products look like this one"):
        each of its first MAX_PRODUCT_QUERIES pictures (by PicName) searches, and a picture keeps its best
        score. Trademark instances rank by the picture vectors alone, as by_vector does."""
        began = time.perf_counter()
        validation.picture_key(product_id, None, pic_name_required=False)
        window, _ = self._window(request, exclude_product=product_id)

        def fetch(conn, instance, limit, expected):
            queries = picture_store.product_embeddings(conn, instance.id, product_id, MAX_PRODUCT_QUERIES)
            if not queries:
                raise NoSpecifiedSearchPic(f"no pictures with ProductId {product_id!r}")
            best: dict = {}
            for query in queries:
                for row in picture_search.nearest(
                    conn, instance.id, instance.embedding_dim, query, limit, window.filter, window.category_id,
                    expected=expected, exclude_product=product_id,
                ):
                    key = (row.product_id, row.pic_name)
                    if key not in best or row.score > best[key].score:
                        best[key] = row
            # Ties in code-point order of ProductId, then PicName (as the SQL function's COLLATE "C").
            return sorted(best.values(), key=lambda row: (-row.score, row.product_id, row.pic_name))[:limit]

        return self._search(request, window, fetch, began)

    def by_text(self, request: SearchRequest, text: str) -> SearchResult:
        """Search with a phrase, on an instance whose encoder has a text model (its spec's [text] table)."""
        began = time.perf_counter()
        validation.text("Text", text, min_len=1, max_len=512, required=True)
        window, instance = self._window(request)
        text_encoder = self.pipeline.encoders.get(instance.encoder).text_encoder()
        if text_encoder is None:
            raise InvalidParameter(
                f"instance {request.instance_name!r} uses encoder {instance.encoder!r}, which has no text model: "
                "SearchImageByText needs an instance whose encoder spec has a [text] table"
            )
        embedding = text_encoder.predict(text)

        def fetch(conn, instance, limit, expected):
            return picture_search.nearest(
                conn, instance.id, instance.embedding_dim, embedding, limit, window.filter, expected=expected
            )

        return self._search(request, window, fetch, began)

    def by_filter(self, instance_name: str, filter: str, *, num: int = 10, start: int = 0) -> SearchResult:
        """Pictures whose attributes match ``filter``, ordered by ProductId then PicName, without scores."""
        began = time.perf_counter()
        if filter is None or filter == "":
            raise MissingParameter("Filter is required")
        validation.window(num, start)
        parsed = parse_filter(filter)

        def listing(conn, instance):
            rows = picture_store.listing(conn, instance.id, parsed, num, start)
            found = picture_search.count(conn, instance.id, parsed, None, False, validation.MAX_WINDOW)
            return rows, found

        rows, found = self.instances.read(instance_name, listing)
        return result(rows, found, 0, began, scored=False)

    def duplicate_pairs(self, instance_name: str, min_score: float, neighbours: int = 10) -> list:
        """Pairs of different pictures scoring ``min_score`` or more, best first, as the SQL function
        imagesearch.duplicate_pairs finds them (each picture's ``neighbours`` nearest)."""
        return self.instances.read(
            instance_name, lambda conn, instance: duplicates.pairs(conn, instance_name, min_score, neighbours)
        )

    def compare(self, instance_name: str, primary: bytes, secondary: bytes) -> float:
        """The Score two pictures would have if one were stored and the other searched with (0..1).

        Each is cut to its subject as AddImage and SearchImageByPic would; on trademark instances the best
        of the picture score and the silhouette score less the encoder's margin counts (without the geometric
        re-ranking)."""
        instance = self.instances.cached(instance_name)
        first = self.pipeline.prepare(instance, primary, crop=True, region=None, query=True)
        query = first.description
        stored = self.pipeline.prepare(instance, secondary, crop=True, region=None, query=False).description
        score = float(query.embedding @ stored.embedding)
        if query.silhouettes is not None and stored.silhouettes is not None:
            shapes = float((query.silhouettes @ stored.silhouettes.T).max())
            score = max(score, shapes - first.encoder.silhouette_margin)
        return min(1.0, max(0.0, score))

    def _window(self, request: SearchRequest, exclude_product: str | None = None):
        """The request's options checked, and the instance (cached)."""
        validation.window(request.num, request.start)
        threshold = validation.score_threshold(request.score_threshold)
        parsed = None if request.filter is None else parse_filter(request.filter)
        instance = self.instances.cached(request.instance_name)
        within = validation.category(instance.service_type, request.category_id)
        window = Window(request.start, request.num, threshold, request.distinct_product_id, parsed, within,
                        exclude_product)
        return window, instance

    def _search(self, request: SearchRequest, window: Window, fetch: Fetch, began: float,
                pic_info: PicInfo | None = None) -> SearchResult:
        rows, docs_found = self.instances.read(
            request.instance_name, lambda conn, instance: ranked(conn, instance, fetch, window)
        )
        return result(rows, docs_found, request.start, began, pic_info)
