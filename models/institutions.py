"""Consortium members and their departments."""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields

from models.base import SoftDeleted


class Level(StrEnum):
    TERTIARY = "tertiary"
    COUNTY = "county"
    PRIMARY = "primary"


LEVEL_NAMES = {Level.TERTIARY: "三级医院", Level.COUNTY: "县级医院", Level.PRIMARY: "基层医疗机构"}


class Institution(SoftDeleted):
    code = fields.CharField(max_length=32, unique=True)
    name = fields.CharField(max_length=100)
    short_name = fields.CharField(max_length=32, default="")
    level = fields.CharEnumField(Level, max_length=16)
    region = fields.CharField(max_length=64, default="")
    phone = fields.CharField(max_length=32, default="")
    address = fields.CharField(max_length=200, default="")
    # HIS front-end processor (前置机); empty means the built-in simulator in embedded mode.
    his_base_url = fields.CharField(max_length=300, default="")
    his_ca_bundle = fields.TextField(default="")
    his_client_cert = fields.TextField(default="")
    his_client_key = fields.TextField(default="")
    # How the gateway authenticates to it (his.connection): none, bearer, basic, client_credentials or
    # smart_backend; the secret (token, password, client secret or private key PEM) is encrypted like ID numbers.
    his_auth = fields.CharField(max_length=24, default="none")
    his_token_url = fields.CharField(max_length=300, default="")
    his_client_id = fields.CharField(max_length=200, default="")
    his_scope = fields.CharField(max_length=300, default="")
    his_key_id = fields.CharField(max_length=100, default="")
    his_secret_enc = fields.TextField(default="")
    # Who assigns the MRN and the admission certificate number: "his" (a Chinese HIS does) or "platform" (a
    # general FHIR server: its logical Patient id is the HIS key and the platform issues certificate numbers).
    his_identifiers = fields.CharField(max_length=16, default="his")
    # PEM public key the institution's HIS signs single-sign-on launch tokens with.
    launch_public_key = fields.TextField(default="")

    departments: fields.ReverseRelation[Department]

    class Meta:
        table = "institution"
        ordering = ["id"]


class Department(SoftDeleted):
    institution = fields.ForeignKeyField("models.Institution", related_name="departments",
                                         on_delete=fields.RESTRICT)
    code = fields.CharField(max_length=32)
    name = fields.CharField(max_length=64)
    ward = fields.CharField(max_length=64, default="")
    phone = fields.CharField(max_length=32, default="")
    is_active = fields.BooleanField(default=True)

    class Meta:
        table = "department"
        unique_together = (("institution", "code"),)
        ordering = ["id"]
