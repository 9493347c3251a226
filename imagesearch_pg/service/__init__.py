"""The service layer: the only door to the library's operations."""

from imagesearch_pg.service.image_search import ImageSearch
from imagesearch_pg.service.models import Attributes, Auction, DeleteResult, Instance, PicInfo, SearchResult

__all__ = ["Attributes", "Auction", "DeleteResult", "ImageSearch", "Instance", "PicInfo", "SearchResult"]
