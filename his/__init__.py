"""HIS gateway (FHIR R4 over each institution's front-end processor) and the HIS simulator."""

from aiohttp import web


def setup(app: web.Application) -> None:
    """Install the HIS gateway and, in embedded mode, the simulator."""
