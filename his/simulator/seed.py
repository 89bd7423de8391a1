"""Deterministic demo data of one simulated HIS: the same institution code always yields the same patients,
encounters and results, so the simulator needs nothing from the platform's own seed.

The people are synthetic: Chinese names, valid GB 11643 ID numbers (correct check digits) from Yangzhou
region codes, MRNs that are printed on the patient's card as ``<institution code>-<MRN>``."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from security.idcard import make_id_number

# Yangzhou (the demo consortium's city) districts and counties.
REGIONS = [
    ("321002", "扬州市广陵区"), ("321003", "扬州市邗江区"), ("321012", "扬州市江都区"),
    ("321084", "高邮市"), ("321023", "宝应县"), ("321081", "仪征市"),
]
STREETS = ["文昌中路", "汶河北路", "琼花路", "运河西路", "扬子江北路", "盐阜东路", "史可法路", "江阳中路"]
SURNAMES = ["王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "朱", "胡", "郭", "何", "高", "林"]
MALE_GIVEN = ["国强", "建华", "志明", "德胜", "永福", "文斌", "海波", "长林", "宝山", "春生", "立新", "振华"]
FEMALE_GIVEN = ["秀兰", "桂英", "玉梅", "淑珍", "丽华", "凤英", "春燕", "美玲", "晓红", "慧敏", "素琴", "兰芳"]


@dataclass(frozen=True)
class Scenario:
    department: str
    diagnoses: tuple[tuple[str, str], ...]  # (ICD-10 code, 中文名称), primary first
    chief_complaint: str
    present_illness: str
    past_history: str
    allergies: str
    treatment: str
    results: tuple[tuple[str, str, str, str], ...]  # (category LAB/RAD/OTH, code, name, conclusion)
    min_age: int = 40
    max_age: int = 85


SCENARIOS = [
    Scenario(
        "神经内科", (("I63.9", "脑梗死"), ("I10", "原发性高血压")),
        "左侧肢体无力伴言语含糊6小时",
        "患者6小时前晨起时发现左侧肢体无力，持物不稳，行走拖步，伴言语含糊，无头痛、呕吐，无意识障碍及抽搐。"
        "急诊头颅CT未见出血，NIHSS评分6分。",
        "高血压病史10年，规律服用氨氯地平5 mg每日一次；否认糖尿病、冠心病史。",
        "否认药物及食物过敏史",
        "予阿司匹林300 mg嚼服、阿托伐他汀20 mg调脂、改善循环治疗，症状无明显好转，建议转上级医院神经内科进一步诊治。",
        (("RAD", "CT-HEAD", "头颅CT平扫", "右侧基底节区低密度灶，考虑急性脑梗死，未见颅内出血。"),
         ("LAB", "CBC", "血常规", "白细胞 7.6×10^9/L，血红蛋白 138 g/L，血小板 212×10^9/L，未见明显异常。")),
        55, 85),
    Scenario(
        "心血管内科", (("I21.9", "急性心肌梗死"),),
        "持续性胸骨后压榨样疼痛3小时",
        "患者3小时前活动中突发胸骨后压榨样疼痛，向左肩背部放射，伴大汗、恶心，含服硝酸甘油不缓解。"
        "心电图示V1–V4导联ST段抬高。",
        "吸烟30年，每日20支；高脂血症病史5年，未规律服药。",
        "青霉素过敏（皮疹）",
        "予阿司匹林300 mg、氯吡格雷300 mg负荷，吸氧、心电监护，建议转上级医院行急诊冠状动脉介入治疗（PCI）。",
        (("OTH", "ECG", "十二导联心电图", "窦性心律，V1–V4导联ST段抬高0.3–0.5 mV，考虑急性前壁心肌梗死。"),
         ("LAB", "CTNI", "肌钙蛋白I", "cTnI 3.2 ng/mL（↑，参考值<0.04 ng/mL）。")),
        45, 80),
    Scenario(
        "呼吸与危重症医学科", (("J18.9", "肺炎"),),
        "发热、咳嗽、咳黄痰5天",
        "患者5天前受凉后出现发热，最高体温39.2℃，伴咳嗽、咳黄脓痰，近2天出现胸闷、气促，活动后加重。",
        "慢性阻塞性肺疾病病史5年，间断吸入噻托溴铵。",
        "头孢类药物过敏（皮疹）",
        "予左氧氟沙星0.5 g静滴每日一次3天，体温仍反复，指脉氧饱和度92%，建议转上级医院呼吸科进一步治疗。",
        (("RAD", "CT-CHEST", "胸部CT平扫", "右下肺斑片状高密度影，考虑肺炎；双肺气肿。"),
         ("LAB", "CBC", "血常规", "白细胞 14.6×10^9/L（↑），中性粒细胞 86%（↑），C反应蛋白 68 mg/L（↑）。")),
        40, 85),
    Scenario(
        "内分泌科", (("E11.9", "2型糖尿病"), ("I10", "原发性高血压")),
        "口干、多饮、多尿2月，血糖控制不佳1周",
        "患者2月前出现口干、多饮、多尿，体重下降约4 kg，近1周自测空腹血糖11–14 mmol/L，无恶心、呕吐及意识改变。",
        "2型糖尿病病史8年，口服二甲双胍0.5 g每日三次；高血压病史3年。",
        "否认药物及食物过敏史",
        "调整口服降糖方案后空腹血糖仍波动在11–14 mmol/L，建议转上级医院内分泌科调整胰岛素治疗方案。",
        (("LAB", "HBA1C", "糖化血红蛋白", "HbA1c 9.8%（↑，参考值4.0–6.0%）。"),
         ("LAB", "GLU", "空腹血糖", "13.2 mmol/L（↑，参考值3.9–6.1 mmol/L）。")),
        35, 80),
    Scenario(
        "普通外科", (("K35.8", "急性阑尾炎"),),
        "转移性右下腹痛12小时",
        "患者12小时前无明显诱因出现脐周隐痛，后转移并固定于右下腹，伴恶心、呕吐1次，体温38.1℃。"
        "查体：麦氏点压痛、反跳痛阳性。",
        "既往体健，否认手术外伤史。",
        "否认药物及食物过敏史",
        "予禁食、补液、头孢呋辛1.5 g静滴抗感染，建议转上级医院普外科手术治疗。",
        (("RAD", "US-ABD", "腹部超声", "阑尾增粗，直径约9 mm，周围少量渗出，考虑急性阑尾炎。"),
         ("LAB", "CBC", "血常规", "白细胞 13.1×10^9/L（↑），中性粒细胞 82%（↑）。")),
        18, 65),
    Scenario(
        "呼吸与危重症医学科", (("J44.1", "慢性阻塞性肺疾病伴有急性加重"),),
        "反复咳嗽咳痰10年，加重伴气喘3天",
        "患者10年来每逢冬春季反复咳嗽、咳白痰，3天前受凉后咳嗽加重，痰量增多，伴明显气喘，夜间不能平卧。",
        "吸烟40年，已戒烟2年；否认高血压、糖尿病史。",
        "否认药物及食物过敏史",
        "予雾化吸入布地奈德、沙丁胺醇，静滴氨茶碱，气喘稍缓解，血气分析示二氧化碳潴留，建议转上级医院呼吸科。",
        (("LAB", "ABG", "动脉血气分析", "pH 7.32（↓），PaCO2 58 mmHg（↑），PaO2 62 mmHg（↓）。"),),
        55, 85),
    Scenario(
        "康复医学科", (("I69.3", "脑梗死后遗症"),),
        "脑梗死后右侧肢体活动不利1月",
        "患者1月前因急性脑梗死于上级医院住院治疗，病情稳定出院，现右侧肢体肌力4级，可扶拐行走，言语稍含糊。",
        "高血压病史12年，口服缬沙坦；2型糖尿病病史5年。",
        "否认药物及食物过敏史",
        "上级医院予抗血小板、调脂、控制血压治疗及早期康复训练，病情稳定，建议转社区卫生服务中心继续康复治疗。",
        (("RAD", "MRI-HEAD", "头颅磁共振", "左侧放射冠区陈旧性腔隙性脑梗死。"),),
        55, 85),
    Scenario(
        "骨科", (("S72.0", "股骨颈骨折"),),
        "跌倒致左髋部疼痛、活动受限4小时",
        "患者4小时前在家中不慎跌倒，左髋部着地，即感左髋部剧烈疼痛，不能站立行走，左下肢短缩外旋畸形。",
        "骨质疏松症病史3年；高血压病史8年。",
        "磺胺类药物过敏",
        "予制动、镇痛处理，X线示左股骨颈骨折，建议转上级医院骨科手术治疗。",
        (("RAD", "XR-HIP", "左髋关节X线", "左股骨颈骨折，断端移位（Garden III型）。"),),
        60, 90),
]

PATIENTS_PER_INSTITUTION = 9  # one of them has no open encounter (a registered outpatient)
FIRST_REGISTERED_MRN = 60000001  # MRNs the HIS assigns to patients registered later


@dataclass(frozen=True)
class DemoPatient:
    mrn: str
    name: str
    id_number: str
    gender: str
    birth_date: date
    phone: str
    address: str
    scenario: Scenario | None


def _rng(code: str) -> random.Random:
    return random.Random(int.from_bytes(hashlib.sha256(f"his-sim:{code}".encode()).digest()[:8], "big"))


def demo_patients(code: str, today: date) -> list[DemoPatient]:
    """The institution's seeded patients; ``today`` anchors ages, nothing else depends on the clock."""
    rng = _rng(code)
    scenarios: list[Scenario | None] = list(SCENARIOS)
    rng.shuffle(scenarios)
    scenarios.append(None)
    patients: list[DemoPatient] = []
    used_mrns: set[str] = set()
    used_names: set[str] = set()
    for scenario in scenarios[:PATIENTS_PER_INSTITUTION]:
        male = rng.random() < 0.55
        while True:
            name = rng.choice(SURNAMES) + rng.choice(MALE_GIVEN if male else FEMALE_GIVEN)
            if name not in used_names:
                used_names.add(name)
                break
        low, high = (scenario.min_age, scenario.max_age) if scenario else (25, 70)
        age = rng.randint(low, high)
        birth = date(today.year - age, rng.randint(1, 12), rng.randint(1, 28))
        seq = rng.randrange(1 if male else 0, 1000, 2)  # odd sequence codes are men, even women
        region, region_name = rng.choice(REGIONS)
        while True:
            mrn = f"{rng.randint(10000000, 59999999)}"
            if mrn not in used_mrns:
                used_mrns.add(mrn)
                break
        patients.append(DemoPatient(
            mrn=mrn, name=name, id_number=make_id_number(region, birth, seq),
            gender="male" if male else "female", birth_date=birth,
            phone=f"1{rng.choice('3589')}{rng.randint(0, 999999999):09d}",
            address=f"江苏省{region_name}{rng.choice(STREETS)}{rng.randint(1, 300)}号", scenario=scenario))
    return patients


