"""A faithful local stand-in for the WeChat server API: same paths, JSON and errcodes, plus /sandbox/* knobs.

Embedded in the app at /wechat-sandbox/ (and on its own port for the client); standalone with
`python -m wechat.sandbox --host 127.0.0.1 --port 9300`."""

from wechat.sandbox.app import STATE, create_sandbox_app
from wechat.sandbox.state import WECHAT_PATHS, ApiError, SandboxState

__all__ = ["STATE", "WECHAT_PATHS", "ApiError", "SandboxState", "create_sandbox_app"]
