-- Requests the paths listed in the file named by the environment variable PATHS (one per line),
-- each thread starting at a different line and going round: one query shape over many patients,
-- so the figures are not those of one cached row.
local paths = {}
for line in io.lines(os.getenv("PATHS")) do
  if #line > 0 then paths[#paths + 1] = line end
end
local next_index = 1
local counter = 0

setup = function(thread)
  counter = counter + 1
  thread:set("next_index", (counter * 7919) % #paths + 1)
end

request = function()
  local path = paths[next_index]
  next_index = next_index % #paths + 1
  return wrk.format("GET", path)
end
