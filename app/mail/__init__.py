from app.mail.message import deliver, frontend_link, render
from app.mail.tasks import send_mail

__all__ = ["deliver", "frontend_link", "render", "send_mail"]
