"""Who is told what: templates, limits, masking, channels (subscribe message and in-app inbox), subscription
credits, reminders. Everything leaves through outbox jobs (see `notifications.handlers`)."""

from __future__ import annotations

from aiohttp import web

from appkeys import SETTINGS, WECHAT_SANDBOX


def setup(app: web.Application) -> None:
    """Register the job handlers and, in embedded mode, our templates with the WeChat sandbox."""
    from notifications import handlers  # noqa: F401  (registers the job handlers)
    from notifications.templates import TEMPLATES, sandbox_fields, template_id

    settings = app[SETTINGS]
    if settings.embedded_wechat:
        sandbox = app[WECHAT_SANDBOX]
        for template in TEMPLATES.values():
            sandbox.register_template(template_id(settings, template.key), sandbox_fields(template),
                                      title=template.title)
