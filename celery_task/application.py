"""The Celery application. Nothing here connects or reads settings until first used."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, Task
from celery.result import AsyncResult
from kombu.exceptions import OperationalError
from kombu.utils.uuid import uuid

from celery_task.configurator import CeleryConfigurator
from core.config import config
from core.db import in_transaction, on_commit
from core.exceptions import ServiceUnavailableException
from core.logging import request_id_var

logger = logging.getLogger(__name__)


class BrokerUnavailableException(ServiceUnavailableException):
    error_code = "BROKER_UNAVAILABLE"
    detail = "Background work cannot be queued right now; retry later."


class AppTask(Task):  # type: ignore[misc]
    """Every task of the project: sent after the surrounding transaction commits.

    A task sent inside `@Transactional` is published once the transaction has committed (and
    never if it rolls back), so a worker never looks for a row that is not there yet. The
    caller gets the task's id at once. The request id travels along in the message headers.
    """

    def apply_async(self, args: Any = None, kwargs: Any = None, **options: Any) -> AsyncResult:
        options.setdefault("task_id", uuid())
        headers = options.setdefault("headers", {})
        if (request_id := request_id_var.get()) is not None:
            headers.setdefault("request_id", request_id)
        if in_transaction():
            on_commit(lambda: self._publish(args, kwargs, options), propagate_errors=True)
            return self.AsyncResult(options["task_id"])
        return self._publish(args, kwargs, options)

    def _publish(self, args: Any, kwargs: Any, options: dict[str, Any]) -> AsyncResult:
        try:
            return super().apply_async(args, kwargs, **options)
        except OperationalError as error:
            logger.warning("could not queue %s: %s", self.name, error)
            raise BrokerUnavailableException() from error


celery_app = Celery("celery_task", task_cls=AppTask)
celery_app.add_defaults(lambda: CeleryConfigurator(config).as_dict())
