from app.post.events import delete_posts_of_deleted_user
from app.post.exceptions import PostNotFoundException
from app.post.models import Post
from app.post.permissions import PERMISSIONS, IsAuthor
from app.post.repository import POST_LIST
from app.post.schemas import PostCreate, PostRead, PostUpdate
from app.post.service import PostService, post_service

__all__ = [
    "PERMISSIONS",
    "POST_LIST",
    "IsAuthor",
    "Post",
    "PostCreate",
    "PostNotFoundException",
    "PostRead",
    "PostService",
    "PostUpdate",
    "delete_posts_of_deleted_user",
    "post_service",
]
