from core.exceptions.base import *  # noqa: F403 - the names are base.__all__
