from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import requests
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from meters.load_profile import LoadProfile, floor_slot
from meters.models import Meter

BATCH = 1000  # the ingest API's limit per request
ATTEMPTS = 3  # per request within a round; what still fails waits for the next round
MAX_WAIT = 60  # seconds; the rate limit window is a minute
TIMEOUT = (5, 30)  # connect, read (seconds)
_DEMO_SERIAL = re.compile(r"^DEMO-(\d+)$")


@dataclass
class SimulatedMeter:
    """One meter the simulator drives: its token, its load profile and the readings not yet delivered."""

    serial: str
    token: str
    profile: LoadProfile
    last_at: datetime | None  # the newest reading generated so far
    last_kwh: Decimal | None
    pending: list[tuple[datetime, Decimal]] = field(default_factory=list)
    started: bool = False

    def generate(self, now: datetime) -> int:
        """Queue the readings the meter took since its last one; a new meter starts its register now.

        The first round also reads the register now, between quarter hours: started in the quarter hour
        of its last reading (as right after seed_demo), the simulator would otherwise send nothing for up to
        15 minutes, and seem not to work.
        """
        if self.last_at is None:
            self.last_at, self.last_kwh = floor_slot(now), self.profile.start_register
            new = [(self.last_at, self.last_kwh)]
        else:
            new = self.profile.readings(self.last_at, self.last_kwh, now)
            if new:
                self.last_at, self.last_kwh = new[-1]
        if not self.started:
            self.started = True
            moment = now.replace(microsecond=0)  # the API's timestamps are to the second
            if moment > self.last_at:
                self.last_kwh = self.profile.register_at(self.last_at, self.last_kwh, moment)
                self.last_at = moment
                new.append((moment, self.last_kwh))
        self.pending.extend(new)
        return len(new)


@dataclass
class Attempt:
    """How posting one batch ended: ``ok`` (with the server's answer), ``later`` or ``unreachable``."""

    result: str
    answer: dict = field(default_factory=dict)
    reason: str = ""


@dataclass
class RoundReport:
    meters: int = 0
    sent: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    pending: int = 0
    problems: list[str] = field(default_factory=list)


def profile_index(meter: Meter) -> int:
    """Demo meters keep the load profile seed_demo gave them; other meters take their household's id."""
    match = _DEMO_SERIAL.match(meter.serial)
    return int(match.group(1)) if match else meter.household_id


