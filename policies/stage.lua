-- stage.lua - a stage, its audience and its moderators, in the rooms you name.
--
-- In a room matching settings.rooms:
--   * a stage speaker (settings.stage) sends into group "stage" and hears everyone who
--     speaks (the stage and the moderators);
--   * a moderator (settings.moderators) sends into group "moderators" and hears everyone
--     who speaks: the stage hears the moderators' cues, the audience does not;
--   * everyone else is audience: a listener (its media is not forwarded) that hears the
--     stage only.
-- Routing is decided with the join (the decision's sends/hears), so nobody hears the
-- wrong people for a moment. Rooms not matching settings.rooms are left alone.
--
-- Try it: wzp-relay --check policies/stage.lua
--         wzp-relay --test-policy policies/stage.lua policies/tests/stage_test.lua

-----------------------------------------------------------------------------------------
-- SETTINGS: edit these, then `wzp-relay --check` the file and send the relay SIGHUP
-- (people already in a room keep their routing until they rejoin).
-----------------------------------------------------------------------------------------
settings = {
    -- Rooms with a stage: names or patterns ('*' = any run of characters, '?' = one).
    rooms = { "town-hall", "stage-*" },

    -- Fingerprints (as the relay logs them) of the speakers on stage, in every staged room.
    stage = {
        -- "1a2b:3c4d:5e6f:7a8b:9c0d:1e2f:3a4b:5c6d",
    },

    -- Fingerprints of the moderators.
    moderators = {},
}
-----------------------------------------------------------------------------------------

local glob = require("glob") -- lua/glob.lua: '*' and '?' patterns

local function listed(list, fp)
    fp = fp:lower()
    for _, x in ipairs(list) do
        if x:lower() == fp then
            return true
        end
    end
    return false
end

function on_join(j)
    if glob.any(j.room, settings.rooms) == nil then
        return true
    end
    if listed(settings.stage, j.fingerprint) then
        return { sends = { "stage" }, hears = "all" }
    end
    if listed(settings.moderators, j.fingerprint) then
        return { sends = { "moderators" }, hears = "all" }
    end
    return { role = "listener", sends = {}, hears = { "stage" } }
end

function self_check()
    for _, k in ipairs { "rooms", "stage", "moderators" } do
        if type(settings[k]) ~= "table" then
            return false, k .. " must be a list"
        end
        for i, v in ipairs(settings[k]) do
            if type(v) ~= "string" then
                return false, k .. "[" .. i .. "] must be a string"
            end
        end
    end
    return true
end
