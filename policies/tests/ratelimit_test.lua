-- ratelimit_test.lua - tests of policies/ratelimit.lua:
--   wzp-relay --test-policy policies/ratelimit.lua policies/tests/ratelimit_test.lua
--
-- Every test uses addresses and fingerprints of its own: the counters live in the shared
-- dictionary, which (like in the relay) outlives any one call.

local function fp(n)
    return string.format("0000:0000:0000:0000:0000:0000:0000:%04x", n)
end

local function small_limits()
    settings.window_s = 10
    settings.connects_per_ip = 3
    settings.joins_per_ip = 3
    settings.joins_per_fingerprint = 2
    settings.ipv6_prefix = 64
end

test("the shipped settings load and pass self_check", function()
    expect(self_check())
    expect(connect { addr = "198.51.100.1:1000" }.allow)
    expect(join { room = "r", addr = "198.51.100.1:1000", fingerprint = fp(1) }.allow)
end)

test("connections per address: limit, reason, window end", function()
    small_limits()
    for i = 1, 3 do
        expect(connect { addr = "203.0.113.1:" .. (5000 + i) }.allow, "connection " .. i)
    end
    local c = connect { addr = "203.0.113.1:6000" }
    expect_eq(c.allow, false)
    expect_eq(c.reason, "too many connections from your address; retry in 10 s")
    expect(connect { addr = "203.0.113.2:6000" }.allow, "another address has its own budget")
    advance(4000)
    expect_eq(connect { addr = "203.0.113.1:6001" }.reason,
        "too many connections from your address; retry in 6 s")
    advance(6000)
    expect(connect { addr = "203.0.113.1:6002" }.allow, "a new window")
end)

test("refused attempts do not extend the window", function()
    small_limits()
    for _ = 1, 3 do
        connect { addr = "203.0.113.3:1" }
    end
    for _ = 1, 20 do
        advance(400) -- hammering for 8 s
        expect(not connect { addr = "203.0.113.3:1" }.allow)
    end
    advance(2000)
    expect(connect { addr = "203.0.113.3:1" }.allow)
end)

test("joins per address count every port and every fingerprint", function()
    small_limits()
    for i = 1, 3 do
        local d = join { room = "r", addr = "203.0.113.10:" .. (7000 + i), fingerprint = fp(100 + i) }
        expect(d.allow, "join " .. i)
    end
    local d = join { room = "r", addr = "203.0.113.10:8000", fingerprint = fp(200) }
    expect_eq(d.allow, false)
    expect_eq(d.reason, "too many joins from your address; retry in 10 s")
    expect_eq(wzp.shared.get("rl:join:203.0.113.10"), 4, "the counter is in wzp.shared")
end)

test("joins per fingerprint count every address", function()
    small_limits()
    expect(join { room = "r", addr = "203.0.113.20:1", fingerprint = fp(300) }.allow)
    expect(join { room = "r", addr = "203.0.113.21:1", fingerprint = fp(300) }.allow)
    local d = join { room = "r", addr = "203.0.113.22:1", fingerprint = fp(300) }
    expect_eq(d.allow, false)
    expect_eq(d.reason, "too many joins with this identity; retry in 10 s")
    expect(join { room = "r", addr = "203.0.113.22:1", fingerprint = fp(301) }.allow)
end)

test("IPv6 clients are counted per /64", function()
    small_limits()
    expect(connect { addr = "[2001:db8:1:2::1]:5000" }.allow)
    expect(connect { addr = "[2001:db8:1:2:ffff::9]:5000" }.allow)
    expect(connect { addr = "[2001:db8:1:2:1:2:3:4]:5000" }.allow)
    expect(not connect { addr = "[2001:db8:1:2::77]:5000" }.allow, "same /64")
    expect(connect { addr = "[2001:db8:1:3::1]:5000" }.allow, "another /64")
    settings.ipv6_prefix = 128
    expect(connect { addr = "[2001:db8:1:2::77]:5000" }.allow, "per address at /128")
end)

test("client keys", function()
    small_limits()
    expect_eq(client_key("192.0.2.1:4433"), "192.0.2.1")
    expect_eq(client_key("[::ffff:192.0.2.1]:4433"), "192.0.2.1", "IPv4-mapped")
    expect_eq(client_key("[2001:DB8::1]:1"), "2001:db8:0:0::/64")
    expect_eq(client_key("[::1]:1"), "0:0:0:0::/64")
    expect_eq(client_key("[2001:db8:a:b:c:d:e:f]:1"), "2001:db8:a:b::/64")
    expect_eq(client_key("[64:ff9b::192.0.2.1]:1"), "64:ff9b:0:0::/64", "embedded IPv4")
    settings.ipv6_prefix = 48
    expect_eq(client_key("[2001:db8:a:b::1]:1"), "2001:db8:a::/48")
    settings.ipv6_prefix = 128
    expect_eq(client_key("[2001:db8::1]:1"), "2001:db8::1")
end)

test("exempt addresses are never limited", function()
    small_limits()
    for _ = 1, 10 do
        expect(connect { addr = "127.0.0.1:1" }.allow)
        expect(join { room = "r", addr = "[::1]:2", fingerprint = fp(400) }.allow)
    end
end)

test("a limit of 0 turns it off", function()
    small_limits()
    settings.connects_per_ip = 0
    for _ = 1, 10 do
        expect(connect { addr = "203.0.113.30:1" }.allow)
    end
end)

test("self_check refuses bad settings", function()
    small_limits()
    settings.ipv6_prefix = 60
    expect_eq(self_check(), false)
    small_limits()
    settings.window_s = 0
    expect_eq(self_check(), false)
    small_limits()
    expect(self_check())
end)

-- Keep last: it fills the shared dictionary.
test("a full shared dictionary fails open", function()
    small_limits()
    local i = 0
    while pcall(wzp.shared.set, "filler:" .. i, true) do
        i = i + 1
    end
    for _ = 1, 5 do
        expect(connect { addr = "203.0.113.40:1" }.allow, "not counted, allowed")
    end
end)
