-- default_test.lua - tests of policies/default.lua (upstream behaviour):
--   wzp-relay --test-policy policies/default.lua policies/tests/default_test.lua

test("every connection is admitted", function()
    local c = connect { addr = "192.0.2.1:1", sni = "lobby" }
    expect_eq(c, { allow = true })
    expect(connect { addr = "[2001:db8::1]:1" }.allow, "also without a server name")
end)

test("every join is admitted as a speaker without a cap", function()
    for i = 1, 3 do
        local d = join { room = "lobby", alias = "user" .. i }
        expect(d.allow)
        expect_eq(d.role, "speaker")
        expect_eq(d.max_tier, nil)
        expect_eq(participant(d.id).tier, "Good", "the relay starts everyone at Good")
    end
    expect_eq(wzp.rooms(), { { name = "lobby", size = 3 } })
end)

test("the computed quality tier stands", function()
    local d = join { room = "q" }
    expect_eq({ quality { id = d.id, rtt_ms = 10 } }, { "Studio64k", "Studio64k" })
    expect_eq({ quality { id = d.id, loss_pct = 20 } }, { "Catastrophic", "Catastrophic" })
end)

test("nothing happens on its own", function()
    local d = join { room = "idle" }
    advance(60000)
    expect_eq(participant(d.id).role, "speaker")
    expect_eq(kicked(d.id), nil)
    expect_eq(directives(), {})
end)
