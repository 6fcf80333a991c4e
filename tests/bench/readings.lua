-- wrk script: every request carries a new reading for the next meter in turn.
-- Arguments (after --): path, first timestamp (Unix seconds), first step, tokens file.
-- Request n goes to meter n % #tokens at step first_step + n // #tokens: one minute later and
-- 0.050 kWh more than that meter's previous reading (a plausible 3 kW), always in the past.

local path, start_epoch, first_step
local tokens = {}
local counter = 0

function init(args)
  path = args[1]
  start_epoch = tonumber(args[2])
  first_step = tonumber(args[3])
  for line in io.lines(args[4]) do
    if line ~= "" then
      tokens[#tokens + 1] = line
    end
  end
end

function request()
  local meters = #tokens
  local meter = counter % meters
  local step = first_step + math.floor(counter / meters)
  counter = counter + 1
  local milli = 1000000 + 50 * step
  local body = string.format(
    '{"timestamp": "%s", "energy_kwh": %d.%03d}',
    os.date("!%Y-%m-%dT%H:%M:%SZ", start_epoch + 60 * step),
    math.floor(milli / 1000),
    milli % 1000
  )
  local headers = {}
  headers["Authorization"] = "Bearer " .. tokens[meter + 1]
  headers["Content-Type"] = "application/json"
  return wrk.format("POST", path, headers, body)
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'WRK_JSON {"duration_us": %d, "requests": %d, "bytes": %d, "errors_connect": %d, "errors_read": %d, '
      .. '"errors_write": %d, "errors_status": %d, "errors_timeout": %d, '
      .. '"latency_p50_us": %d, "latency_p99_us": %d, "latency_max_us": %d}\n',
    summary.duration, summary.requests, summary.bytes, errors.connect, errors.read,
    errors.write, errors.status, errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.max
  ))
end
