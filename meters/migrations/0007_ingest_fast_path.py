"""The in-order single reading in one statement on PostgreSQL: ``meters_ingest_reading()`` (meters/fastpath.py).

It does what meters/ingest.py and meters/usage.py do for the common case, and nothing else: it
answers NULL, having written nothing, for every other case, which Python then judges in full. SQLite
gets no function (the fast path is off there). The function names no ``id``-only unique constraint
and no ctid: readings and usage lines are found by meter and time, so it works whether or not those
tables are partitioned by time.
"""

from django.db import migrations

FUNCTION = r"""
CREATE OR REPLACE FUNCTION meters_ingest_reading(
    p_token_hash text,
    p_timestamp timestamptz,
    p_kwh numeric,
    p_now timestamptz,
    p_billed_from timestamptz,
    p_latest timestamptz,
    p_rate_window bigint,
    p_rate_limit integer,
    OUT outcome text,
    OUT household bigint
) LANGUAGE plpgsql AS $function$
DECLARE
    v_meter record;
    v_count bigint;
    v_hour timestamptz;
    v_energy numeric;
    v_per_day numeric;
    v_lines bigint;
    v_open bigint;
    v_written bigint;
BEGIN
    -- The meter, locked (its row is where ingest serializes), and its household's tariff.
    SELECT m.id, m.household_id, m.max_power_kw, m.installed_at, m.last_reading_at, m.last_register_kwh,
           m.previous_register_kwh, m.rate_window, m.rate_count, h.tariff_id
      INTO v_meter
      FROM meters_meter m JOIN meters_household h ON h.id = m.household_id
     WHERE m.token_hash = p_token_hash AND m.is_active
       FOR UPDATE OF m;
    IF NOT FOUND THEN
        RETURN;  -- a bad token: Python answers 401
    END IF;
    -- meters/ratelimit.py: the request is counted unless it is over the budget (429, Python's).
    v_count := CASE WHEN v_meter.rate_window = p_rate_window THEN v_meter.rate_count ELSE 0 END;
    IF v_count >= p_rate_limit THEN
        RETURN;
    END IF;
    -- The billing window (future, before installation, too old) and the meter's first reading or
    -- a reading older than its latest: Python's.
    IF p_timestamp > p_latest OR p_timestamp < v_meter.installed_at OR p_timestamp < p_billed_from
       OR v_meter.last_reading_at IS NULL OR p_timestamp < v_meter.last_reading_at THEN
        RETURN;
    END IF;
    IF p_timestamp = v_meter.last_reading_at THEN
        IF p_kwh <> v_meter.last_register_kwh THEN
            RETURN;  -- a conflict
        END IF;
        -- The latest reading sent again (a meter that missed our answer): a duplicate.
        UPDATE meters_meter SET last_seen_at = p_now, rate_window = p_rate_window, rate_count = v_count + 1
         WHERE id = v_meter.id;
        outcome := 'duplicate';
        household := v_meter.household_id;
        RETURN;
    END IF;
    -- A register going down, or the reading after a dip (which decides glitch or reset): Python's.
    IF p_kwh < v_meter.last_register_kwh OR v_meter.last_register_kwh < v_meter.previous_register_kwh THEN
        RETURN;
    END IF;
    -- Only an interval inside one UTC hour: its energy is the register's rise, no interpolation.
    v_hour := date_trunc('hour', v_meter.last_reading_at, 'UTC');
    IF p_timestamp > v_hour + interval '1 hour' THEN
        RETURN;
    END IF;
    v_energy := p_kwh - v_meter.last_register_kwh;
    -- The interval's power against the meter's maximum, exactly: kWh * 3600 s * 10^6 us against
    -- kW * microseconds. Too much is a rejection with a sentence: Python's.
    IF v_energy * 3600000000 > v_meter.max_power_kw
            * (extract(epoch FROM p_timestamp) - extract(epoch FROM v_meter.last_reading_at)) * 1000000 THEN
        RETURN;
    END IF;
    -- The hour's standing charge: nothing to do when the tariff version has none or the line exists;
    -- else Python accrues it (its share of the local day).
    SELECT v.standing_charge_per_day INTO v_per_day
      FROM meters_tariffversion v
     WHERE v.tariff_id = v_meter.tariff_id AND v.valid_from <= v_hour
     ORDER BY v.valid_from DESC
     LIMIT 1;
    IF v_per_day > 0 AND NOT EXISTS (
        SELECT 1 FROM meters_hourlyusage u
         WHERE u.household_id = v_meter.household_id AND u.hour_start = v_hour AND u.kind = 'standing'
    ) THEN
        RETURN;
    END IF;
    -- Energy goes into the hour's open, priced line, the hour's only line. A new hour, an hour still
    -- waiting for its price, or an adjustment of a settled hour: Python's.
    IF v_energy > 0 THEN
        SELECT count(*), count(*) FILTER (WHERE u.settled_at IS NULL AND u.rate IS NOT NULL)
          INTO v_lines, v_open
          FROM meters_hourlyusage u
         WHERE u.meter_id = v_meter.id AND u.hour_start = v_hour AND u.kind = 'energy'
           AND u.household_id = v_meter.household_id;
        IF v_lines <> 1 OR v_open <> 1 THEN
            RETURN;
        END IF;
    END IF;

    -- Judged: write. The reading first, so that a row already there (nothing writes one past the
    -- meter's latest) leaves nothing written and Python to answer.
    INSERT INTO meters_reading (meter_id, household_id, "timestamp", energy_kwh, received_at)
    VALUES (v_meter.id, v_meter.household_id, p_timestamp, p_kwh, p_now)
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS v_written = ROW_COUNT;
    IF v_written = 0 THEN
        RETURN;
    END IF;
    IF v_energy > 0 THEN
        -- Lock order (meters/models.py): the household row, then its lines. The chart cache's key.
        UPDATE meters_household SET usage_version = usage_version + 1 WHERE id = v_meter.household_id;
        -- meters/usage.py _apply: the hour's cost and tax, rounded half up to the micro-euro (PostgreSQL's
        -- round() on numeric rounds half away from zero, as ROUND_HALF_UP does).
        UPDATE meters_hourlyusage u
           SET kwh = u.kwh + v_energy,
               cost_eur = round((u.kwh + v_energy) * u.rate, 6),
               tax_eur = round(round((u.kwh + v_energy) * u.rate, 6) * u.tax_rate, 6),
               updated_at = p_now
         WHERE u.meter_id = v_meter.id AND u.hour_start = v_hour AND u.kind = 'energy'
           AND u.settled_at IS NULL AND u.household_id = v_meter.household_id;
    END IF;
    UPDATE meters_meter
       SET last_seen_at = p_now, rate_window = p_rate_window, rate_count = v_count + 1,
           last_reading_at = p_timestamp, last_register_kwh = p_kwh,
           previous_reading_at = v_meter.last_reading_at, previous_register_kwh = v_meter.last_register_kwh
     WHERE id = v_meter.id;
    outcome := 'accepted';
    household := v_meter.household_id;
END
$function$;
"""

DROP = "DROP FUNCTION IF EXISTS meters_ingest_reading(text, timestamptz, numeric, timestamptz, timestamptz, timestamptz, bigint, integer)"


def install(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FUNCTION)


def uninstall(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("meters", "0006_partitioned_storage")]

    operations = [migrations.RunPython(install, uninstall, elidable=False)]
