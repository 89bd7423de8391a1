"""The demo consortium's history: a few months of generated referrals and the paper's baselines (Table 1's
常规双向转诊 column) for the lead hospital, so that `make run` shows figures from the start."""

from __future__ import annotations

from models import Baseline, Institution
from security.crypto import PersonalDataCipher
from stats.history import generate

DEMO_REFERRALS = 1500
DEMO_YEARS = 0.5
# The paper's Table 1, traditional referral (常规双向转诊).
PAPER_BASELINES = {"up": 5.45, "down": 3.23}


async def seed_demo_history(cipher: PersonalDataCipher) -> dict:
    counts = await generate(cipher, referrals=DEMO_REFERRALS, years=DEMO_YEARS)
    lead = await Institution.filter(deleted_at=None).order_by("id").first()
    if lead is not None:
        for direction, mean_days in PAPER_BASELINES.items():
            await Baseline.get_or_create(institution_id=lead.id, direction=direction, defaults={
                "period": "平台上线前一年", "mean_days": mean_days, "n": 60,
                "source_note": "论文表1“常规双向转诊”（演示数据）"})
    return counts
