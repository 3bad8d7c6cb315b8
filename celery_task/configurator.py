"""Builds the Celery configuration from the project's settings."""

from __future__ import annotations

from typing import Any

from kombu.entity import Queue

from celery_task.queues import DEFAULT_QUEUE, queue_names, route_task, task_module_names
from core.config import Settings

# Broker and result backend connections give up quickly: a request that enqueues while the
# broker is down gets a 503 in about a second instead of hanging.
_REDIS_TRANSPORT_OPTIONS = {
    "socket_connect_timeout": 2,
    "socket_timeout": 5,
    # acks_late: a task whose worker died unacknowledged is delivered again after this.
    "visibility_timeout": 3600,
}


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
            "broker_transport_options": _REDIS_TRANSPORT_OPTIONS,
            "result_backend_transport_options": _REDIS_TRANSPORT_OPTIONS,
            "redis_socket_connect_timeout": 2,
            "redis_socket_timeout": 5,
            "task_publish_retry_policy": {
                "max_retries": 2,
                "interval_start": 0,
                "interval_step": 0.2,
                "interval_max": 0.5,
            },
            "worker_hijack_root_logger": False,
        }
