-- wrk script: every request carries a key drawn at random from a file (one key a line).
--   wrk ... -s bench/keys.lua URL -- KEYFILE
-- Each wrk thread reads the file in init() into its own Lua state. done() prints one
-- machine-readable line: requests/s, latency p50 and p99 in microseconds, non-2xx/3xx
-- responses and socket errors, for bench/run.sh.
local keys = {}
local path = "/"

function init(args)
    local file = args[1] or error("usage: -- KEYFILE")
    for line in io.lines(file) do
        if #line > 0 then keys[#keys + 1] = "Bearer " .. line end
    end
    if #keys == 0 then error("no keys in " .. file) end
    path = wrk.path
    -- Each thread its own sequence: a table address differs per Lua state.
    local addr = tonumber((tostring({}):match("0x(%x+)")) or "0", 16) or 0
    math.randomseed(os.time() + addr % 1000003)
end

function request()
    return wrk.format("GET", path, { ["Authorization"] = keys[math.random(#keys)] })
end

function done(summary, latency, requests)
    local secs = summary.duration / 1e6
    local e = summary.errors
    io.write(string.format("WRKRESULT %.1f %d %d %d %d %d\n",
        summary.requests / secs, latency:percentile(50), latency:percentile(99),
        e.status, e.connect + e.read + e.write + e.timeout, summary.requests))
end
