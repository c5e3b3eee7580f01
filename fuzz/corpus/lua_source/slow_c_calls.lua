-- Few instructions, each a costly C call: the time budget, not the instruction budget, ends it.
for i = 1, 1e9 do local _ = string.rep("#", 440000).i end
