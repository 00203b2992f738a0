-- breakout_test.lua - tests of policies/breakout.lua:
--   wzp-relay --test-policy policies/breakout.lua policies/tests/breakout_test.lua
-- Every test uses a room of its own: the counters live in the shared dictionary.

local function fp(n)
    return string.format("0000:0000:0000:0000:0000:0000:0000:%04x", n)
end

test("participants go round the groups; the host reaches and hears every group", function()
    expect(self_check())
    settings.groups = 2
    settings.hosts = { fp(1) }
    settings.duration_s = 60
    local host = join { room = "workshop-a", fingerprint = fp(1) }.id
    local a = join { room = "workshop-a", fingerprint = fp(2) }.id
    local b = join { room = "workshop-a", fingerprint = fp(3) }.id
    local c = join { room = "workshop-a", fingerprint = fp(4) }.id
    expect_eq(participant(a).sends, "group-1")
    expect_eq(participant(b).sends, "group-2")
    expect_eq(participant(c).hears, "group-1")
    expect_eq(deliveries(a), { host, c }, "group-1 and the host")
    expect_eq(deliveries(b), { host })
    expect_eq(deliveries(host), { a, b, c }, "the host reaches every group")
end)

test("the breakout ends on time and everyone hears everyone", function()
    settings.groups = 2
    settings.hosts = {}
    settings.duration_s = 10
    local a = join { room = "workshop-b", fingerprint = fp(2) }.id
    local b = join { room = "workshop-b", fingerprint = fp(3) }.id
    expect_eq(deliveries(a), {}, "different groups")
    advance(9000)
    expect_eq(deliveries(a), {}, "not yet")
    advance(2000)
    expect_eq(deliveries(a), { b }, "back together, without a rejoin")
    expect_eq(participant(b).hears, "*")
    local late = join { room = "workshop-b", fingerprint = fp(5) }.id
    expect_eq(participant(late).sends, "room", "a late joiner joins the whole room")
    expect_eq(deliveries(late), { a, b })
end)

test("rooms not matching are left alone", function()
    local x = join { room = "lobby", fingerprint = fp(7) }.id
    local y = join { room = "lobby", fingerprint = fp(8) }.id
    expect_eq(deliveries(x), { y })
end)

test("self_check refuses a bad group count", function()
    settings.groups = 0
    local ok, why = self_check()
    expect_eq(ok, false)
    expect_eq(why, "groups must be a whole number from 1 to 16")
end)
