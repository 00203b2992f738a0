-- calls_test.lua - tests of policies/calls.lua:
--   wzp-relay --test-policy policies/calls.lua policies/tests/calls_test.lua

local function fp(n)
    return string.format("0000:0000:0000:0000:0000:0000:0000:%04x", n)
end

test("the shipped settings let anyone register and call", function()
    expect(self_check())
    expect(register { fingerprint = fp(1) }.allow)
    expect(call { caller = fp(1), callee = fp(2) }.allow)
end)

test("a directory admits only its members, in both directions", function()
    settings.directory = { fp(1), fp(2):upper() }
    expect(self_check())
    expect(register { fingerprint = fp(2) }.allow, "listed, case ignored")
    local r = register { fingerprint = fp(3) }
    expect_eq(r.allow, false)
    expect_eq(r.reason, "not in this relay's directory")
    expect(call { caller = fp(1), callee = fp(2) }.allow)
    expect_eq(call { caller = fp(1), callee = fp(3) }.reason,
        "the callee is not in this relay's directory")
    expect_eq(call { caller = fp(3), callee = fp(1) }.allow, false)
end)

test("signed registrations only", function()
    settings.directory = {}
    settings.require_signed = true
    expect_eq(register { fingerprint = fp(4) }.reason, "this relay requires a signed registration")
    expect(register { fingerprint = fp(4), signed = true }.allow)
    expect(register { fingerprint = fp(4), authenticated = true }.allow)
end)

test("calls per minute, per caller", function()
    settings.directory = {}
    settings.calls_per_minute = 3
    for i = 1, 3 do
        expect(call { caller = fp(10), callee = fp(11) }.allow, "call " .. i)
    end
    local c = call { caller = fp(10), callee = fp(12) }
    expect_eq(c.allow, false)
    expect_eq(c.reason, "too many calls; retry in 60 s")
    expect(call { caller = fp(13), callee = fp(10) }.allow, "another caller has its own count")
    advance(60000)
    expect(call { caller = fp(10), callee = fp(11) }.allow, "a new minute")
end)

test("self_check refuses a malformed directory", function()
    settings.directory = { "alice" }
    local ok, why = self_check()
    expect_eq(ok, false)
    expect_eq(why, "directory entry 1 is not a fingerprint (8 groups of 4 hex digits)")
end)
