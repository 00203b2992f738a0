-- qualitycap.lua - cap the audio quality tier per room.
--
-- Each participant has a quality tier that the relay's controller computes from its
-- loss and RTT reports (Catastrophic < Degraded < Good < Studio32k < Studio48k <
-- Studio64k), and a room runs at its weakest participant's tier: every participant gets a
-- QualityDirective with that tier's codec profile. A cap keeps the tiers of a room's
-- participants at or below a given tier, e.g. to save bandwidth in big rooms or to keep
-- mobile rooms on a robust codec. Capping is done twice:
--   * on_join returns max_tier: the relay holds the participant at or below it for the
--     whole call (the cap is fixed at join);
--   * on_quality caps the tier whenever the controller changes it. This is what applies
--     a cap changed by a reload (SIGHUP) to participants who joined before it: at their
--     next tier change. (It cannot raise a tier above a cap set at join.)
-- Caps only lower tiers: a cap above what the network allows changes nothing.
--
-- Try it: wzp-relay --check policies/qualitycap.lua
--         wzp-relay --test-policy policies/qualitycap.lua policies/tests/qualitycap_test.lua

-----------------------------------------------------------------------------------------
-- SETTINGS: edit these, then `wzp-relay --check` the file and send the relay SIGHUP.
-----------------------------------------------------------------------------------------
settings = {
    -- Room names or patterns ('*' = any run of characters, '?' = one) and their cap.
    -- The first matching entry wins.
    caps = {
        { room = "lobby-*", max_tier = "Good" },
        { room = "mobile-*", max_tier = "Degraded" },
    },
    -- Cap for every other room; nil = no cap.
    default_max_tier = nil,
}
-----------------------------------------------------------------------------------------

local TIERS = { "Catastrophic", "Degraded", "Good", "Studio32k", "Studio48k", "Studio64k" }
local RANK = {}
for i, t in ipairs(TIERS) do
    RANK[t] = i
end

local glob = require("glob") -- lua/glob.lua: '*' and '?' patterns

-- The cap of a room (a tier name), or nil.
function cap_for(room)
    for _, c in ipairs(settings.caps) do
        if glob.match(c.room, room) then
            return c.max_tier
        end
    end
    return settings.default_max_tier
end

function on_join(j)
    local cap = cap_for(j.room)
    if cap then
        return { max_tier = cap }
    end
    return true
end

function on_quality(q)
    local cap = cap_for(q.room)
    if cap and RANK[q.tier] > RANK[cap] then
        return cap
    end
    return nil -- keep the computed tier
end

function self_check()
    if type(settings.caps) ~= "table" then
        return false, "caps must be a list of { room = ..., max_tier = ... }"
    end
    for i, c in ipairs(settings.caps) do
        if type(c) ~= "table" or type(c.room) ~= "string" or not RANK[c.max_tier] then
            return false, string.format("caps[%d] needs a room pattern and a max_tier, one of: %s", i,
                table.concat(TIERS, ", "))
        end
    end
    if settings.default_max_tier ~= nil and not RANK[settings.default_max_tier] then
        return false, "default_max_tier must be nil or one of: " .. table.concat(TIERS, ", ")
    end
    return true
end
