"""Filled by issue 3 (HIS gateway): see the module docstring once it lands."""

from miniprogram_api.routing import Api

api = Api()
