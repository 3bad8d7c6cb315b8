"""Builds the Celery configuration from the project's settings."""

from __future__ import annotations

from typing import Any

from kombu.entity import Queue

from celery_task.queues import DEFAULT_QUEUE, queue_names, route_task, task_module_names
from core.config import Settings

# Seconds after which a blocking call to Redis gives up, so that no worker hangs on a dead
# connection and a thread a request stopped waiting for (SEND_TIMEOUT_SECONDS) ends soon.
REDIS_CONNECT_TIMEOUT = 1
REDIS_SOCKET_TIMEOUT = 1

_BROKER_TRANSPORT_OPTIONS = {
    "socket_connect_timeout": REDIS_CONNECT_TIMEOUT,
    "socket_timeout": REDIS_SOCKET_TIMEOUT,
    # A timed-out command is not sent again by redis-py: kombu's retry policy decides.
    "retry_on_timeout": False,
    # acks_late: a task whose worker died unacknowledged is delivered again after this.
    "visibility_timeout": 3600,
}

# One quick second try, never Celery's default of 20 tries a second apart: a publish or a
# result-channel subscription made on the request path must fail within about a second.
_QUICK_RETRY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}


class CeleryConfigurator:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def queues(self) -> list[Queue]:
        return [Queue(name, routing_key=name) for name in queue_names()]

    def as_dict(self) -> dict[str, Any]:
        settings = self.settings
        eager = bool(settings.CELERY_TASK_ALWAYS_EAGER)
        return {
            "broker_url": settings.CELERY_BROKER_URL or "memory://localhost/",
            # Without Redis (the embedded default) results live in this process.
            "result_backend": settings.CELERY_BACKEND_URL or "cache+memory://",
            "task_serializer": "json",
            "result_serializer": "json",
            "accept_content": ["json"],
            "timezone": "UTC",
            "enable_utc": True,
            "task_default_queue": DEFAULT_QUEUE,
            "task_queues": self.queues(),
            "task_routes": (route_task,),
            "task_acks_late": True,
            "task_reject_on_worker_lost": True,
            "worker_prefetch_multiplier": 1,
            "task_soft_time_limit": 300,
            "task_time_limit": 330,
            "result_expires": 24 * 3600,
            "result_extended": True,
            "task_track_started": True,
            "worker_send_task_events": True,
            "task_send_sent_event": True,
            "task_always_eager": eager,
            "task_eager_propagates": True,
            "task_store_eager_result": True,
            # Imported by workers at start, with the working directory on sys.path like the
            # app itself: a worker registers every app/*/tasks.py whatever its queues.
            "include": task_module_names(),
            "broker_connection_retry_on_startup": True,
            "broker_connection_timeout": REDIS_CONNECT_TIMEOUT,
            "broker_transport_options": _BROKER_TRANSPORT_OPTIONS,
            "task_publish_retry": True,
            "task_publish_retry_policy": _QUICK_RETRY,
            "redis_socket_connect_timeout": REDIS_CONNECT_TIMEOUT,
            "redis_socket_timeout": REDIS_SOCKET_TIMEOUT,
            "redis_retry_on_timeout": False,
            # Reconnecting the result channel (on send) and storing a result use this policy.
            "result_backend_transport_options": {"retry_policy": _QUICK_RETRY},
            # Sends and reads run on worker threads, which come and go: they share one client.
            "result_backend_thread_safe": True,
            # Reading or storing a result tries a few times with a short backoff, then fails.
            "result_backend_always_retry": True,
            "result_backend_max_retries": 2,
            "result_backend_base_sleep_between_retries_ms": 100,
            "result_backend_max_sleep_between_retries_ms": 500,
            "worker_hijack_root_logger": False,
        }
