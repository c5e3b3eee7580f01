-- A counter shared by every worker (ngx.shared.counters is declared in site.json), how many
-- /hello requests the log phase has seen, and the heartbeats of the init_worker timers.
local counters = ngx.shared.counters
local hits = counters:incr("hits", 1, 0)
ngx.say("hits: ", hits)
ngx.say("hello logged: ", counters:get("hello_logged") or 0)
ngx.say("ticks: ", counters:get("ticks") or 0)
