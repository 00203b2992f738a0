-- moderated_test.lua - tests of policies/moderated.lua:
--   wzp-relay --test-policy policies/moderated.lua policies/tests/moderated_test.lua

local MOD = "aaaa:0000:0000:0000:0000:0000:0000:0001"
local ANN = "bbbb:0000:0000:0000:0000:0000:0000:0002"
local BEN = "cccc:0000:0000:0000:0000:0000:0000:0003"

settings.moderators = { MOD }

local function role(id)
    local p = participant(id)
    return p and p.role
end

test("moderators speak, everyone else listens", function()
    local m = join { room = "stage-1", fingerprint = MOD }
    local a = join { room = "stage-1", fingerprint = ANN }
    expect_eq(m.role, "speaker")
    expect_eq(a.role, "listener")
    expect_eq(role(a.id), "listener")
    leave(m.id)
    leave(a.id)
end)

test("rooms that are not moderated are left alone", function()
    local a = join { room = "lobby", fingerprint = ANN }
    expect_eq(a.role, "speaker")
    local b = join { room = "town-hall", fingerprint = BEN }
    expect_eq(b.role, "listener", "town-hall is in the shipped list")
    leave(a.id)
    leave(b.id)
end)

test("a promotion in the shared dictionary reaches people already in the room", function()
    local m = join { room = "stage-2", fingerprint = MOD }
    local a = join { room = "stage-2", fingerprint = ANN }
    local b = join { room = "stage-2", fingerprint = BEN }
    wzp.shared.set(speakers_key("stage-2"), ANN)
    expect_eq(role(a.id), "listener", "applied by the timer, not at once")
    advance(settings.apply_every_ms)
    expect_eq(role(a.id), "speaker")
    expect_eq(role(b.id), "listener")
    expect_eq(role(m.id), "speaker")
    -- both, comma-separated, upper case
    wzp.shared.set(speakers_key("stage-2"), ANN .. "," .. BEN:upper())
    advance(settings.apply_every_ms)
    expect_eq(role(b.id), "speaker")
    -- taken away: back to listener
    wzp.shared.set(speakers_key("stage-2"), BEN)
    advance(settings.apply_every_ms)
    expect_eq(role(a.id), "listener")
    expect_eq(role(b.id), "speaker")
    -- a promotion is per room
    local elsewhere = join { room = "stage-3", fingerprint = BEN }
    expect_eq(elsewhere.role, "listener")
    -- a promoted participant who joins later speaks at once
    leave(b.id)
    local again = join { room = "stage-2", fingerprint = BEN }
    expect_eq(again.role, "speaker")
    for _, id in ipairs { m.id, a.id, again.id, elsewhere.id } do
        leave(id)
    end
end)

test("promotions from the settings table", function()
    settings.speakers = { ["stage-4"] = { ANN } }
    local a = join { room = "stage-4", fingerprint = ANN }
    expect_eq(a.role, "speaker")
    settings.speakers = {}
    advance(settings.apply_every_ms)
    expect_eq(role(a.id), "listener")
    leave(a.id)
end)

test("wait_for_moderator refuses listeners until a moderator is in", function()
    settings.wait_for_moderator = true
    local early = join { room = "stage-5", fingerprint = ANN }
    expect_eq(early.allow, false)
    expect_eq(early.reason, "waiting for a moderator")
    local m = join { room = "stage-5", fingerprint = MOD }
    expect(m.allow, "a moderator may always join")
    local a = join { room = "stage-5", fingerprint = ANN }
    expect(a.allow)
    expect_eq(a.role, "listener")
    expect(join { room = "lobby", fingerprint = BEN }.allow, "only moderated rooms wait")
    settings.wait_for_moderator = false
    leave(m.id)
    leave(a.id)
end)

test("self_check refuses a mistyped moderator", function()
    settings.moderators = { "aaaa" }
    expect_eq(self_check(), false)
    settings.moderators = { MOD }
    expect(self_check())
end)
