-- breakout.lua - breakout groups inside one room, for a while, then everyone together.
--
-- In a room matching settings.rooms, while its breakout runs:
--   * each participant who is not a host joins one of settings.groups groups, in turn
--     (the first joiner group-1, the next group-2, ...), sends into it and hears it;
--   * a host (settings.hosts) sends into every group and hears all: the host's
--     announcements reach every group, and the host can listen in anywhere;
--   * settings.duration_s after the room's first join the breakout ends: a timer routes
--     everyone back to the whole room (sends "room", hears all), at once and without a
--     reconnect, and later joiners join the whole room. duration_s = 0: it never ends.
-- The turn counter and the start time live in wzp.shared, so every worker and a
-- reloaded policy see the same ones.
--
-- Try it: wzp-relay --check policies/breakout.lua
--         wzp-relay --test-policy policies/breakout.lua policies/tests/breakout_test.lua

-----------------------------------------------------------------------------------------
-- SETTINGS: edit these, then `wzp-relay --check` the file and send the relay SIGHUP.
-----------------------------------------------------------------------------------------
settings = {
    rooms = { "workshop-*" }, -- names or patterns ('*' = any run of characters, '?' = one)
    groups = 3, -- breakout groups per room, 1..16
    hosts = {}, -- fingerprints of the hosts
    duration_s = 900, -- breakouts end this long after the room's first join; 0 = never
    check_every_ms = 1000, -- how often the timer looks for breakouts that ended
}
-----------------------------------------------------------------------------------------

local glob = require("glob") -- lua/glob.lua: '*' and '?' patterns

local DAY_S = 86400 -- shared keys expire a day after they are written

local function is_host(fp)
    fp = fp:lower()
    for _, h in ipairs(settings.hosts) do
        if h:lower() == fp then
            return true
        end
    end
    return false
end

local function all_groups()
    local g = {}
    for i = 1, settings.groups do
        g[i] = "group-" .. i
    end
    return g
end

-- When the breakout of room started (wzp.now_ms clock), starting it now if it has not.
local function started_ms(room)
    local key = "breakout:" .. room .. ":start"
    local t = wzp.shared.get(key)
    if not t then
        t = wzp.now_ms()
        wzp.shared.set(key, t, DAY_S)
    end
    return t
end

local function ended(room)
    return settings.duration_s > 0
        and wzp.now_ms() - started_ms(room) >= settings.duration_s * 1000
end

function on_join(j)
    if glob.any(j.room, settings.rooms) == nil or ended(j.room) then
        return true
    end
    if is_host(j.fingerprint) then
        return { sends = all_groups(), hears = "all" }
    end
    local n = wzp.shared.incr("breakout:" .. j.room .. ":joins", 1, 0, DAY_S)
    local group = "group-" .. ((n - 1) % settings.groups + 1)
    return { sends = { group }, hears = { group } }
end

-- Breakouts that ended: everyone back to the whole room (once per room).
function end_breakouts()
    for _, r in ipairs(wzp.rooms()) do
        local done_key = "breakout:" .. r.name .. ":ended"
        if glob.any(r.name, settings.rooms) and not wzp.shared.get(done_key) and ended(r.name) then
            for _, p in ipairs(wzp.participants(r.name)) do
                wzp.route(p.id) -- the default: sends "room", hears all
            end
            wzp.shared.set(done_key, true, DAY_S)
            wzp.log("info", "breakout: room " .. r.name .. " is back together")
        end
    end
end

function self_check()
    local g = settings.groups
    if type(g) ~= "number" or g < 1 or g > 16 or g % 1 ~= 0 then
        return false, "groups must be a whole number from 1 to 16"
    end
    if type(settings.duration_s) ~= "number" or settings.duration_s < 0 then
        return false, "duration_s must be a number of seconds >= 0"
    end
    if type(settings.rooms) ~= "table" or type(settings.hosts) ~= "table" then
        return false, "rooms and hosts must be lists"
    end
    return true
end

wzp.every(settings.check_every_ms, end_breakouts)
