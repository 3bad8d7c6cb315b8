from enum import StrEnum


class CacheTag(StrEnum):
    """Names of cache namespaces shared by several functions; add yours here."""

    GET_USER_LIST = "get_user_list"
