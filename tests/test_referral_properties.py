"""Property-based test of the referral domain (issue 4, first "Done when" point): random sequences of actions
by random callers, against a model of what the state machine's table, the policies and the reserved beds say
must happen. Checked after every step:

- no transition outside the table: every observed (from, action, caller) → to matches a row of TABLE for the
  caller's sides and effective roles, and every refused action leaves status and version untouched;
- every outcome is the one the model predicts (refusal codes included), so the table is honoured both ways;
- every timeline's hash chain verifies;
- no CapacityDay is booked past its capacity, and each one's `booked` equals the referrals holding it;
- every referral is visible to exactly its source's and target's staff and its own patient (`can_view` for
  every demo principal; at the end of each run also through the worklist boxes).

Why a sync test with its own event loop: hypothesis calls stateful rules synchronously, while the domain is
async on Tortoise connections that belong to the event loop that opened them. Inside an async test that loop
is already running, so a rule could not wait for a coroutine (`run_until_complete` refuses a running loop, and
`run_coroutine_threadsafe` would deadlock on the loop the test itself blocks). So this test is a plain function:
it makes a fresh loop, opens Tortoise on the `settings` fixture's database (the SQLite copy, or this run's
PostgreSQL database) in that loop, and every rule drives one coroutine to completion with
`loop.run_until_complete`; the loop is idle between rules, which is what that call needs, and every database
call happens on the loop that owns the connections. The database lives across hypothesis runs; each run gets
its own patients and its own reserved-bed days, so runs cannot see each other's referrals through them.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta

from hypothesis import HealthCheck, Phase
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

import db
from accounts.principal import Principal
from directory.seed import seed_demo
from errors import DomainError
from models import CapacityDay, Department, Institution, InstitutionPolicy, Patient, Referral
from referrals import capacity, commands
from referrals.access import can_view
from referrals.clinical import REJECTION_REASONS, Clinical, ReturnSummary
from referrals.policy import needs_source_approval, update_policy
from referrals.queries import box_query
from referrals.state_machine import (
    OPEN,
    TABLE,
    Action,
    Side,
    Status,
    allowed_actions,
    direction_of,
    next_state,
)
from referrals.timeline import verify_referral
from security.crypto import PersonalDataCipher
from tests.referral_support import (
    CLINICAL,
    INSTITUTION_CODES,
    RETURN_SUMMARY,
    account_principal,
    demo_principals,
    make_patient,
    patient_account,
)
from timeutil import china_today

ACTIONS = [Action.EDIT, Action.SUBMIT, Action.APPROVE, Action.REJECT, Action.REDIRECT, Action.CANCEL,
           Action.CHECK_IN, Action.COMPLETE, Action.RESUBMIT, Action.RESCHEDULE]
FORWARD = {Action.SUBMIT, Action.APPROVE, Action.CHECK_IN, Action.COMPLETE}
REASONS = [*REJECTION_REASONS, "bogus"]
INCOMPLETE = {"chief_complaint": "胸闷"}  # no diagnosis, no reason: cannot be submitted
RUNS = itertools.count()
OBSERVED: Counter = Counter()  # table rows seen firing, over the whole test


@dataclass
class Expected:
    """What the model knows about one referral, kept from what it saw succeed."""

    id: int
    public_id: object
    referrer: int
    source: int
    target: int
    patient: int
    status: Status
    version: int
    needs_source: bool
    complete: bool
    booking: tuple[int, date] | None = None
    resubmitted: bool = False
    submitted: bool = False  # it left the source: a draft (or a draft cancelled unsubmitted) is the source's alone
    redirected_from: set[int] = field(default_factory=set)  # institutions that redirected it: they keep reading it


@dataclass
class World:
    """What every run shares: the demo consortium, its principals and departments."""

    loop: asyncio.AbstractEventLoop
    cipher: PersonalDataCipher
    staff: dict[tuple[str, str], Principal]
    institutions: dict[str, Institution]
    departments: dict[int, list[Department]]  # institution id → its departments

    def run(self, coroutine):
        return self.loop.run_until_complete(coroutine)


def _world_from(settings) -> World:
    loop = asyncio.new_event_loop()

    async def setup() -> World:
        await db.open_db(settings)
        await seed_demo()
        institutions = {code: await Institution.get(code=code) for code in INSTITUTION_CODES}
        departments = {i.id: list(await Department.filter(institution_id=i.id).order_by("id"))
                       for i in institutions.values()}
        return World(loop, PersonalDataCipher(settings.data_key, settings.lookup_key), await demo_principals(),
                     institutions, departments)

    return loop.run_until_complete(setup())


class ReferralMachine(RuleBasedStateMachine):
    world: World  # set on the class by the test

    referrals = Bundle("referrals")

    def __init__(self) -> None:
        super().__init__()
        self.expected: dict[int, Expected] = {}
        self.touched: set[int] = set()
        self.policies: dict[int, InstitutionPolicy] = {}
        self.beds: dict[tuple[int, date], list[int]] = {}  # (department id, day) → [capacity, booked]
        self.patients: list[int] = []
        self.patient_principals: list[Principal] = []
        run = next(RUNS)
        first = china_today() + timedelta(days=1 + 2 * run)
        self.days = [first, first + timedelta(days=1), china_today() - timedelta(days=1)]

    # ------------------------------------------------------------------------------------------ set-up

    @initialize(target=referrals, first=st.lists(st.tuples(st.sampled_from(INSTITUTION_CODES),
                                                           st.sampled_from(INSTITUTION_CODES)),
                                                 min_size=2, max_size=4))
    def setup_run(self, first):
        """This run's patients and reserved beds, and a few submitted referrals to start from."""
        async def setup() -> None:
            for index in range(3):
                patient = await make_patient(self.world.cipher, f"患者{index}")
                account = await patient_account(patient, f"o_prop_{patient.id}")
                self.patients.append(patient.id)
                self.patient_principals.append(await account_principal(account.openid))
            for institution in self.world.institutions.values():
                # Every run starts from the default policies, so that hypothesis' replay of a failing run
                # draws the same steps (the database outlives runs; a run must not depend on earlier ones).
                await InstitutionPolicy.filter(institution_id=institution.id).delete()
                self.policies[institution.id] = (await InstitutionPolicy.get_or_create(
                    institution_id=institution.id))[0]
                for department in self.world.departments[institution.id]:
                    for day, beds in zip(self.days[:2], (1, 2), strict=True):
                        await capacity.set_capacity(department.id, {day: beds})
                        self.beds[(department.id, day)] = [beds, 0]

        self.world.run(setup())
        created = [self.new_referral(source, "doctor", target, 0, index % 3, True, True, True)
                   for index, (source, target) in enumerate(first) if source != target]
        return multiple(*[ref_id for ref_id in created if ref_id is not None])

    @property
    def principals(self) -> list[Principal]:
        return [*self.world.staff.values(), *self.patient_principals]

    # ---------------------------------------------------------------------------------------- the model

    def sides(self, who: Principal, ref: Expected) -> set[Side]:
        if who.staff_id is None:
            return set()
        sides = {Side.REFERRER} if who.staff_id == ref.referrer else set()
        sides |= {Side.SOURCE} if who.institution_id == ref.source else set()
        sides |= {Side.TARGET} if who.institution_id == ref.target and ref.submitted else set()
        return sides

    def roles(self, who: Principal, sides: set[Side]) -> set[str]:
        """The policy decides who approves: its approver roles, and only those."""
        roles = set(who.roles) - {"approver"}
        approver_roles = set(self.policies[who.institution_id].approver_roles) if who.institution_id else set()
        if sides & {Side.SOURCE, Side.TARGET} and set(who.roles) & approver_roles:
            roles.add("approver")
        return roles

    def visible(self, who: Principal, ref: Expected) -> bool:
        """The source's staff; the target's staff and the patient once the referral was submitted."""
        return bool(self.sides(who, ref)) or (ref.submitted and ref.patient in who.patient_ids)

    def readable(self, who: Principal, ref: Expected) -> bool:
        """Who finds the referral by id: those it is visible to, and staff of an institution that redirected it
        (they read it and answer for that decision, with no action left to them)."""
        return self.visible(who, ref) or (who.staff_id is not None and who.institution_id in ref.redirected_from)

    def level(self, institution_id: int) -> str:
        return str(next(i.level for i in self.world.institutions.values() if i.id == institution_id))

    def needs_source(self, source: int, target: int) -> bool:
        return needs_source_approval(self.policies[source], direction_of(self.level(source), self.level(target)))

    def department(self, institution_id: int, index: int) -> Department:
        departments = self.world.departments[institution_id]
        return departments[index % len(departments)]

    def open_duplicate(self, patient: int, target: int) -> bool:
        return any(r.patient == patient and r.target == target and r.status in OPEN for r in self.expected.values())

    # ------------------------------------------------------------------------------------------- rules

    @rule(target=referrals, who=st.sampled_from(INSTITUTION_CODES), role=st.sampled_from(
        ["doctor", "doctor", "doctor", "approver", "patient"]), to=st.sampled_from(INSTITUTION_CODES),
        dept=st.integers(0, 6), patient=st.integers(0, 2), submit=st.booleans(), complete=st.booleans(),
        confirm=st.booleans())
    def create(self, who, role, to, dept, patient, submit, complete, confirm):
        ref_id = self.new_referral(who, role, to, dept, patient, submit, complete, confirm)
        return multiple() if ref_id is None else ref_id

    def new_referral(self, who, role, to, dept, patient, submit, complete, confirm) -> int | None:
        """`who`'s `role` (or patient number `patient` themselves) refers that patient to `to`; the id, or None
        when refused as the model predicted."""
        principal = self.patient_principals[patient] if role == "patient" else self.world.staff[(who, role)]
        target = self.world.institutions[to]
        department = self.department(target.id, dept)
        patient_id = self.patients[patient]
        if principal.staff_id is None or "doctor" not in principal.roles:
            predicted = {"ROLE_REQUIRED"}
        elif target.id == principal.institution_id:
            predicted = {"SAME_INSTITUTION"}
        elif submit and not complete:
            predicted = {"INCOMPLETE_REFERRAL"}
        elif self.open_duplicate(patient_id, target.id) and not confirm:
            predicted = {"DUPLICATE_REFERRAL"}
        else:
            predicted = None
        before = self.world.run(Referral.all().count())

        async def call():
            return await commands.create_referral(principal, self.world.cipher, commands.NewReferral(
                patient_id=(await _patient(patient_id)).public_id, target_institution_id=target.public_id,
                target_department_id=department.public_id, urgency="routine",
                clinical=Clinical.model_validate(CLINICAL if complete else INCOMPLETE), submit=submit,
                confirm_duplicate=confirm))

        try:
            referral = self.world.run(call())
        except DomainError as exc:
            assert predicted and exc.code in predicted, (exc.code, predicted)
            assert self.world.run(Referral.all().count()) == before
            return None
        assert predicted is None, predicted
        ref = Expected(referral.id, referral.public_id, principal.staff_id, principal.institution_id, target.id,
                       patient_id, Status.DRAFT, 1, self.needs_source(principal.institution_id, target.id), complete)
        if submit:
            self.observe(ref, Action.SUBMIT, principal, referral, Status.DRAFT)
        self.track(ref, referral)
        return referral.id

    @rule(ref_id=referrals, insider=st.booleans(), who=st.integers(0, 200), action=st.sampled_from(ACTIONS),
          params=st.data())
    def act(self, ref_id, insider, who, action, params):
        """Any caller, half of the time one of the two institutions' staff or the patient, tries any action:
        the adversarial walk."""
        ref = self.expected[ref_id]
        callers = [p for p in self.principals if self.visible(p, ref)] if insider else self.principals
        self.attempt(ref, callers[who % len(callers)], action, params)

    @rule(ref_id=referrals, picks=st.lists(st.integers(0, 10_000), min_size=1, max_size=8), params=st.data())
    def advance(self, ref_id, picks, params):
        """Someone the table lets act does so, a few times in a row: the walk that reaches admission and
        completion (random callers alone would almost never get that deep)."""
        ref = self.expected[ref_id]
        for pick in picks:
            choices = self.choices(ref)
            if not choices:
                return
            who, action = choices[pick % len(choices)]
            self.attempt(ref, who, action, params)

    @rule(ref_id=referrals, pick=st.integers(0, 10_000), params=st.data())
    def step(self, ref_id, pick, params):
        """One permitted step (hypothesis draws rules evenly: this rule doubles the odds of moving forward)."""
        choices = self.choices(self.expected[ref_id])
        if choices:
            who, action = choices[pick % len(choices)]
            self.attempt(self.expected[ref_id], who, action, params)

    def choices(self, ref: Expected) -> list[tuple[Principal, Action]]:
        """Every (caller, action) the model's reading of the table permits now; the steps towards completion
        count four times, so that walks often get past the target's approval; a referral already resubmitted
        is left to `act` (the table allows resubmitting again, but walks that only do that go nowhere)."""
        return [(who, action) for who in self.principals
                for action in allowed_actions(ref.status, sides=self.sides(who, ref),
                                              roles=self.roles(who, self.sides(who, ref)),
                                              needs_source_approval=ref.needs_source)
                if not (action == Action.RESUBMIT and ref.resubmitted)
                for _ in range(4 if action in FORWARD else 1)]

    @rule(ref_id=referrals)
    def expire(self, ref_id):
        """The no-show timer fires, whatever the state."""
        ref = self.expected[ref_id]
        predicted = None if ref.status == Status.SCHEDULED else {"INVALID_STATE"}
        self.settle(ref, Action.EXPIRE, None, predicted, lambda: commands.expire(ref.id))

    @rule(policy=st.booleans(), code=st.sampled_from(INSTITUTION_CODES), flags=st.tuples(*[st.booleans()] * 3),
          dept=st.integers(0, 6), day=st.integers(0, 1), beds=st.integers(0, 3))
    def reconfigure(self, policy, code, flags, dept, day, beds):
        """An admin changes the institution's policy, or an approver republishes a day's reserved beds."""
        institution = self.world.institutions[code]
        if policy:
            down, up, experts = flags
            self.policies[institution.id] = self.world.run(update_policy(institution.id, {
                "source_approval_down": down, "source_approval_up": up,
                "approver_roles": ["approver", "expert"] if experts else ["approver"]}))
            return
        department = self.department(institution.id, dept)
        key = (department.id, self.days[day])
        booked = self.beds.get(key, [0, 0])[1]
        try:
            self.world.run(capacity.set_capacity(department.id, {self.days[day]: beds}))
        except DomainError as exc:
            assert exc.code == "CAPACITY_BELOW_BOOKED" and beds < booked
            return
        assert beds >= booked
        self.beds[key] = [beds, booked]

    # --------------------------------------------------------------------------------- one attempt

    def attempt(self, ref: Expected, who: Principal, action: Action, params) -> None:
        """Predict the outcome of `who` doing `action`, do it through the domain, compare."""
        sides = self.sides(who, ref)
        roles = self.roles(who, sides)
        permitted = action in allowed_actions(ref.status, sides=sides, roles=roles,
                                              needs_source_approval=ref.needs_source)
        predicted: set[str] | None = None
        call = None
        if action == Action.REJECT:
            reason = params.draw(st.sampled_from(REASONS))
            comment = params.draw(st.sampled_from(["", "说明"]))
            # The reason is validated before anything is looked up.
            if reason == "bogus":
                predicted = {"INVALID_REASON"}
            elif reason == "other" and not comment:
                predicted = {"REASON_TEXT_REQUIRED"}
            call = lambda: commands.reject(who, ref.public_id, expected_version=None,  # noqa: E731
                                           reason_code=reason, comment=comment)
        if predicted is None and action != Action.CHECK_IN and not self.readable(who, ref):
            predicted = {"REFERRAL_NOT_FOUND"}
        if predicted is None and not permitted:
            predicted = {"NOT_YOUR_STEP", "INVALID_STATE"}
        extra: dict = {}
        if action == Action.EDIT:
            complete = params.draw(st.booleans())
            retarget = params.draw(st.sampled_from([None, *INSTITUTION_CODES]))
            dept = params.draw(st.integers(0, 6))
            new_target = self.world.institutions[retarget] if retarget else None
            department = self.department(new_target.id, dept) if new_target else None
            if predicted is None and new_target and new_target.id == ref.source:
                predicted = {"SAME_INSTITUTION"}
            extra = {"complete": complete, "target": new_target.id if new_target else None}
            call = lambda: commands.edit_draft(  # noqa: E731
                who, self.world.cipher, ref.public_id, expected_version=None,
                clinical=Clinical.model_validate(CLINICAL if complete else INCOMPLETE), urgency=None,
                contact_phone=None, target_institution_id=new_target.public_id if new_target else None,
                target_department_id=department.public_id if department else None)
        elif action == Action.SUBMIT:
            if predicted is None and not ref.complete:
                predicted = {"INCOMPLETE_REFERRAL"}
            call = lambda: commands.submit(who, ref.public_id, expected_version=None)  # noqa: E731
        elif action == Action.APPROVE:
            day = self.days[params.draw(st.integers(0, 2))]
            dept = params.draw(st.sampled_from([None, 0, 1, 2]))
            with_admission = params.draw(st.integers(0, 9)) > 0
            department = self.department(ref.target, dept) if dept is not None else None
            admission = commands.Admission(day, department.public_id if department else None) \
                if with_admission else None
            if predicted is None and ref.status == Status.PENDING_TARGET:
                dept_id = department.id if department else self.world.run(_target_department(ref.id))
                beds = self.beds.get((dept_id, day), [0, 0])
                if admission is None:
                    predicted = {"ADMISSION_REQUIRED"}
                elif day < china_today():
                    predicted = {"ADMISSION_DATE_PAST"}
                elif beds[0] == 0:
                    predicted = {"NO_RESERVED_BEDS"}
                elif beds[1] >= beds[0]:
                    predicted = {"BEDS_FULL"}
                extra = {"booking": (dept_id, day)}
            call = lambda: commands.approve(who, ref.public_id, expected_version=None,  # noqa: E731
                                            admission=admission)
        elif action == Action.RESCHEDULE:
            day = self.days[params.draw(st.integers(0, len(self.days) - 1))]
            dept = params.draw(st.sampled_from([None, 0, 1, 2]))
            department = self.department(ref.target, dept) if dept is not None else None
            admission = commands.Admission(day, department.public_id if department else None)
            if predicted is None and ref.status == Status.SCHEDULED:
                dept_id = department.id if department else self.world.run(_target_department(ref.id))
                beds = list(self.beds.get((dept_id, day), [0, 0]))
                if ref.booking == (dept_id, day):
                    beds[1] -= 1  # the old bed is freed before the new one is booked
                if day < china_today():
                    predicted = {"ADMISSION_DATE_PAST"}
                elif beds[0] == 0:
                    predicted = {"NO_RESERVED_BEDS"}
                elif beds[1] >= beds[0]:
                    predicted = {"BEDS_FULL"}
                extra = {"booking": (dept_id, day)}
            call = lambda: commands.reschedule(who, ref.public_id, expected_version=None,  # noqa: E731
                                               admission=admission)
        elif action == Action.REDIRECT:
            to = self.world.institutions[params.draw(st.sampled_from(INSTITUTION_CODES))]
            department = self.department(to.id, params.draw(st.integers(0, 6)))
            if predicted is None and to.id in (ref.source, ref.target):
                predicted = {"INVALID_REDIRECT"}
            extra = {"target": to.id}
            call = lambda: commands.redirect(who, ref.public_id, expected_version=None,  # noqa: E731
                                             institution_id=to.public_id, department_id=department.public_id)
        elif action == Action.CANCEL:
            call = lambda: commands.cancel(who, ref.public_id, expected_version=None)  # noqa: E731
        elif action == Action.CHECK_IN:
            call = lambda: commands.check_in(who, ref.id)  # noqa: E731
        elif action == Action.COMPLETE:
            call = lambda: commands.complete(who, ref.public_id, expected_version=None,  # noqa: E731
                                             summary=ReturnSummary.model_validate(RETURN_SUMMARY))
        elif action == Action.RESUBMIT:
            submit_now = params.draw(st.booleans())
            if predicted is None and submit_now and not ref.complete:
                predicted = {"INCOMPLETE_REFERRAL"}
            extra = {"submit": submit_now}
            call = lambda: commands.resubmit(who, self.world.cipher, ref.public_id,  # noqa: E731
                                             submit_now=submit_now)
        self.settle(ref, action, who, predicted, call, extra)

    def settle(self, ref: Expected, action: Action, who: Principal | None, predicted: set[str] | None, call,
               extra: dict | None = None) -> None:
        extra = extra or {}
        self.touched.add(ref.id)
        try:
            result = self.world.run(call())
        except DomainError as exc:
            assert predicted is not None and exc.code in predicted, (action, ref.status, exc.code, predicted)
            current = self.world.run(Referral.get(id=ref.id))
            assert (current.status, current.version) == (ref.status, ref.version), "a refusal changed the referral"
            return
        assert predicted is None, (action, ref.status, "succeeded but the model predicted", predicted)
        referral = self.world.run(Referral.get(id=ref.id))
        from_status = ref.status
        self.observe(ref, action, who, referral, from_status)
        if action == Action.EDIT:
            ref.complete = extra["complete"]
            if extra["target"] is not None:
                ref.target = extra["target"]
                ref.needs_source = self.needs_source(ref.source, ref.target)
        elif action == Action.REDIRECT:
            ref.redirected_from.add(ref.target)
            ref.target = extra["target"]
        elif action == Action.APPROVE and from_status == Status.PENDING_TARGET:
            ref.booking = extra["booking"]
            self.beds[ref.booking][1] += 1
        elif action == Action.RESCHEDULE:
            if ref.booking:
                self.beds[ref.booking][1] -= 1
            ref.booking = extra["booking"]
            self.beds[ref.booking][1] += 1
        elif action in (Action.CANCEL, Action.EXPIRE) and ref.booking:
            self.beds[ref.booking][1] -= 1
            ref.booking = None
        elif action == Action.RESUBMIT:
            ref.resubmitted = True
            new = Expected(result.id, result.public_id, ref.referrer, ref.source, ref.target, ref.patient,
                           Status.DRAFT, 1,
                           self.needs_source(ref.source, ref.target), ref.complete)
            if extra["submit"]:
                self.observe(new, Action.SUBMIT, who, result, Status.DRAFT)
            self.track(new, result)
        self.track(ref, referral)

    def observe(self, ref: Expected, action: Action, who: Principal | None, referral: Referral,
                from_status: Status) -> None:
        """The observed (from, action, caller) → to must be a row of the table, and the one the model expects."""
        if who is None:
            sides, roles = {Side.SYSTEM}, {"system"}
        else:
            sides = self.sides(who, ref)
            roles = self.roles(who, sides)
        rows = [row for row in TABLE if row.state == from_status and row.action == action and row.side in sides
                and row.role in roles and row.needs_source_approval in (None, ref.needs_source)]
        assert rows, f"{from_status} --{action}--> {referral.status} by {sides}/{roles} is not in the table"
        OBSERVED[rows[0]] += 1
        assert referral.status == rows[0].to == next_state(from_status, action, sides=sides, roles=roles,
                                                           needs_source_approval=ref.needs_source)
        ref.status, ref.version = rows[0].to, ref.version + 1
        ref.submitted = ref.submitted or action == Action.SUBMIT

    def track(self, ref: Expected, referral: Referral) -> None:
        """Every transition bumped the version by one and left the status the table named."""
        assert (referral.status, referral.version) == (ref.status, ref.version), (referral.status, ref)
        self.expected[ref.id] = ref
        self.touched.add(ref.id)

    # ------------------------------------------------------------------------------------- invariants

    @invariant()
    def timelines_verify(self) -> None:
        for ref_id in self.touched:
            result = self.world.run(verify_referral(ref_id, self.expected[ref_id].version))
            assert result.valid, (ref_id, result)

    @invariant()
    def beds_never_overbooked(self) -> None:
        rows = self.world.run(_capacity_rows(list({key[0] for key in self.beds}), self.days[:2]))
        holders = Counter(self.world.run(_bookings([row.id for row in rows])))
        for row in rows:
            assert 0 <= row.booked <= row.capacity, (row.department_id, row.day, row.booked, row.capacity)
            assert row.booked == holders[row.id], (row.department_id, row.day, row.booked, holders[row.id])
            assert [row.capacity, row.booked] == self.beds[(row.department_id, row.day)]

    @invariant()
    def visible_to_exactly_the_two_sides_and_the_patient(self) -> None:
        for ref_id in self.touched:
            ref = self.expected[ref_id]
            referral = self.world.run(Referral.get(id=ref_id))
            assert (referral.source_institution_id, referral.target_institution_id, referral.patient_id) == (
                ref.source, ref.target, ref.patient)
            for who in self.principals:
                expected = who.institution_id == ref.source or (ref.submitted and (
                    who.institution_id == ref.target or ref.patient in who.patient_ids))
                assert can_view(who, referral) is expected, (who.staff_id, who.institution_id, ref)
        self.touched.clear()

    def teardown(self) -> None:
        """The whole run once more: every chain, and every worklist holds exactly the referrals it should."""
        for ref in self.expected.values():
            assert self.world.run(verify_referral(ref.id, ref.version)).valid
        listed = self.world.run(_listed(self.principals, set(self.expected)))
        for who, seen in zip(self.principals, listed, strict=True):
            should = {r.id for r in self.expected.values()
                      if (who.staff_id is not None and (who.institution_id == r.source
                                                        or (who.institution_id == r.target and r.submitted)))
                      or (r.patient in who.patient_ids and r.submitted)}
            assert seen == should, (who.staff_id, who.institution_id, who.patient_ids)


