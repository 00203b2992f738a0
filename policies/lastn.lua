-- lastn.lua - last-N speakers for large rooms: in a room with more than N participants,
-- only the N most recently active ones are forwarded; the others are muted until they
-- talk more than a current speaker.
--
-- How it works. Every tick_ms a timer (on the timer worker) looks at each room with
-- more than N candidates (speakers and muted participants; listeners set by another
-- policy are left alone) and measures each one's activity: media packets sent since
-- the previous tick (comfort noise is not counted). The relay keeps counting the
-- packets of a muted participant (it just does not forward them), so a muted
-- participant who starts talking is seen, and:
--   * fills a free speaker slot if it sent at least active_packets in the tick;
--   * otherwise replaces the weakest speaker only if it sent at least margin_packets
--     more than that speaker in the tick, and that speaker has held its slot for
--     hold_ms. Two people talking at the same rate never swap places, and a speaker
--     pausing for breath is not replaced by someone who coughed: no flapping.
-- "Weakest" and "strongest" compare packets in the tick, then the most recent packet
-- (last_media_ms). When a room grows past N (say, everyone was a speaker), the weakest
-- speakers are muted until N remain; when it shrinks to N or fewer, everyone muted is a
-- speaker again. A participant joining a room that already has N or more people joins
-- muted; the next ticks promote it if it talks.
--
-- Muted participants still receive everything. Activity is measured from the first
-- tick that sees a participant; after a policy reload the first tick only takes a
-- baseline (the counters are totals since each join), so a reload never reshuffles.
--
-- Try it: wzp-relay --check policies/lastn.lua
--         wzp-relay --test-policy policies/lastn.lua policies/tests/lastn_test.lua

-----------------------------------------------------------------------------------------
-- SETTINGS: edit these, then `wzp-relay --check` the file and send the relay SIGHUP.
-----------------------------------------------------------------------------------------
settings = {
    n = 4, -- speakers per large room
    rooms = { "*" }, -- rooms this applies to: names or patterns ('*', '?')
    tick_ms = 500, -- how often activity is measured (read when the policy loads)
    active_packets = 5, -- packets in one tick that count as talking (20 ms frames: 25)
    margin_packets = 10, -- how many more packets than the weakest speaker a muted
    --                      participant must send in one tick to replace it
    hold_ms = 2000, -- a new speaker keeps its slot at least this long
}
-----------------------------------------------------------------------------------------

local glob = require("glob") -- lua/glob.lua: '*' and '?' patterns

local function applies_to(room)
    return glob.any(room, settings.rooms) ~= nil
end

-- State of the timer worker (Lua globals are per worker; only worker 0 runs timers).
local last_packets = {} -- id -> packet counter at the previous tick
local speaker_since = {} -- id -> when this policy made it a speaker
local first_tick = true

-- a is stronger than b: more packets this tick, then the more recent packet.
local function stronger(a, b)
    if a.delta ~= b.delta then
        return a.delta > b.delta
    end
    return a.last_media_ms > b.last_media_ms
end

local function set_role(p, role, room, why)
    wzp.set_role(p.id, role)
    p.role = role
    if role == "speaker" then
        speaker_since[p.id] = wzp.now_ms()
    end
    wzp.log("debug", "lastn: " .. room .. ": " .. p.fingerprint .. " " .. role .. " (" .. why .. ")")
end

local function rank_room(room, candidates, now)
    local speakers, muted = {}, {}
    for _, p in ipairs(candidates) do
        if p.role == "speaker" then
            speakers[#speakers + 1] = p
        else
            muted[#muted + 1] = p
        end
    end
    -- Too many speakers (the room just grew): mute the weakest until N remain.
    table.sort(speakers, stronger)
    while #speakers > settings.n do
        set_role(table.remove(speakers), "muted", room, "room larger than " .. settings.n)
    end
    -- Muted participants who talked, strongest first, take free slots or the weakest one.
    local challengers = {}
    for _, p in ipairs(muted) do
        if p.delta >= settings.active_packets then
            challengers[#challengers + 1] = p
        end
    end
    table.sort(challengers, stronger)
    for _, c in ipairs(challengers) do
        if #speakers < settings.n then
            set_role(c, "speaker", room, "free slot")
            table.insert(speakers, c)
        else
            local weakest, wi = nil, nil
            for i, s in ipairs(speakers) do
                local held = now - (speaker_since[s.id] or 0)
                if held >= settings.hold_ms and (not weakest or stronger(weakest, s)) then
                    weakest, wi = s, i
                end
            end
            if not weakest or c.delta < weakest.delta + settings.margin_packets then
                break -- the next challengers are weaker still
            end
            set_role(weakest, "muted", room, "replaced")
            set_role(c, "speaker", room, "more active")
            speakers[wi] = c
        end
        table.sort(speakers, stronger)
    end
end

function tick()
    local now = wzp.now_ms()
    local seen = {}
    for _, r in ipairs(wzp.rooms()) do
        if applies_to(r.name) then
            local candidates = {}
            for _, p in ipairs(wzp.participants(r.name)) do
                if p.role ~= "listener" then
                    local prev = last_packets[p.id]
                    -- a participant new since the last tick: all its packets are recent;
                    -- on the first tick of this policy: totals since join, baseline only
                    p.delta = prev and p.packets - prev or (first_tick and 0 or p.packets)
                    seen[p.id] = p.packets
                    candidates[#candidates + 1] = p
                end
            end
            if #candidates > settings.n then
                rank_room(r.name, candidates, now)
            else
                for _, p in ipairs(candidates) do
                    if p.role == "muted" then
                        set_role(p, "speaker", r.name, "room small again")
                    end
                end
            end
        end
    end
    last_packets = seen -- forgets whoever left
    for id in pairs(speaker_since) do
        if not seen[id] then
            speaker_since[id] = nil
        end
    end
    first_tick = false
end

function on_join(j)
    if applies_to(j.room) and j.room_size >= settings.n then
        return { role = "muted" }
    end
    return true
end

wzp.every(settings.tick_ms, tick)

function self_check()
    for _, k in ipairs { "n", "tick_ms", "active_packets", "margin_packets", "hold_ms" } do
        if type(settings[k]) ~= "number" or settings[k] < 0 then
            return false, k .. " must be a number >= 0"
        end
    end
    if settings.n < 1 then
        return false, "n must be at least 1"
    end
    if type(settings.rooms) ~= "table" then
        return false, "rooms must be a list of names or patterns"
    end
    return true
end
