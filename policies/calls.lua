-- calls.lua - who may be reachable on this relay and who may call whom (direct calls
-- through "_signal"), plus a per-caller call rate.
--
--   directory        fingerprints allowed to register and to call; calls only between two
--                    of them. Empty: anyone (the relay's default).
--   require_signed   registrations must carry a valid signature (or be vouched for by
--                    featherChat authentication). Today's WarzonePhone apps send an empty
--                    signature: turn this on only for clients that sign.
--   calls_per_minute calls one caller may place per minute (0 = no limit); counted in the
--                    relay's shared dictionary, so every worker and reload sees the same
--                    count. Refused calls count too.
--
-- Room joins are untouched (call rooms admit the two parties by themselves).
--
-- Try it: wzp-relay --check policies/calls.lua
--         wzp-relay --test-policy policies/calls.lua policies/tests/calls_test.lua

-----------------------------------------------------------------------------------------
-- SETTINGS: edit these, then `wzp-relay --check` the file and send the relay SIGHUP.
-----------------------------------------------------------------------------------------
settings = {
    -- e.g. { "3f2a:9c01:...:77e0", "b7d4:...:0c12" }; compared ignoring case
    directory = {},
    require_signed = false,
    calls_per_minute = 20,
}
-----------------------------------------------------------------------------------------

local function listed(fp)
    if #settings.directory == 0 then
        return true
    end
    fp = fp:lower()
    for _, f in ipairs(settings.directory) do
        if f:lower() == fp then
            return true
        end
    end
    return false
end

function on_register(r)
    if settings.require_signed and not r.signed and not r.authenticated then
        return false, "this relay requires a signed registration"
    end
    if not listed(r.fingerprint) then
        return false, "not in this relay's directory"
    end
    return true
end

local warned_until = 0

function on_call(c)
    if not listed(c.caller) then
        return false, "not in this relay's directory"
    end
    if not listed(c.callee) then
        return false, "the callee is not in this relay's directory"
    end
    local limit = settings.calls_per_minute
    if limit > 0 then
        local key = "calls:" .. c.caller:lower()
        local ok, n = pcall(wzp.shared.incr, key, 1, 0, 60)
        if not ok then -- the dictionary is full: fail open, say so once a minute
            if wzp.now_ms() >= warned_until then
                wzp.log("warn", "calls: not counting calls (" .. tostring(n) .. ")")
                warned_until = wzp.now_ms() + 60000
            end
        elseif n > limit then
            local wait = math.max(1, math.ceil(wzp.shared.ttl(key) or 60))
            wzp.metric("calls_rate_limited", 1)
            return false, "too many calls; retry in " .. wait .. " s"
        end
    end
    return true
end

function self_check()
    if type(settings.directory) ~= "table" then
        return false, "directory must be a list of fingerprints"
    end
    for i, f in ipairs(settings.directory) do
        if type(f) ~= "string" or not f:match("^%x%x%x%x:%x%x%x%x:%x%x%x%x:%x%x%x%x:%x%x%x%x:%x%x%x%x:%x%x%x%x:%x%x%x%x$") then
            return false, "directory entry " .. i .. " is not a fingerprint (8 groups of 4 hex digits)"
        end
    end
    if type(settings.require_signed) ~= "boolean" then
        return false, "require_signed must be true or false"
    end
    if type(settings.calls_per_minute) ~= "number" or settings.calls_per_minute < 0 then
        return false, "calls_per_minute must be a number >= 0 (0 = no limit)"
    end
    return true
end