class Command(BaseCommand):
    help = "Post readings over HTTP like real smart meters, every --interval seconds, until stopped."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="Base URL of EnergyPay.")
        parser.add_argument("--interval", type=float, default=900, help="Seconds between rounds (900).")
        parser.add_argument("--once", action="store_true", help="Post one round and exit.")
        parser.add_argument(
            "--serial", action="append", dest="serials", metavar="SERIAL", help="Only this meter (repeatable)."
        )
        parser.add_argument(
            "--token-file",
            type=Path,
            help="Where the simulator keeps its meters' tokens between runs (default: var/simulator-tokens.json).",
        )
        parser.add_argument(
            "--rotate-tokens", action="store_true", help="Issue every meter a new token even if a kept one works."
        )

    def handle(
        self,
        *args,
        url: str,
        interval: float,
        once: bool,
        serials: list[str] | None,
        token_file: Path | None,
        rotate_tokens: bool,
        **options,
    ) -> None:
        """Steps:
        1. pick the active meters (all, or the --serial ones); reuse each one's token kept from an earlier
           run while it still works, else issue a new one (saying so: the meter's old token stops working);
        2. each round, queue every meter's readings since its last one and post them in batches;
        3. keep what could not be delivered (rate limit, server down) for the next round.
        """
        if interval <= 0:
            raise CommandError("--interval must be a positive number of seconds.")
        self.connect(url)
        tokens = TokenFile(token_file or Path(settings.VAR_DIR) / "simulator-tokens.json")
        fleet = self.start(self.select_meters(serials), tokens, rotate=rotate_tokens)
        self.stdout.write(
            f"Posting readings of {_count(len(fleet), 'meter')} to {self.endpoint} now, then every {interval:g} s"
            + (" (once)." if once else "; Ctrl-C stops.")
        )
        number = 0
        try:
            while True:
                number += 1
                report = self.run_round(fleet, timezone.now())
                self.print_round(number, report)
                if once:
                    break
                self.pause(interval)
        except KeyboardInterrupt:
            self.stderr.write("Stopped.")
        undelivered = sum(len(meter.pending) for meter in fleet)
        if undelivered:
            raise CommandError(f"{_count(undelivered, 'reading')} could not be delivered.")

    def connect(self, url: str) -> None:
        self.endpoint = url.rstrip("/") + "/api/v1/readings"
        self.session = requests.Session()

    def select_meters(self, serials: list[str] | None) -> list[Meter]:
        meters = Meter.objects.filter(is_active=True).select_related("household").order_by("serial")
        if serials:
            meters = meters.filter(serial__in=serials)
            missing = sorted(set(serials) - {meter.serial for meter in meters})
            if missing:
                raise CommandError(f"No active meter with serial {', '.join(missing)}; nothing was changed.")
        meters = list(meters)
        if not meters:
            raise CommandError("There are no active meters to simulate; run manage.py seed_demo first.")
        return meters

    def start(self, meters: list[Meter], tokens: TokenFile, *, rotate: bool) -> list[SimulatedMeter]:
        """Each meter's token: the one kept from an earlier run while its hash still matches, or a new one.

        Only a token's hash is stored, so a new token is the only way to get one, and it ends the
        meter's previous token: never done silently.
        """
        kept = {} if rotate else tokens.load()
        fleet, issued = [], []
        for meter in meters:
            token = kept.get(meter.serial)
            if token is None or Meter.token_hash_of(token) != meter.token_hash:
                token = meter.issue_token()
                issued.append(meter.serial)
            fleet.append(
                SimulatedMeter(
                    serial=meter.serial,
                    token=token,
                    profile=LoadProfile(profile_index(meter), meter.household.timezone),
                    last_at=meter.last_reading_at,
                    last_kwh=meter.last_register_kwh,
                )
            )
        tokens.save({**kept, **{meter.serial: meter.token for meter in fleet}})
        if len(issued) < len(fleet):
            self.stderr.write(
                f"Reusing the tokens kept in {tokens.path} for {_count(len(fleet) - len(issued), 'meter')}."
            )
        if issued:
            names = ", ".join(issued[:5]) + (", ..." if len(issued) > 5 else "")
            self.stderr.write(
                f"Issued new tokens for {_count(len(issued), 'meter')} ({names}); their previous tokens no longer "
                f"work. Kept in {tokens.path} for the next run.",
                style_func=self.style.WARNING,
            )
        return fleet

    def run_round(self, fleet: list[SimulatedMeter], now: datetime) -> RoundReport:
        report = RoundReport(meters=len(fleet))
        for meter in fleet:
            meter.generate(now)
        for meter in fleet:
            if not self.deliver(meter, report):
                break  # the server is unreachable: the other meters would only wait for timeouts
        report.pending = sum(len(meter.pending) for meter in fleet)
        return report

    def deliver(self, meter: SimulatedMeter, report: RoundReport) -> bool:
        """Post the meter's backlog oldest first; False when the server cannot be reached."""
        while meter.pending:
            batch = meter.pending[:BATCH]
            attempt = self.post(meter, batch)
            if attempt.result != "ok":
                report.problems.append(f"{meter.serial}: {attempt.reason}")
                return attempt.result != "unreachable"
            del meter.pending[: len(batch)]
            report.sent += len(batch)
            report.accepted += attempt.answer.get("accepted", 0)
            report.duplicates += attempt.answer.get("duplicates", 0)
            for rejection in attempt.answer.get("rejected", []):
                report.rejected += 1
                at = batch[rejection["index"]][0]
                self.stderr.write(f"{meter.serial}: reading at {at:%Y-%m-%dT%H:%M:%SZ} rejected: {rejection['error']}")
        return True

    def post(self, meter: SimulatedMeter, batch: list[tuple[datetime, Decimal]]) -> Attempt:
        """POST one batch, waiting and retrying on 429, 5xx and connection errors."""
        body = {"readings": [{"timestamp": f"{at:%Y-%m-%dT%H:%M:%SZ}", "energy_kwh": str(kwh)} for at, kwh in batch]}
        headers = {"Authorization": f"Bearer {meter.token}"}
        attempt = Attempt("later")
        for number in range(1, ATTEMPTS + 1):
            wait = 2 ** (number - 1)
            try:
                response = self.session.post(self.endpoint, json=body, headers=headers, timeout=TIMEOUT)
            except requests.RequestException as error:
                attempt = Attempt("unreachable", reason=f"cannot reach {self.endpoint} ({type(error).__name__})")
            else:
                if response.status_code == 200:
                    answer = _json_of(response)
                    if "accepted" in answer:
                        return Attempt("ok", answer=answer)
                    # Something answered that is not EnergyPay (a captive portal, a proxy page).
                    return Attempt("later", reason="HTTP 200 without an ingest answer; is --url right?")
                attempt = Attempt("later", reason=f"HTTP {response.status_code}: {_error_of(response)}")
                if response.status_code == 429 or response.status_code >= 500:
                    wait = _retry_after(response, default=wait)
                else:
                    # A refusal (bad token, wrong URL) will not change by retrying now; the readings
                    # stay queued, and the next round tries again after someone fixes it.
                    return attempt
            if number < ATTEMPTS:
                note = f"{meter.serial}: {attempt.reason}; retrying in {wait:g} s"
                self.stderr.write(note, style_func=self.style.WARNING)
                self.pause(wait)
        return attempt

    def pause(self, seconds: float) -> None:
        time.sleep(seconds)

    def print_round(self, number: int, report: RoundReport) -> None:
        line = (
            f"{timezone.now():%Y-%m-%d %H:%M:%S}Z round {number}: {_count(report.meters, 'meter')}, "
            f"{_count(report.sent, 'reading')} sent ({report.accepted:,} accepted, {report.duplicates:,} duplicates, "
            f"{report.rejected:,} rejected), {report.pending:,} waiting"
        )
        if report.problems:
            line += f"; retrying later: {'; '.join(report.problems)}"
            self.stdout.write(self.style.WARNING(line))
        else:
            self.stdout.write(line)


class TokenFile:
    """The simulator's meter tokens between runs: a JSON object of serial -> token, readable by its owner only."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, str]:
        try:
            kept = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}  # none yet, or unreadable: new tokens, said out loud
        if not isinstance(kept, dict):
            return {}
        return {serial: token for serial, token in kept.items() if isinstance(token, str)}

    def save(self, tokens: dict[str, str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".new")
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            json.dump(tokens, file, indent=1, sort_keys=True)
        os.chmod(partial, 0o600)  # also when the file was left by an earlier run with other modes
        partial.replace(self.path)


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}" + ("" if number == 1 else "s")


def _retry_after(response: requests.Response, default: float) -> float:
    try:
        return min(max(float(response.headers.get("Retry-After", default)), 0), MAX_WAIT)
    except ValueError:  # an HTTP date: not worth parsing for a simulator
        return default


def _json_of(response: requests.Response) -> dict:
    try:
        answer = response.json()
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


def _error_of(response: requests.Response) -> str:
    error = _json_of(response).get("error")
    if isinstance(error, dict):  # {"error": {"code", "message"}} (lib/jsonapi.py)
        error = error.get("message")
    return str(error or response.reason or "no details")[:200]