async def _patient(patient_id: int) -> Patient:
    return await Patient.get(id=patient_id)


async def _target_department(referral_id: int) -> int:
    return (await Referral.get(id=referral_id)).target_department_id  # type: ignore[attr-defined]


async def _capacity_rows(department_ids: list[int], days: list[date]) -> list[CapacityDay]:
    return list(await CapacityDay.filter(department_id__in=department_ids, day__in=days))


async def _bookings(row_ids: list[int]) -> list[int]:
    return list(await Referral.filter(booking_id__in=row_ids).values_list("booking_id", flat=True))


async def _listed(principals: list[Principal], among: set[int]) -> list[set[int]]:
    """For each principal, which of `among` its worklist boxes (outgoing + incoming, or mine) contain."""
    result = []
    for who in principals:
        boxes = ["outgoing", "incoming"] if who.staff_id is not None else (["mine"] if who.patient_ids else [])
        seen: set[int] = set()
        for box in boxes:
            query = await box_query(who, box)
            seen |= set(await query.filter(id__in=list(among)).values_list("id", flat=True))
        result.append(seen)
    return result


def test_random_actions_by_random_roles_keep_the_invariants(settings):
    OBSERVED.clear()
    world = _world_from(settings)
    try:
        ReferralMachine.world = world
        # No shrinking: every step is a database round trip, and shrinking a 50-step run replays it hundreds of
        # times (minutes); the failing step's assertion names the referral, the caller and the action instead.
        run_state_machine_as_test(ReferralMachine, settings=hypothesis_settings(
            max_examples=40, stateful_step_count=50, deadline=None, database=None,
            phases=[Phase.explicit, Phase.reuse, Phase.generate],
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
        # The walks went deep: most rows of the table fired at least once.
        print(f"table rows observed: {len(OBSERVED)}/{len(TABLE)}", sorted(
            (f"{row.state}-{row.action}", n) for row, n in OBSERVED.items()))
        assert len(OBSERVED) >= len(TABLE) // 2, OBSERVED
    finally:
        world.run(db.close_db())
        world.loop.run_until_complete(world.loop.shutdown_asyncgens())
        world.loop.close()
