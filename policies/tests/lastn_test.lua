-- lastn_test.lua - tests of policies/lastn.lua:
--   wzp-relay --test-policy policies/lastn.lua policies/tests/lastn_test.lua
--
-- The policy's timer runs every settings.tick_ms (500 ms) of synthetic time; media(id, n)
-- adds n packets now, and next_tick() moves the clock to the next tick, which measures
-- the packets sent since the previous one. Each test uses rooms of its own.

settings.n = 3
local TICK = settings.tick_ms
local FULL = 25 -- packets in 500 ms of speech (20 ms frames)

local function next_tick()
    advance(TICK)
end

local function roles(ids)
    local out = {}
    for i, id in ipairs(ids) do
        out[i] = participant(id).role
    end
    return out
end

-- n participants in room, ids in join order
local function fill(room, count)
    local ids = {}
    for i = 1, count do
        ids[i] = join { room = room, alias = room .. "-" .. i }.id
    end
    return ids
end

local function talk(ids, packets)
    for _, id in ipairs(ids) do
        media(id, packets or FULL)
    end
end

test("the first tick only takes a baseline", function()
    local p = fill("first", 5)
    talk({ p[4], p[5] }, 100)
    next_tick() -- the policy's first tick: no history, no change
    expect_eq(roles(p), { "speaker", "speaker", "speaker", "muted", "muted" })
end)

test("a small room is all speakers; joins beyond N are muted", function()
    local p = fill("grow", 3)
    expect_eq(roles(p), { "speaker", "speaker", "speaker" })
    local d = join { room = "grow" }
    expect_eq(d.role, "muted")
    next_tick()
    expect_eq(participant(d.id).role, "muted", "silent: stays muted")
end)

test("a muted participant who talks replaces a silent speaker", function()
    local p = fill("swap", 5) -- 1..3 speak, 4 and 5 muted
    next_tick()
    talk({ p[1], p[2], p[4] })
    next_tick()
    expect_eq(roles(p), { "speaker", "speaker", "muted", "speaker", "muted" })
end)

test("equally active participants never swap (hysteresis)", function()
    local p = fill("steady", 5)
    next_tick()
    for _ = 1, 6 do
        talk { p[1], p[2], p[3], p[4] }
        next_tick()
        expect_eq(roles(p), { "speaker", "speaker", "speaker", "muted", "muted" })
    end
    -- clearly more active: 20 packets vs the weakest speaker's 5
    talk({ p[1], p[2] })
    talk({ p[3] }, 5)
    talk({ p[4] }, 20)
    next_tick()
    expect_eq(roles(p), { "speaker", "speaker", "muted", "speaker", "muted" })
end)

test("a new speaker keeps its slot for hold_ms", function()
    local p = fill("hold", 5)
    next_tick()
    talk({ p[1], p[2], p[4] })
    next_tick()
    expect_eq(participant(p[4]).role, "speaker")
    -- 4 pauses, 5 talks: the only speaker it could replace is 4, still held
    local ticks = settings.hold_ms / TICK
    for _ = 1, ticks - 1 do
        talk({ p[1], p[2], p[5] })
        next_tick()
        expect_eq(roles(p), { "speaker", "speaker", "muted", "speaker", "muted" })
    end
    talk({ p[1], p[2], p[5] })
    next_tick()
    expect_eq(roles(p), { "speaker", "speaker", "muted", "muted", "speaker" })
end)

test("a free slot goes to the most recent talker on a tie", function()
    local p = fill("tie", 5)
    next_tick()
    leave(p[3]) -- a speaker leaves: 4 candidates, 2 speakers, 1 free slot
    -- both talk a little (more than active_packets, less than margin_packets more than
    -- the silent speakers 1 and 2): one of them gets the free slot, nobody is replaced
    media(p[4], 8)
    advance(100)
    media(p[5], 8) -- same count, later
    advance(TICK - 100)
    expect_eq(participant(p[5]).role, "speaker")
    expect_eq(participant(p[4]).role, "muted")
end)

test("a free slot is not given to someone silent", function()
    local p = fill("quiet", 5)
    next_tick()
    leave(p[1])
    talk({ p[4] }, settings.active_packets - 1)
    next_tick()
    expect_eq(participant(p[4]).role, "muted")
    expect_eq(participant(p[5]).role, "muted")
end)

test("a room that grows past N mutes its least active speakers", function()
    settings.n = 5
    local p = fill("shrinkn", 5)
    next_tick()
    settings.n = 3
    talk({ p[2], p[4] })
    talk({ p[5] }, 3)
    next_tick()
    expect_eq(roles(p), { "muted", "speaker", "muted", "speaker", "speaker" })
end)

test("a room back to N or fewer unmutes everyone", function()
    local p = fill("back", 5)
    next_tick()
    leave(p[1])
    leave(p[2])
    next_tick()
    expect_eq(roles { p[3], p[4], p[5] }, { "speaker", "speaker", "speaker" })
end)

test("listeners are left alone", function()
    local p = fill("mixed", 5)
    wzp.set_role(p[5], "listener") -- e.g. set by another policy or an admin
    next_tick()
    talk({ p[5] }, 100)
    leave(p[1])
    next_tick()
    expect_eq(participant(p[5]).role, "listener")
    expect_eq(participant(p[4]).role, "speaker", "3 candidates left: all speak")
end)

test("rooms outside settings.rooms are not touched", function()
    settings.rooms = { "big-*" }
    local p = fill("small-talk", 5)
    expect_eq(roles(p), { "speaker", "speaker", "speaker", "speaker", "speaker" })
    next_tick()
    expect_eq(roles(p), { "speaker", "speaker", "speaker", "speaker", "speaker" })
    local q = fill("big-1", 4)
    expect_eq(participant(q[4]).role, "muted")
    settings.rooms = { "*" }
end)
