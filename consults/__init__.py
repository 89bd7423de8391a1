"""Cloud consultations (云会诊) and remote ward rounds (远程查房), DESIGN §9."""

from __future__ import annotations

from aiohttp import web


def setup(app: web.Application) -> None:
    """Register the consultation and ward-round job handlers (the routes are in miniprogram_api)."""
    from consults import notices, round_jobs  # noqa: F401  (registers the job handlers)
