-- ratelimit.lua - limit how often one client address, and one identity (fingerprint),
-- may connect and join.
--
-- Counting: fixed windows in the relay's shared dictionary (wzp.shared), which every
-- worker sees and which survives a policy reload. The first event of a key creates a
-- counter that expires window_s later; every event adds 1; an event that takes the
-- counter over its limit is refused, with the seconds left until the window ends.
-- Refused attempts count too, so a client that keeps hammering stays refused until its
-- window ends (it cannot extend it).
--
-- Three limits, each 0 = off:
--   connects_per_ip        in on_connect, from the ClientHello: before any key exchange,
--                          so refusing costs the relay almost nothing. The address is
--                          not validated yet at that point (the relay has no QUIC Retry
--                          yet), so a spoofer could spend another address's budget:
--                          keep this limit generous.
--   joins_per_ip           in on_join, after the handshake (the address is real).
--   joins_per_fingerprint  in on_join: one identity reconnecting in a loop from many
--                          addresses.
-- IPv6 clients are counted per prefix (ipv6_prefix bits, /64 by default: one subscriber
-- usually has a whole /64, so counting single addresses would be no limit at all).
-- IPv4-mapped IPv6 addresses ([::ffff:192.0.2.1]:port, seen when the relay listens on
-- [::]) count as the IPv4 address.
--
-- If the shared dictionary is full, the limits fail open (the event is allowed, a
-- warning is logged at most once per window): a rate limiter must not lock everyone out.
--
-- Try it: wzp-relay --check policies/ratelimit.lua
--         wzp-relay --test-policy policies/ratelimit.lua policies/tests/ratelimit_test.lua

-----------------------------------------------------------------------------------------
-- SETTINGS: edit these, then `wzp-relay --check` the file and send the relay SIGHUP.
-----------------------------------------------------------------------------------------
settings = {
    window_s = 60, -- length of a counting window, in seconds

    connects_per_ip = 120, -- QUIC connections per address per window (0 = no limit)
    joins_per_ip = 30, -- room joins per address per window (0 = no limit)
    joins_per_fingerprint = 10, -- room joins per identity per window (0 = no limit)

    ipv6_prefix = 64, -- count IPv6 clients per /N: 16, 32, 48, 64, 80, 96, 112 or 128

    -- Addresses never limited (exact, without port; e.g. a monitoring host).
    exempt = { "127.0.0.1", "::1" },
}
-----------------------------------------------------------------------------------------

-- "192.0.2.1:4433" -> "192.0.2.1", false;  "[2001:db8::1]:4433" -> "2001:db8::1", true.
local function split_addr(addr)
    local v6 = addr:match("^%[(.*)%]:%d+$")
    if v6 then
        local v4 = v6:lower():match("^::ffff:(%d+%.%d+%.%d+%.%d+)$")
        if v4 then
            return v4, false
        end
        return v6:lower(), true
    end
    return addr:match("^(.*):%d+$") or addr, false
end

-- The 8 groups of an IPv6 address as numbers; nil if it does not parse.
local function v6_groups(text)
    local function groups(s)
        local t = {}
        if s == "" then
            return t
        end
        for part in (s .. ":"):gmatch("([^:]*):") do
            local a, b, c, d = part:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
            if a then -- a dotted IPv4 tail
                t[#t + 1] = tonumber(a) * 256 + tonumber(b)
                t[#t + 1] = tonumber(c) * 256 + tonumber(d)
            elseif part:match("^%x%x?%x?%x?$") then
                t[#t + 1] = tonumber(part, 16)
            else
                return nil
            end
        end
        return t
    end
    local head, tail = text:match("^(.-)::(.*)$")
    if not head then
        local g = groups(text)
        return g and #g == 8 and g or nil
    end
    local h, t = groups(head), groups(tail)
    if not h or not t or #h + #t > 7 then
        return nil
    end
    for _ = 1, 8 - #h - #t do
        h[#h + 1] = 0
    end
    for _, x in ipairs(t) do
        h[#h + 1] = x
    end
    return h
end

-- The key one client address is counted under: the IPv4 address, or the IPv6 prefix.
function client_key(addr)
    local ip, is_v6 = split_addr(addr)
    if not is_v6 or settings.ipv6_prefix >= 128 then
        return ip
    end
    local g = v6_groups(ip)
    if not g then
        return ip -- unparsable: count it as it is
    end
    local out = {}
    for i = 1, settings.ipv6_prefix / 16 do
        out[i] = string.format("%x", g[i])
    end
    return table.concat(out, ":") .. "::/" .. settings.ipv6_prefix
end

local function is_exempt(addr)
    local ip = split_addr(addr)
    for _, e in ipairs(settings.exempt) do
        if e:lower() == ip then
            return true
        end
    end
    return false
end

local warned_until = 0

-- Count one event under key; nil if within limit, else the seconds until it resets.
local function over_limit(key, limit)
    if limit <= 0 then
        return nil
    end
    local ok, n = pcall(wzp.shared.incr, key, 1, 0, settings.window_s)
    if not ok then -- the dictionary is full: fail open
        if wzp.now_ms() >= warned_until then
            wzp.log("warn", "ratelimit: not counting (" .. tostring(n) .. ")")
            warned_until = wzp.now_ms() + settings.window_s * 1000
        end
        return nil
    end
    if n <= limit then
        return nil
    end
    local ttl = wzp.shared.ttl(key) or settings.window_s
    return math.max(1, math.ceil(ttl))
end

function on_connect(c)
    if is_exempt(c.addr) then
        return true
    end
    local wait = over_limit("rl:connect:" .. client_key(c.addr), settings.connects_per_ip)
    if wait then
        return false, "too many connections from your address; retry in " .. wait .. " s"
    end
    return true
end

function on_join(j)
    if is_exempt(j.addr) then
        return true
    end
    local wait = over_limit("rl:join:" .. client_key(j.addr), settings.joins_per_ip)
    if wait then
        return false, "too many joins from your address; retry in " .. wait .. " s"
    end
    wait = over_limit("rl:fp:" .. j.fingerprint:lower(), settings.joins_per_fingerprint)
    if wait then
        return false, "too many joins with this identity; retry in " .. wait .. " s"
    end
    return true
end

function self_check()
    if type(settings.window_s) ~= "number" or settings.window_s <= 0 then
        return false, "window_s must be a positive number of seconds"
    end
    for _, k in ipairs { "connects_per_ip", "joins_per_ip", "joins_per_fingerprint" } do
        if type(settings[k]) ~= "number" or settings[k] < 0 then
            return false, k .. " must be a number >= 0 (0 = no limit)"
        end
    end
    local p = settings.ipv6_prefix
    if type(p) ~= "number" or p < 16 or p > 128 or p % 16 ~= 0 then
        return false, "ipv6_prefix must be one of 16, 32, ..., 128"
    end
    if type(settings.exempt) ~= "table" then
        return false, "exempt must be a list of addresses"
    end
    return true
end
