"""The service layer: the only door to the library's operations (see facade.ImageSearch)."""

from imagesearch_pg.attributes import Attributes
from imagesearch_pg.service.facade import ImageSearch
from imagesearch_pg.service.models import DeleteResult, Instance, Match, PicInfo, SearchResult

__all__ = ["Attributes", "DeleteResult", "ImageSearch", "Instance", "Match", "PicInfo", "SearchResult"]
