-- moderated.lua - moderated rooms ("stages"): moderators speak, everyone else listens
-- until promoted.
--
-- In a room matching settings.rooms:
--   * a moderator (settings.moderators) joins as a speaker;
--   * a participant promoted for that room joins as a speaker;
--   * everyone else joins as a listener: they hear the room, their media is not
--     forwarded;
--   * with wait_for_moderator, non-moderators are refused while no moderator is in the
--     room ("the stage opens when a moderator arrives").
-- Rooms not matching settings.rooms are left alone (everyone speaks).
--
-- Promotions, per room, come from two places:
--   * settings.speakers[room]: a list of fingerprints. Edit it and send SIGHUP: the new
--     policy's timer applies the change to people already in the room.
--   * the shared-dictionary key "stage:<room>:speakers": fingerprints separated by
--     spaces or commas. It survives reloads and is seen by every worker; it is the
--     place for tooling to write to. (Today nothing but policy code can write
--     wzp.shared, e.g. a policy of your own that builds on this one.)
-- Every apply_every_ms a timer (on the timer worker) makes each participant's role in
-- every moderated room match these rules: a promotion turns a listener into a speaker,
-- removing it turns the speaker back into a listener. A join is decided at once by the
-- same rules, so nobody waits for the timer to get the right role.
--
-- Try it: wzp-relay --check policies/moderated.lua
--         wzp-relay --test-policy policies/moderated.lua policies/tests/moderated_test.lua

-----------------------------------------------------------------------------------------
-- SETTINGS: edit these, then `wzp-relay --check` the file and send the relay SIGHUP.
-----------------------------------------------------------------------------------------
settings = {
    -- Moderated rooms: names or patterns ('*' = any run of characters, '?' = one).
    rooms = { "stage-*", "town-hall" },

    -- Fingerprints (as the relay logs them) that speak in every moderated room.
    moderators = {
        -- "1a2b:3c4d:5e6f:7a8b:9c0d:1e2f:3a4b:5c6d",
    },

    -- Promoted speakers per room (exact room name -> fingerprints).
    speakers = {
        -- ["town-hall"] = { "9f8e:7d6c:5b4a:3928:1706:f5e4:d3c2:b1a0" },
    },

    -- true: non-moderators may join a moderated room only while a moderator is in it.
    wait_for_moderator = false,

    -- How often promotions and demotions are applied, in ms (read when the policy loads).
    apply_every_ms = 1000,
}
-----------------------------------------------------------------------------------------

local glob = require("glob") -- lua/glob.lua: '*' and '?' patterns

local function is_moderated(room)
    return glob.any(room, settings.rooms) ~= nil
end

local function contains(list, fp)
    for _, x in ipairs(list or {}) do
        if x:lower() == fp then
            return true
        end
    end
    return false
end

local function is_moderator(fp)
    return contains(settings.moderators, fp:lower())
end

-- The shared key an admin tool writes the promoted speakers of a room to.
function speakers_key(room)
    return "stage:" .. room .. ":speakers"
end

-- Set of the fingerprints promoted in room (settings and shared dictionary).
local function promoted(room)
    local set = {}
    for _, fp in ipairs(settings.speakers[room] or {}) do
        set[fp:lower()] = true
    end
    local shared = wzp.shared.get(speakers_key(room))
    if type(shared) == "string" then
        for fp in shared:gmatch("[^%s,]+") do
            set[fp:lower()] = true
        end
    end
    return set
end

local function wanted_role(fp, promoted_set)
    fp = fp:lower()
    if is_moderator(fp) or promoted_set[fp] then
        return "speaker"
    end
    return "listener"
end

function on_join(j)
    if not is_moderated(j.room) then
        return true
    end
    if settings.wait_for_moderator and not is_moderator(j.fingerprint) then
        local present = false
        for _, p in ipairs(wzp.participants(j.room)) do
            if is_moderator(p.fingerprint) then
                present = true
                break
            end
        end
        if not present then
            return false, "waiting for a moderator"
        end
    end
    return { role = wanted_role(j.fingerprint, promoted(j.room)) }
end

-- The timer: make every role in every moderated room match the rules.
function apply_roles()
    for _, r in ipairs(wzp.rooms()) do
        if is_moderated(r.name) then
            local set = promoted(r.name)
            for _, p in ipairs(wzp.participants(r.name)) do
                local role = wanted_role(p.fingerprint, set)
                if p.role ~= role then
                    wzp.set_role(p.id, role)
                    wzp.log("info", "moderated: " .. p.fingerprint .. " in " .. r.name .. " is now a " .. role)
                end
            end
        end
    end
end

wzp.every(settings.apply_every_ms, apply_roles)

function self_check()
    if type(settings.rooms) ~= "table" or type(settings.moderators) ~= "table"
        or type(settings.speakers) ~= "table" then
        return false, "rooms, moderators and speakers must be tables"
    end
    local FP = "^%x%x%x%x" .. string.rep(":%x%x%x%x", 7) .. "$"
    local function check(name, list)
        for i, fp in ipairs(list) do
            if type(fp) ~= "string" or not fp:match(FP) then
                return false, string.format("%s[%d] is not a fingerprint: %s", name, i, tostring(fp))
            end
        end
        return true
    end
    local ok, why = check("moderators", settings.moderators)
    if not ok then
        return false, why
    end
    for room, list in pairs(settings.speakers) do
        ok, why = check("speakers[" .. tostring(room) .. "]", list)
        if not ok then
            return false, why
        end
    end
    return true
end
