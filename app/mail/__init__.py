from app.mail.message import deliver, frontend_link, render
from app.mail.tasks import queue_mail, send_mail

__all__ = ["deliver", "frontend_link", "queue_mail", "render", "send_mail"]
