-- stage_test.lua - tests of policies/stage.lua:
--   wzp-relay --test-policy policies/stage.lua policies/tests/stage_test.lua

local function fp(n)
    return string.format("0000:0000:0000:0000:0000:0000:0000:%04x", n)
end

local function setup()
    settings.rooms = { "town-hall" }
    settings.stage = { fp(1), fp(2) }
    settings.moderators = { fp(9) }
    local ids = {}
    ids.s1 = join { room = "town-hall", fingerprint = fp(1) }.id
    ids.s2 = join { room = "town-hall", fingerprint = fp(2) }.id
    ids.mod = join { room = "town-hall", fingerprint = fp(9) }.id
    ids.a1 = join { room = "town-hall", fingerprint = fp(20) }.id
    ids.a2 = join { room = "town-hall", fingerprint = fp(21) }.id
    return ids
end

test("the audience hears only the stage; the stage and moderators hear all speakers", function()
    expect(self_check())
    local ids = setup()
    expect_eq(deliveries(ids.s1), { ids.s2, ids.mod, ids.a1, ids.a2 }, "stage reaches everyone")
    expect_eq(deliveries(ids.mod), { ids.s1, ids.s2 }, "moderator cues: stage only")
    expect_eq(deliveries(ids.a1), {}, "the audience is not forwarded")
    local a = participant(ids.a1)
    expect_eq(a.role, "listener")
    expect_eq(a.hears, "stage")
    expect_eq(participant(ids.mod).sends, "moderators")
    expect_eq(participant(ids.s1).hears, "*")
end)

test("other rooms are left alone", function()
    settings.rooms = { "town-hall" }
    local x = join { room = "lobby", fingerprint = fp(30) }
    local y = join { room = "lobby", fingerprint = fp(31) }
    expect_eq(x.role, "speaker")
    expect_eq(deliveries(x.id), { y.id })
    expect_eq(participant(x.id).sends, "room")
end)

test("self_check refuses a malformed list", function()
    settings.stage = "everyone"
    local ok, why = self_check()
    expect_eq(ok, false)
    expect_eq(why, "stage must be a list")
end)
