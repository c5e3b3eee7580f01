-- init_worker: runs once in each worker after init. Each worker counts a heartbeat in the
-- shared dict every 100 ms, which /counter shows. When the engine is released the timer runs
-- once more with premature = true and stops.
local ok, err = ngx.timer.every(0.1, function(premature)
  if not premature then
    ngx.shared.counters:incr("ticks", 1, 0)
  end
end)
if not ok then
  ngx.log(ngx.ERR, "failed to start the heartbeat: ", err)
end
