-- wrk script: GET the URL given to wrk, as a logged-in browser would (session cookie, optionally htmx).
-- Arguments (after --): the Cookie header value ("" for none), "htmx" to send HX-Request: true.

local request_text

function init(args)
  local headers = {}
  if args[1] ~= nil and args[1] ~= "" then
    headers["Cookie"] = args[1]
  end
  if args[2] == "htmx" then
    headers["HX-Request"] = "true"
  end
  request_text = wrk.format("GET", nil, headers)
end

function request()
  return request_text
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
