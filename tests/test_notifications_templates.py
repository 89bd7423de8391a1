"""Templates against WeChat's keyword rules (DOMAIN §4), checked with the sandbox's own validator: whatever
text goes in, what comes out is accepted, cut cleanly with an ellipsis inside the limit, on one line."""

from __future__ import annotations

from datetime import UTC, date, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from notifications.templates import (
    ADMISSION,
    APPROVAL,
    PROGRESS,
    TEMPLATES,
    clean,
    detail_page,
    fit,
    render,
    template_by_id,
    template_id,
    truncate,
)
from security.masking import mask_name
from settings import Settings
from wechat.sandbox.keywords import value_problem

TYPES = sorted({kind for t in TEMPLATES.values() for kind in t.keywords.values()} | {"name", "number"})


def test_thing_is_cut_to_twenty_with_an_ellipsis_inside_the_limit():
    long = "江苏省苏北人民医院心血管内科介入治疗中心第二病区"
    value = fit("thing", long)
    assert len(value) == 20 and value.endswith("…")
    assert value.startswith("江苏省苏北人民医院心血管内科介入治疗")
    assert fit("thing", "心血管内科") == "心血管内科"
    assert value_problem("thing", value) is None


def test_a_cut_does_not_end_on_punctuation():
    assert truncate("一二三四五六七八九十，一二三四五六七八九十", 12) == "一二三四五六七八九十…"
    assert truncate("abc, def", 6) == "abc…"


def test_character_string_keeps_ascii_and_fits_thirty_two():
    assert fit("character_string", "ZZ261126K7QM") == "ZZ261126K7QM"
    value = fit("character_string", "转诊ZZ261126K7QM" + "X" * 40)
    assert len(value) == 32 and value.endswith("...") and value.startswith("ZZ261126K7QM")
    assert value_problem("character_string", value) is None
    assert fit("character_string", "编号") == "-"


def test_phrase_is_at_most_five_chinese_characters():
    assert fit("phrase", "已接收") == "已接收"
    assert fit("phrase", "已通过（初审）OK") == "已通过初审"
    assert fit("phrase", "审批已经全部通过了") == "审批已经全"
    assert fit("phrase", "OK!") == "无"
    for value in ("已接收", "已通过初审", "审批已经全", "无"):
        assert value_problem("phrase", value) is None


def test_no_newlines_or_control_characters_survive():
    value = fit("thing", "胸痛\n3小时\t伴\u200b出汗\r\n\x07")
    assert value == "胸痛 3小时 伴出汗"
    assert clean("  a \u3000 b\u2028c ") == "a b c"


def test_time_and_date_use_wechat_formats_in_china_time():
    at = datetime(2026, 11, 26, 1, 30, tzinfo=UTC)
    assert fit("time", at) == "2026-11-26 09:30"
    assert fit("date", date(2026, 11, 28)) == "2026年11月28日"
    assert fit("date", datetime(2026, 11, 27, 20, 0, tzinfo=UTC)) == "2026年11月28日"
    assert value_problem("time", fit("time", at)) is None
    assert value_problem("date", fit("date", date(2026, 11, 28))) is None


def test_patient_names_are_masked_and_fit_a_thing():
    assert mask_name("张三明") == "张*明"
    assert fit("thing", mask_name("欧阳娜娜")) == "欧**娜"
    assert fit("name", "张*明") == "张明"  # a name keyword admits no symbols, so we never put a masked name in one


def test_render_fills_every_keyword_and_refuses_unknown_ones():
    data = render(PROGRESS, {"character_string1": "ZZ261126K7QM", "phrase3": "已拒绝"})
    assert set(data) == set(PROGRESS.keywords)
    assert data["thing2"] == "无" and len(data["time6"]) == 16  # a time keyword cannot be empty: now
    try:
        render(PROGRESS, {"thing9": "x"})
    except KeyError as exc:
        assert "thing9" in str(exc)
    else:
        raise AssertionError("an unknown keyword must be refused")


def test_template_ids_come_from_settings_and_map_back(tmp_path):
    settings = Settings.from_env({}, data_dir=tmp_path, wechat_template_progress="TMPL_prog_123")
    assert template_id(settings, "progress") == "TMPL_prog_123"
    assert template_by_id(settings, "TMPL_prog_123") is PROGRESS
    assert template_by_id(settings, "rc-referral-approval") is APPROVAL
    assert template_by_id(settings, "rc-referral-progress") is None
    assert {t.key for t in TEMPLATES.values()} == {"approval", "progress", "admission", "chat"}
    assert ADMISSION.keywords["date4"] == "date"


def test_pages_open_the_referral():
    assert detail_page("3f1c") == "pages/referral/detail?id=3f1c"


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(TYPES), text=st.text(max_size=80))
def test_any_text_fits_every_keyword_type(kind, text):
    value = fit(kind, text)
    assert value_problem(kind, value) is None, (kind, text, value)


@settings(max_examples=100, deadline=None)
@given(values=st.dictionaries(st.sampled_from(sorted(APPROVAL.keywords)), st.text(max_size=60)))
def test_rendered_templates_always_pass_the_sandbox(values):
    for keyword, value in render(APPROVAL, values).items():
        assert value_problem(APPROVAL.keywords[keyword], value) is None, (keyword, value)
