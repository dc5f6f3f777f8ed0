"""Staff accounts: log-in checks beyond the password.

A log-in passes, in order: the lock-out (too many recent failures), the password (argon2, in
:mod:`vaka.central.directory.directory`), the networks allowed for the staff member's role, and
the second factor (:mod:`vaka.central.access.second_factor`: a TOTP code or a one-time recovery
code). An account without TOTP (when it is required) or with a password older than the maximum
age logs in only into a restricted session that may set up the code or change the password.

Every log-in, failure (with its reason), lock-out, TOTP enrolment and password change is in the
audit trail. State lives in the database, so any central instance can take the next request.
"""

import datetime as dt
import ipaddress
import logging
import time
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import delete, func, select
from sqlalchemy.engine import Engine

from vaka.central.access.second_factor import AccessRefused, SecondFactor
from vaka.central.audit.trail import AuditLog
from vaka.central.directory.directory import Directory, StaffMember
from vaka.central.settings.config import StaffAccessSection
from vaka.central.storage.engine import upsert
from vaka.central.storage.tables import lockouts, login_failures, staff_auth

log = logging.getLogger(__name__)

PASSWORD_MIN_LENGTH = 12


@dataclass(frozen=True)
class AccountState:
    """What a staff member's session may do right now."""

    must_enrol_totp: bool
    must_change_password: bool
    totp_enrolled: bool
    password_changed_at: float | None

    @property
    def restriction(self) -> str | None:
        """``"enrol_totp"``, ``"change_password"`` or ``None`` (a full session)."""
        if self.must_enrol_totp:
            return "enrol_totp"
        if self.must_change_password:
            return "change_password"
        return None


def role_label(role: str) -> str:
    """``night_staff`` -> ``night staff``."""
    return role.replace("_", " ")


