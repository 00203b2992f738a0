-- acl.lua - who may join which room: allowlists and denylists by fingerprint and by
-- room name, and private rooms with a member list.
--
-- How a join is decided, in this order (the first rule that decides wins):
--   1. a fingerprint on deny_fingerprints is refused;
--   2. a room matching deny_rooms is refused;
--   3. if allow_rooms is not empty, a room matching none of it is refused;
--   4. a room matching a private_rooms pattern admits its members and refuses everyone
--      else (members need not be on allow_fingerprints);
--   5. if allow_fingerprints is not empty, a fingerprint not on it is refused;
--   6. everyone else joins, as a speaker.
-- An empty allowlist means "no restriction". The room rules (2 and 3) are also applied in
-- on_connect, from the TLS server name, so a refused room costs the relay no key
-- exchange; fingerprints are known only at the join (CallOffer), so rules 1, 4 and 5 run
-- there. The refusal reason is sent to the client ("denied: <reason>") and logged.
--
-- Try it: wzp-relay --check policies/acl.lua
--         wzp-relay --test-policy policies/acl.lua policies/tests/acl_test.lua

-----------------------------------------------------------------------------------------
-- SETTINGS: edit these, then `wzp-relay --check` the file and send the relay SIGHUP.
-----------------------------------------------------------------------------------------
settings = {
    -- Fingerprints exactly as the relay logs them at a join, e.g.
    -- "1a2b:3c4d:5e6f:7a8b:9c0d:1e2f:3a4b:5c6d" (case does not matter).
    allow_fingerprints = {}, -- empty: any fingerprint may join
    deny_fingerprints = {},

    -- Room names, or patterns where '*' matches any run of characters and '?' exactly
    -- one (e.g. "team-*"). Room names are the TLS server name, lower-case; a client that
    -- sends no server name joins the room "default".
    allow_rooms = {}, -- empty: any room
    deny_rooms = {},

    -- Private rooms: pattern -> list of the only fingerprints that may join. Where
    -- patterns overlap, the first in string order decides.
    private_rooms = {
        -- ["board-*"] = { "1a2b:3c4d:5e6f:7a8b:9c0d:1e2f:3a4b:5c6d" },
    },
}
-----------------------------------------------------------------------------------------

-- Server names the relay answers itself (never rooms): on_connect lets them through.
local SERVICE_NAMES = { ping = true, version = true }

local glob = require("glob") -- lua/glob.lua: '*' and '?' patterns

-- Lists become sets once per list table (a reload, or a test assigning a new list,
-- gives a new table).
local sets = setmetatable({}, { __mode = "k" })
local function set_of(list)
    local s = sets[list]
    if not s then
        s = {}
        for _, fp in ipairs(list) do
            s[fp:lower()] = true
        end
        sets[list] = s
    end
    return s
end

-- The patterns of private_rooms in a fixed (sorted) order, so overlapping patterns
-- always decide the same way: the first in string order wins.
local orders = setmetatable({}, { __mode = "k" })
local function sorted_keys(t)
    local keys = orders[t]
    if not keys then
        keys = {}
        for k in pairs(t) do
            keys[#keys + 1] = k
        end
        table.sort(keys)
        orders[t] = keys
    end
    return keys
end

local function is_empty(t)
    return next(t) == nil
end

-- Rules 2 and 3: nil if the room is open, else the reason.
local function room_refusal(room)
    if glob.any(room, settings.deny_rooms) then
        return "room " .. room .. " is closed"
    end
    if not is_empty(settings.allow_rooms) and not glob.any(room, settings.allow_rooms) then
        return "room " .. room .. " is not served here"
    end
    return nil
end

function on_connect(c)
    if c.sni and SERVICE_NAMES[c.sni] then
        return true
    end
    local why = room_refusal(c.sni or "default")
    if why then
        return false, why
    end
    return true
end

function on_join(j)
    local fp = j.fingerprint:lower()
    if set_of(settings.deny_fingerprints)[fp] then
        return false, "fingerprint is denied"
    end
    local why = room_refusal(j.room)
    if why then
        return false, why
    end
    for _, pattern in ipairs(sorted_keys(settings.private_rooms)) do
        if glob.match(pattern, j.room) then
            if set_of(settings.private_rooms[pattern])[fp] then
                return true
            end
            return false, "room " .. j.room .. " is private"
        end
    end
    if not is_empty(settings.allow_fingerprints) and not set_of(settings.allow_fingerprints)[fp] then
        return false, "fingerprint is not on the allowlist"
    end
    return true
end

-- Refuse to load (or to replace the running policy on SIGHUP) with malformed settings:
-- a mistyped fingerprint would otherwise never match, silently.
local FP = "^%x%x%x%x" .. string.rep(":%x%x%x%x", 7) .. "$"

local function check_fingerprints(name, list)
    if type(list) ~= "table" then
        return false, name .. " must be a list"
    end
    for i, fp in ipairs(list) do
        if type(fp) ~= "string" or not fp:match(FP) then
            return false, string.format("%s[%d] is not a fingerprint (xxxx:...:xxxx, 8 groups): %s",
                name, i, tostring(fp))
        end
    end
    return true
end

local function check_rooms(name, list)
    if type(list) ~= "table" then
        return false, name .. " must be a list"
    end
    for i, g in ipairs(list) do
        if type(g) ~= "string" or g == "" then
            return false, string.format("%s[%d] must be a non-empty string", name, i)
        end
    end
    return true
end

function self_check()
    local checks = {
        { check_fingerprints, "allow_fingerprints", settings.allow_fingerprints },
        { check_fingerprints, "deny_fingerprints", settings.deny_fingerprints },
        { check_rooms, "allow_rooms", settings.allow_rooms },
        { check_rooms, "deny_rooms", settings.deny_rooms },
    }
    if type(settings.private_rooms) ~= "table" then
        return false, "private_rooms must be a table"
    end
    for pattern, members in pairs(settings.private_rooms) do
        checks[#checks + 1] = { check_rooms, "private_rooms (pattern)", { pattern } }
        checks[#checks + 1] = { check_fingerprints, "private_rooms[" .. tostring(pattern) .. "]", members }
    end
    for _, c in ipairs(checks) do
        local ok, why = c[1](c[2], c[3])
        if not ok then
            return false, why
        end
    end
    return true
end
