-- acl_test.lua - tests of policies/acl.lua:
--   wzp-relay --test-policy policies/acl.lua policies/tests/acl_test.lua
--
-- Each test sets the lists it needs (assigning new tables; the policy reads `settings`
-- at every call) and puts them back with reset().

local ALICE = "aaaa:0000:0000:0000:0000:0000:0000:0001"
local BOB = "bbbb:0000:0000:0000:0000:0000:0000:0002"
local MALLORY = "dead:beef:0000:0000:0000:0000:0000:0003"

local function reset()
    settings.allow_fingerprints = {}
    settings.deny_fingerprints = {}
    settings.allow_rooms = {}
    settings.deny_rooms = {}
    settings.private_rooms = {}
end

test("the shipped settings restrict nothing", function()
    expect(connect { sni = "anything" }.allow)
    expect(join { room = "anything", fingerprint = MALLORY }.allow)
    expect(self_check())
end)

test("denied fingerprint is refused with a reason; others join as speakers", function()
    reset()
    settings.deny_fingerprints = { MALLORY }
    local d = join { room = "lobby", fingerprint = MALLORY }
    expect_eq(d.allow, false)
    expect_eq(d.reason, "fingerprint is denied")
    expect_eq(participant(d.id), nil, "a refused join adds nobody")
    local a = join { room = "lobby", fingerprint = ALICE }
    expect(a.allow)
    expect_eq(a.role, "speaker")
end)

test("fingerprints compare without regard to case", function()
    reset()
    settings.deny_fingerprints = { MALLORY:upper() }
    expect(not join { room = "lobby", fingerprint = MALLORY }.allow)
end)

test("an allowlist admits only its fingerprints", function()
    reset()
    settings.allow_fingerprints = { ALICE }
    expect(join { room = "lobby", fingerprint = ALICE }.allow)
    local d = join { room = "lobby", fingerprint = BOB }
    expect_eq(d.allow, false)
    expect_eq(d.reason, "fingerprint is not on the allowlist")
end)

test("the denylist wins over the allowlist", function()
    reset()
    settings.allow_fingerprints = { ALICE, MALLORY }
    settings.deny_fingerprints = { MALLORY }
    expect(not join { room = "lobby", fingerprint = MALLORY }.allow)
    expect(join { room = "lobby", fingerprint = ALICE }.allow)
end)

test("denied rooms are refused at connect and at join, by pattern", function()
    reset()
    settings.deny_rooms = { "secret", "tmp-*" }
    for _, room in ipairs { "secret", "tmp-1", "tmp-" } do
        local c = connect { sni = room }
        expect_eq(c.allow, false, room)
        expect_eq(c.reason, "room " .. room .. " is closed")
        expect(not join { room = room, fingerprint = ALICE }.allow, room)
    end
    expect(connect { sni = "secrets" }.allow, "patterns are anchored")
    expect(connect { sni = "xtmp-1" }.allow, "patterns are anchored")
    expect(join { room = "secrets", fingerprint = ALICE }.allow)
end)

test("pattern characters other than * and ? are literal", function()
    reset()
    settings.deny_rooms = { "a.b", "x?" }
    expect(not connect { sni = "a.b" }.allow)
    expect(connect { sni = "axb" }.allow, "'.' is a dot, not any character")
    expect(not connect { sni = "x1" }.allow)
    expect(connect { sni = "x12" }.allow, "'?' is exactly one character")
end)

test("room patterns: '*' any run, '?' one character, case-insensitive", function()
    local glob = require("glob")
    local cases = {
        { "team-*", "team-", true }, { "team-*", "team-red", true }, { "team-*", "team", false },
        { "*-red", "team-red", true }, { "a*b*c", "abc", true }, { "a*b*c", "axxbyyc", true },
        { "a*b*c", "axxbyy", false }, { "?", "", false }, { "??", "ab", true },
        { "*", "", true }, { "Team-*", "team-x", true }, { "a%d", "a%d", true },
        { "a%d", "a1", false }, { "[x]", "[x]", true }, { "a.b", "axb", false },
    }
    for _, c in ipairs(cases) do
        expect_eq(glob.match(c[1], c[2]), c[3], c[1] .. " vs " .. c[2])
    end
end)

test("a many-star pattern against a long hostile room name stays cheap", function()
    reset()
    settings.deny_rooms = { "*a*a*a*a*a*b" }
    local name = string.rep("a", 253) -- the longest server name
    local t0 = os.clock()
    expect(connect { sni = name }.allow)
    expect(os.clock() - t0 < 0.05, "took " .. (os.clock() - t0) .. " s")
end)

test("an allow_rooms list closes every other room, but not ping/version", function()
    reset()
    settings.allow_rooms = { "team-*" }
    expect(connect { sni = "team-red" }.allow)
    local c = connect { sni = "other" }
    expect_eq(c.allow, false)
    expect_eq(c.reason, "room other is not served here")
    expect(connect { sni = "ping" }.allow, "the relay answers ping itself")
    expect(connect { sni = "version" }.allow, "the relay answers version itself")
    expect(not connect {}.allow, "no server name means room 'default'")
    expect(not join { room = "other", fingerprint = ALICE }.allow)
    expect(join { room = "team-red", fingerprint = ALICE }.allow)
end)

test("private rooms admit their members only", function()
    reset()
    settings.allow_fingerprints = { BOB }
    settings.private_rooms = { ["board-*"] = { ALICE } }
    expect(join { room = "board-1", fingerprint = ALICE }.allow,
        "a member needs no place on allow_fingerprints")
    local d = join { room = "board-1", fingerprint = BOB }
    expect_eq(d.allow, false)
    expect_eq(d.reason, "room board-1 is private")
    expect(join { room = "lobby", fingerprint = BOB }.allow)
    expect(not join { room = "lobby", fingerprint = ALICE }.allow, "outside, the allowlist applies")
end)

test("self_check refuses a mistyped fingerprint", function()
    reset()
    settings.deny_fingerprints = { "dead:beef" }
    local ok, why = self_check()
    expect_eq(ok, false)
    expect(why:find("deny_fingerprints%[1%]"), why)
    reset()
    settings.private_rooms = { ["board"] = { "nope" } }
    expect_eq(self_check(), false)
    reset()
    expect(self_check())
end)
