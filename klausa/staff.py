"""Staff accounts: named reviewers and admins, their sign-in, and a record of what they did.

Accounts live in the deployment's database (``klausa.database``) with argon2id hashes; a password
is never stored, logged or kept after the check. The lockout after repeated failures is kept
in the database too, so it holds across server processes and restarts. ``KLAUSA_ADMIN_PASSWORD``
still signs in a bootstrap admin (``KLAUSA_ADMIN_NAME``, "admin") while no account of that
name exists."""

from __future__ import annotations

import hmac
import logging
import re
import time
from typing import Literal

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import BaseModel

from klausa.database import Database
from klausa.feedback import now
from klausa.schema import ACTIVITY, SIGN_IN_ATTEMPTS, STAFF
from klausa.settings import Settings

log = logging.getLogger(__name__)

Role = Literal["reviewer", "admin"]
ROLES: tuple[Role, ...] = ("reviewer", "admin")
#: What each role may do: reviewers the support desk; admins that and the library.
PERMISSIONS: dict[Role, frozenset[str]] = {
    "reviewer": frozenset({"review"}),
    "admin": frozenset({"review", "library", "accounts"}),
}
MAX_FAILURES = 5
LOCKOUT_SECONDS = 300
MIN_PASSWORD = 10
MAX_PASSWORD = 1024
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{1,63}")

#: What a ``StaffMember`` is read from (never the hash).
MEMBER_COLUMNS = (STAFF.c.name, STAFF.c.role, STAFF.c.created_at, STAFF.c.last_sign_in)

HASHER = PasswordHasher()  # argon2id, the library's current recommended cost
#: Checked against when the name is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = HASHER.hash("klausa: no such account")


class AccountError(ValueError):
    """A name, role or password that cannot be used; the message says why."""


class SignInError(Exception):
    def __init__(self, locked_for: int = 0) -> None:
        super().__init__("locked" if locked_for else "wrong name or password")
        #: Seconds until the account may try again (0: the name or password was wrong).
        self.locked_for = locked_for


class StaffMember(BaseModel):
    name: str
    role: Role
    created_at: str | None = None
    last_sign_in: str | None = None
    bootstrap: bool = False

    def may(self, permission: str) -> bool:
        return permission in PERMISSIONS[self.role]


class Activity(BaseModel):
    at: str
    actor: str
    action: str
    detail: str


def check_name(name: str) -> str:
    name = name.strip().lower()
    if not NAME_PATTERN.fullmatch(name):
        raise AccountError("A staff name is 2–64 characters: lower-case letters, digits, "
                           "'.', '_' or '-', starting with a letter or digit.")
    return name


def check_role(role: str) -> Role:
    if role not in ROLES:
        raise AccountError(f"The role is one of: {', '.join(ROLES)}.")
    return role  # type: ignore[return-value]


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"A password needs at least {MIN_PASSWORD} characters.")
    if len(password) > MAX_PASSWORD:
        raise AccountError(f"A password has at most {MAX_PASSWORD} characters.")
    return password


