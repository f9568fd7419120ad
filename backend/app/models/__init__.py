"""ORM models; importing this package registers every table on `Base.metadata`."""

from app.models.api_key import ApiKey
from app.models.base import Base
from app.models.image import Image, ThumbnailStatus, Visibility
from app.models.integrity_finding import IntegrityFinding, IntegrityProblem
from app.models.maintenance_run import MaintenanceRun
from app.models.user import User
from app.models.variant import Variant, VariantStatus

__all__ = [
    "ApiKey",
    "Base",
    "Image",
    "IntegrityFinding",
    "IntegrityProblem",
    "MaintenanceRun",
    "ThumbnailStatus",
    "User",
    "Variant",
    "VariantStatus",
    "Visibility",
]
