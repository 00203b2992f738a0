-- qualitycap_test.lua - tests of policies/qualitycap.lua:
--   wzp-relay --test-policy policies/qualitycap.lua policies/tests/qualitycap_test.lua
--
-- quality{...} calls on_quality with a report and returns two tiers: what on_quality
-- returned, and the tier the relay would use (that, under the max_tier from on_join).

local PERFECT = { loss_pct = 0, rtt_ms = 10 } -- the controller says Studio64k

local function report(id, r)
    return quality { id = id, loss_pct = r.loss_pct, rtt_ms = r.rtt_ms }
end

test("a capped room gets max_tier at join", function()
    local d = join { room = "lobby-1" }
    expect(d.allow)
    expect_eq(d.max_tier, "Good")
    expect_eq(d.role, "speaker")
    expect_eq(join { room = "mobile-x" }.max_tier, "Degraded")
    expect_eq(participant(join { room = "mobile-y" }.id).tier, "Degraded",
        "the relay starts the participant under its cap")
end)

test("other rooms are not capped", function()
    local d = join { room = "studio" }
    expect_eq(d.max_tier, nil)
    expect_eq({ report(d.id, PERFECT) }, { "Studio64k", "Studio64k" })
end)

test("on_quality caps a better tier and keeps a worse one", function()
    local d = join { room = "lobby-2" }
    expect_eq({ report(d.id, PERFECT) }, { "Good", "Good" })
    expect_eq({ report(d.id, { loss_pct = 20 }) }, { "Catastrophic", "Catastrophic" },
        "a cap never raises a tier")
    expect_eq({ report(d.id, { loss_pct = 6 }) }, { "Degraded", "Degraded" })
end)

test("a cap changed by a reload reaches earlier joiners at their next tier change", function()
    local d = join { room = "hall" } -- no cap when it joined
    expect_eq(d.max_tier, nil)
    settings.default_max_tier = "Studio32k" -- as if the policy was reloaded
    expect_eq({ report(d.id, PERFECT) }, { "Studio32k", "Studio32k" })
    settings.default_max_tier = nil
end)

test("the first matching entry wins", function()
    settings.caps = {
        { room = "lobby-vip", max_tier = "Studio64k" },
        { room = "lobby-*", max_tier = "Good" },
    }
    expect_eq(cap_for("lobby-vip"), "Studio64k")
    expect_eq(cap_for("lobby-1"), "Good")
    expect_eq(cap_for("lobbyist"), nil)
end)

test("self_check refuses unknown tiers", function()
    settings.caps = { { room = "x", max_tier = "HD" } }
    expect_eq(self_check(), false)
    settings.caps = {}
    settings.default_max_tier = "good"
    expect_eq(self_check(), false, "tier names are case-sensitive")
    settings.default_max_tier = nil
    expect(self_check())
end)