def address_allowed(address: str, networks: tuple[object, ...]) -> bool:
    """Whether ``address`` (IPv4, IPv6 or IPv4-mapped IPv6) is in one of ``networks``."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in networks)  # type: ignore[operator]


class Accounts(SecondFactor):
    """Log-in checks, lock-out and passwords, with the second factor of
    :class:`~vaka.central.access.second_factor.SecondFactor`. Blocking: call from a worker
    thread."""

    def __init__(
        self,
        engine: Engine,
        directory: Directory,
        audit: AuditLog,
        policy: StaffAccessSection,
        timezone: str = "Europe/Stockholm",
    ) -> None:
        self.engine = engine
        self.directory = directory
        self.audit = audit
        self.policy = policy
        self.timezone = ZoneInfo(timezone)

    # ------------------------------------------------------------ log-in

    def log_in(
        self,
        staff_id: str,
        password: str,
        address: str,
        totp: str | None = None,
        recovery_code: str | None = None,
    ) -> tuple[StaffMember, AccountState]:
        """Check everything; the member and what their session may do, or :class:`AccessRefused`
        (audited)."""
        now = time.time()
        until = self._locked_until(staff_id, now)
        if until is not None:
            self._failed(staff_id, address, "account locked", count=False)
            raise AccessRefused(self._locked_message(until), 429)
        member = self.directory.check_password(staff_id, password)
        if member is None:
            self._failed(staff_id, address, "wrong staff id or password")
            raise AccessRefused("wrong staff id or password")
        if not address_allowed(address, self.policy.networks_for(member.role)):
            # counted like a wrong password: the answer is the same, so is the price
            self._failed(staff_id, address, "address not allowed for the role", role=member.role)
            raise AccessRefused(self._network_message(member, address), 403)
        state = self.state(staff_id, now)
        if state.totp_enrolled:
            self._second_factor(member, address, totp, recovery_code, now)
        with self.engine.begin() as conn:
            conn.execute(delete(login_failures).where(login_failures.c.staff_id == staff_id))
        self.audit.append(
            "login",
            actor=staff_id,
            address=address,
            second_factor=_factor(state, totp, recovery_code),
            restriction=state.restriction,
        )
        return member, state

    def _second_factor(
        self,
        member: StaffMember,
        address: str,
        totp: str | None,
        recovery_code: str | None,
        now: float,
    ) -> None:
        staff_id = member.staff_id
        if totp:
            result = self.verify_totp(staff_id, totp, now)
            if result == "ok":
                return
            if result == "reused":
                self._failed(staff_id, address, "one-time code already used", count=False)
                raise AccessRefused(
                    "wrong or missing one-time code: this code was already used, "
                    "wait for the next one",
                    counts=False,
                )
        elif recovery_code:
            if self.use_recovery_code(staff_id, recovery_code):
                self.audit.append("recovery_code_used", actor=staff_id, address=address)
                return
            self._failed(staff_id, address, "wrong or used recovery code")
            raise AccessRefused("wrong or missing one-time code (that recovery code is not valid)")
        reason = "wrong one-time code" if totp else "missing one-time code"
        self._failed(staff_id, address, reason)
        raise AccessRefused("wrong or missing one-time code")

    def check_address(self, member: StaffMember, address: str, during: str = "request") -> None:
        """:class:`AccessRefused` (403, audited) unless ``address`` is allowed for the role."""
        if address_allowed(address, self.policy.networks_for(member.role)):
            return
        self.audit.append(
            "login_failed" if during == "log-in" else "access_refused",
            actor=member.staff_id,
            address=address,
            reason="address not allowed for the role",
            role=member.role,
        )
        raise AccessRefused(self._network_message(member, address), 403)

    @staticmethod
    def _network_message(member: StaffMember, address: str) -> str:
        return (
            f"your address {address} is not in the networks allowed for {role_label(member.role)}"
        )

    def state(self, staff_id: str, now: float | None = None) -> AccountState:
        """Whether the account must set up TOTP or change its password first."""
        now = time.time() if now is None else now
        with self.engine.connect() as conn:
            row = (
                conn.execute(select(staff_auth).where(staff_auth.c.staff_id == staff_id))
                .mappings()
                .first()
            )
        enrolled = row is not None and row["totp_secret"] is not None
        changed = None if row is None else row["password_changed_at"]
        max_age = self.policy.password_max_age_days * 86400
        return AccountState(
            must_enrol_totp=self.policy.require_totp and not enrolled,
            must_change_password=changed is None or now - changed > max_age,
            totp_enrolled=enrolled,
            password_changed_at=changed,
        )

    # ------------------------------------------------------------ lock-out

    def _locked_until(self, staff_id: str, now: float) -> float | None:
        with self.engine.connect() as conn:
            until = conn.execute(
                select(lockouts.c.until).where(lockouts.c.staff_id == staff_id)
            ).scalar()
        return until if until is not None and until > now else None

    def _locked_message(self, until: float) -> str:
        local = dt.datetime.fromtimestamp(until, self.timezone)
        return (
            f"account locked until {local:%H:%M} after {self.policy.lockout_failures} "
            "failed log-ins"
        )

    def _failed(
        self,
        staff_id: str,
        address: str,
        reason: str,
        count: bool = True,
        role: str | None = None,
    ) -> None:
        """Audit a failure with its true reason; counted ones may lock the account
        (:class:`AccessRefused`)."""
        if role is None:
            self.audit.append("login_failed", actor=staff_id, address=address, reason=reason)
        else:
            self.audit.append(
                "login_failed", actor=staff_id, address=address, reason=reason, role=role
            )
        if not count:
            return
        now = time.time()
        window_start = now - self.policy.lockout_window_s
        with self.engine.begin() as conn:
            conn.execute(
                delete(login_failures).where(
                    login_failures.c.staff_id == staff_id, login_failures.c.ts < window_start
                )
            )
            conn.execute(login_failures.insert().values(staff_id=staff_id, ts=now))
            failures = conn.execute(
                select(func.count()).where(login_failures.c.staff_id == staff_id)
            ).scalar_one()
            if failures < self.policy.lockout_failures:
                return
            until = now + self.policy.lockout_s
            values = {"until": until}
            ins = upsert(self.engine, lockouts).values(staff_id=staff_id, **values)
            conn.execute(ins.on_conflict_do_update(index_elements=["staff_id"], set_=values))
            conn.execute(delete(login_failures).where(login_failures.c.staff_id == staff_id))
        self.audit.append(
            "login_locked", actor=staff_id, address=address, failures=failures, until=until
        )
        log.warning("staff account %s locked after %d failed log-ins", staff_id, failures)
        raise AccessRefused(self._locked_message(until), 429)

    def unlock(self, staff_id: str, actor: str) -> None:
        """Lift a lock-out (an administrator's action, audited)."""
        with self.engine.begin() as conn:
            conn.execute(delete(lockouts).where(lockouts.c.staff_id == staff_id))
            conn.execute(delete(login_failures).where(login_failures.c.staff_id == staff_id))
        self.audit.append("account_unlocked", actor=actor, staff=staff_id)

    # ------------------------------------------------------------ passwords

    def change_password(self, member: StaffMember, old: str, new: str, address: str) -> None:
        """Check the old password and the policy, then store the new one (audited)."""
        until = self._locked_until(member.staff_id, time.time())
        if until is not None:
            raise AccessRefused(self._locked_message(until), 429)
        if self.directory.check_password(member.staff_id, old) is None:
            self._failed(member.staff_id, address, "wrong old password at password change")
            raise AccessRefused("the old password is wrong", 403)
        problem = password_problem(old, new)
        if problem:
            raise AccessRefused(problem, 400)
        self.directory.set_password(member.staff_id, new)
        self.audit.append("password_changed", actor=member.staff_id, address=address)


def _factor(state: AccountState, totp: str | None, recovery_code: str | None) -> str:
    if not state.totp_enrolled:
        return "none"
    return "totp" if totp else "recovery_code"


def password_problem(old: str, new: str) -> str | None:
    """Why ``new`` may not replace ``old``, or ``None``."""
    if len(new) < PASSWORD_MIN_LENGTH:
        return f"the new password must be at least {PASSWORD_MIN_LENGTH} characters long"
    if len(new) > 200:
        return "the new password must be at most 200 characters long"
    if new == old:
        return "the new password must differ from the old one"
    return None