class StaffDirectory:
    """Accounts, sign-in and the activity record, in the deployment's ``Database``."""

    def __init__(self, database: Database, *, bootstrap_password: str | None = None,
                 bootstrap_name: str = "admin", max_failures: int = MAX_FAILURES,
                 lockout: float = LOCKOUT_SECONDS) -> None:
        self.engine = database.engine
        self._bootstrap_password = bootstrap_password or None
        self.bootstrap_name = bootstrap_name
        self.max_failures = max_failures
        self.lockout = lockout

    @classmethod
    def from_settings(cls, settings: Settings, database: Database | None = None
                      ) -> StaffDirectory:
        password = settings.admin_password.get_secret_value() if settings.admin_password else None
        return cls(database or Database.from_settings(settings), bootstrap_password=password,
                   bootstrap_name=settings.admin_name)

    # --- accounts --------------------------------------------------------------------------
    def add(self, name: str, password: str, role: Role, *, by: str | None = None) -> StaffMember:
        name, role = check_name(name), check_role(role)
        digest = HASHER.hash(check_password(password))
        try:
            with self.engine.begin() as db:
                db.execute(STAFF.insert().values(name=name, role=role, password_hash=digest,
                                                 created_at=now(), created_by=by))
        except sa.exc.IntegrityError:
            raise AccountError(f"There is already an account named {name!r}.") from None
        self.record(by or "cli", "account_added", f"{name} ({role})")
        return self.get(name)  # type: ignore[return-value]

    def set_password(self, name: str, password: str, *, by: str | None = None) -> None:
        digest = HASHER.hash(check_password(password))
        self._update(name, password_hash=digest)
        self._clear_failures(name)
        self.record(by or "cli", "password_changed", name)

    def set_role(self, name: str, role: Role, *, by: str | None = None) -> None:
        self._update(name, role=check_role(role))
        self.record(by or "cli", "role_changed", f"{name} → {role}")

    def remove(self, name: str, *, by: str | None = None) -> None:
        with self.engine.begin() as db:
            removed = db.execute(STAFF.delete().where(STAFF.c.name == name)).rowcount
        if not removed:
            raise AccountError(f"There is no account named {name!r}.")
        self.record(by or "cli", "account_removed", name)

    def _update(self, name: str, **values: object) -> None:
        with self.engine.begin() as db:
            updated = db.execute(STAFF.update().where(STAFF.c.name == name).values(**values))
        if not updated.rowcount:
            raise AccountError(f"There is no account named {name!r}.")

    def get(self, name: str) -> StaffMember | None:
        """The account as it is now (a removed account or changed role counts at once)."""
        with self.engine.connect() as db:
            row = db.execute(sa.select(*MEMBER_COLUMNS)
                             .where(STAFF.c.name == name)).mappings().first()
        if row is not None:
            return StaffMember(**row)
        if name == self.bootstrap_name and self._bootstrap_password:
            return StaffMember(name=name, role="admin", bootstrap=True)
        return None

    def members(self) -> list[StaffMember]:
        with self.engine.connect() as db:
            rows = db.execute(sa.select(*MEMBER_COLUMNS).order_by(STAFF.c.name))
            return [StaffMember(**row) for row in rows.mappings()]

    @property
    def enabled(self) -> bool:
        """Whether anyone can sign in at all (a bootstrap password or an account)."""
        if self._bootstrap_password:
            return True
        with self.engine.connect() as db:
            return bool(db.execute(sa.select(sa.func.count()).select_from(STAFF)).scalar())

    # --- signing in ------------------------------------------------------------------------
    def locked_for(self, name: str) -> int:
        with self.engine.connect() as db:
            until = db.execute(sa.select(SIGN_IN_ATTEMPTS.c.locked_until)
                               .where(SIGN_IN_ATTEMPTS.c.name == name.strip().lower())).scalar()
        return max(0, int((until or 0) - time.time() + 0.999))

    def sign_in(self, name: str, password: str) -> StaffMember:
        """The account, or ``SignInError`` (wrong name or password, or locked out)."""
        name = name.strip().lower()[:64]
        locked = self.locked_for(name)
        if locked:
            raise SignInError(locked)
        with self.engine.connect() as db:
            stored = db.execute(sa.select(STAFF.c.password_hash)
                                .where(STAFF.c.name == name)).scalar()
        if stored is not None:
            ok = self._verify(stored, password)
        elif name == self.bootstrap_name and self._bootstrap_password:
            ok = hmac.compare_digest(password.encode("utf-8"),
                                     self._bootstrap_password.encode("utf-8"))
        else:
            self._verify(_DUMMY_HASH, password)
            ok = False
        if not ok:
            locked = self._count_failure(name)
            log.info("failed staff sign-in for %r%s", name, " (now locked)" if locked else "")
            raise SignInError(locked)
        self._clear_failures(name)
        if stored is not None:
            rehashed = ({"password_hash": HASHER.hash(password)}
                        if HASHER.check_needs_rehash(stored) else {})
            self._update(name, last_sign_in=now(), **rehashed)
        self.record(name, "signed_in", "")
        return self.get(name)  # type: ignore[return-value]

    @staticmethod
    def _verify(stored: str, password: str) -> bool:
        try:
            return HASHER.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False

    def _count_failure(self, name: str) -> int:
        """Count a failure; returns the lockout's seconds when this one started it."""
        try:
            return self._count_failure_once(name)
        except sa.exc.IntegrityError:  # another process counted the first failure meanwhile
            return self._count_failure_once(name)

    def _count_failure_once(self, name: str) -> int:
        moment = time.time()
        with self.engine.begin() as db:
            row = db.execute(sa.select(SIGN_IN_ATTEMPTS).where(
                SIGN_IN_ATTEMPTS.c.name == name)).mappings().first()
            if row is None or moment - row["first_failure"] > self.lockout:
                failures, first = 1, moment
            else:
                failures, first = row["failures"] + 1, row["first_failure"]
            locked_until = moment + self.lockout if failures >= self.max_failures else 0.0
            values = {"failures": 0 if locked_until else failures, "first_failure": first,
                      "locked_until": locked_until}
            if row is None:
                db.execute(SIGN_IN_ATTEMPTS.insert().values(name=name, **values))
            else:
                db.execute(SIGN_IN_ATTEMPTS.update()
                           .where(SIGN_IN_ATTEMPTS.c.name == name).values(**values))
        return int(self.lockout) if locked_until else 0

    def _clear_failures(self, name: str) -> None:
        with self.engine.begin() as db:
            db.execute(SIGN_IN_ATTEMPTS.delete().where(SIGN_IN_ATTEMPTS.c.name == name))

    # --- who did what ----------------------------------------------------------------------
    def record(self, actor: str, action: str, detail: str = "") -> None:
        with self.engine.begin() as db:
            db.execute(ACTIVITY.insert().values(at=now(), actor=actor, action=action,
                                                detail=detail))

    def activity(self, *, limit: int = 200, action: str | None = None) -> list[Activity]:
        query = sa.select(ACTIVITY.c.at, ACTIVITY.c.actor, ACTIVITY.c.action, ACTIVITY.c.detail)
        if action:
            query = query.where(ACTIVITY.c.action == action)
        query = query.order_by(ACTIVITY.c.at.desc(), ACTIVITY.c.id.desc()).limit(limit)
        with self.engine.connect() as db:
            return [Activity(**row) for row in db.execute(query).mappings()]
