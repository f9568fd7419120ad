"""ORM models; importing this package registers every table on `Base.metadata`."""

from app.models.base import Base
from app.models.image import Image, ThumbnailStatus
from app.models.integrity_finding import IntegrityFinding, IntegrityProblem
from app.models.maintenance_run import MaintenanceRun
from app.models.user import User
from app.models.variant import Variant, VariantStatus

__all__ = [
    "Base",
    "Image",
    "IntegrityFinding",
    "IntegrityProblem",
    "MaintenanceRun",
    "ThumbnailStatus",
    "User",
    "Variant",
    "VariantStatus",
]
