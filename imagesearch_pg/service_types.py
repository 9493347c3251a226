"""The four service types and the rules that differ between them: one table that every path reads
(AddImage, the searches, CompareSimilarByImage, the benchmarks)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceType:
    name: str
    min_side: int  # each side of a picture, in pixels (pictures are at most 4096 on either side)
    crops: bool  # Crop=true cuts the picture to its subject; fabric is texture, always the whole picture
    # When the background is not plain, the salient-object network finds the subject. On trademark
    # instances the query's colour layers find a mark on a busy picture, and saliency would find the
    # photo's subject rather than the mark.
    saliency: bool
    categories: bool  # CategoryId is given or predicted; on the other types every picture is in Other
    default_encoder: str


# Encoders chosen by benchmark (docs/benchmarks.md): GeM-pooled Lite0 beat average pooling everywhere;
# trademark adds silhouettes and keypoints, fabric a quarter turn.
SERVICE_TYPES: dict[str, ServiceType] = {
    t.name: t
    for t in (
        ServiceType("product", 100, crops=True, saliency=True, categories=True, default_encoder="efficientnet-lite0-gem"),
        ServiceType("generic", 100, crops=True, saliency=True, categories=False, default_encoder="efficientnet-lite0-gem"),
        ServiceType("fabric", 448, crops=False, saliency=False, categories=False,
                    default_encoder="efficientnet-lite0-gem-texture"),
        ServiceType("trademark", 200, crops=True, saliency=False, categories=False,
                    default_encoder="efficientnet-lite0-trademark"),
    )
}
