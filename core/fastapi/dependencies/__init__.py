from core.fastapi.dependencies.logging import *  # noqa: F403 - the names are logging.__all__
from core.fastapi.dependencies.permissions import *  # noqa: F403 - and permissions.__all__
from core.fastapi.dependencies.rate_limit import *  # noqa: F403 - and rate_limit.__all__