def encounter_start(now: datetime, index: int) -> datetime:
    """Open encounters started a few hours to a few days before the store was created."""
    hours = 3 + (index * 7) % 60
    return (now - timedelta(hours=hours)).astimezone(UTC).replace(microsecond=0)


# (LOINC code, 中文名称, UCUM unit, low, high, decimals) of the vital signs every inpatient has.
VITAL_SIGNS = [
    ("8310-5", "体温", "Cel", 36.2, 38.6, 1), ("8867-4", "心率", "/min", 62, 108, 0),
    ("9279-1", "呼吸频率", "/min", 14, 24, 0), ("8480-6", "收缩压", "mm[Hg]", 105, 168, 0),
    ("8462-4", "舒张压", "mm[Hg]", 62, 98, 0), ("59408-5", "血氧饱和度", "%", 90, 99, 0),
]


def vital_signs(code: str, index: int, measurement: int) -> list[tuple[str, str, str, float]]:
    """Patient `index`'s vital signs at measurement 1, 2, ...: (code, name, unit, value), the same every run."""
    rng = random.Random(f"vitals:{code}:{index}:{measurement}")
    rows = []
    for loinc, name, unit, low, high, decimals in VITAL_SIGNS:
        value = round(rng.uniform(low, high), decimals)
        rows.append((loinc, name, unit, value if decimals else int(value)))
    return rows
