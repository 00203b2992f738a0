-- routed.lua - the benchmark's "routing table in every room": every participant is
-- routed (half send into "a", half into "b", all hear both), so every receiver still gets
-- every speaker and the traffic is that of the default, but the fan-out tests the routing
-- masks of a routed room. tests/bench/run.sh --relay-arg=-s --relay-arg=tests/bench/routed.lua
local n = 0

function on_join(j)
    n = n + 1
    return { sends = { n % 2 == 0 and "a" or "b" }, hears = { "a", "b" } }
end
