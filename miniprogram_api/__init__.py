"""aiohttp routes for the mini-program and outside clients: thin handlers, schemas, OpenAPI."""

from __future__ import annotations

from aiohttp import web

from miniprogram_api import (
    admin,
    auth,
    binding_requests,
    capacity,
    chat,
    console_tickets,
    consultations,
    directory,
    his_connection,
    his_launch,
    inbox,
    jobs,
    ops,
    patients,
    referral_records,
    referrals,
    slips,
    stats,
    subscriptions,
    surveys,
    ward_rounds,
)
from miniprogram_api.routing import Api

API_MODULES = [ops, auth, binding_requests, directory, admin, capacity, patients, his_launch, referrals,
               referral_records, slips, inbox, subscriptions, jobs, his_connection, chat, consultations, ward_rounds,
               stats, surveys, console_tickets]


def all_routes() -> list:
    from bot.routes import api as bot_api  # installed by bot.setup; documented with the rest

    return [spec for module in API_MODULES for spec in module.api.routes] + bot_api.routes


def setup(app: web.Application) -> None:
    for module in API_MODULES:
        module.api.install(app)


__all__ = ["Api", "all_routes", "setup"]
