-- glob.lua - room-name patterns for policies: local glob = require("glob")
--
--   glob.match("team-*", "team-red")  --> true
--   glob.any("x", { "a*", "x" })       --> "x" (the first pattern that matches), or nil
--
-- '*' matches any run of characters (also none), '?' exactly one character, every other
-- character itself; the whole name must match; case does not matter. Matching takes at
-- most (pattern length x name length) steps whatever the pattern, unlike Lua patterns
-- such as ".-.-.-b" that backtrack for seconds on a few hundred characters inside one
-- C call, where the policy time budget cannot interrupt them (room names come from
-- clients).

local M = {}

local STAR, QUESTION = ("*"):byte(), ("?"):byte()
local byte, lower = string.byte, string.lower

function M.match(pattern, name)
    pattern, name = lower(pattern), lower(name)
    local p, n = 1, 1
    local plen, nlen = #pattern, #name
    local star, resume = nil, 0 -- the last '*' seen, and where its match would grow
    while n <= nlen do
        local c = byte(pattern, p)
        if c == STAR then
            star, resume = p, n
            p = p + 1
        elseif c ~= nil and (c == QUESTION or c == byte(name, n)) then
            p, n = p + 1, n + 1
        elseif star then -- let the last '*' take one more character
            resume = resume + 1
            p, n = star + 1, resume
        else
            return false
        end
    end
    while byte(pattern, p) == STAR do
        p = p + 1
    end
    return p > plen
end

function M.any(name, patterns)
    for _, pattern in ipairs(patterns) do
        if M.match(pattern, name) then
            return pattern
        end
    end
    return nil
end

return M
