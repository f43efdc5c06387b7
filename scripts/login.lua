-- wrk script for scripts/load: POST /login with a fresh code per request,
-- taken from the file named by WXLOGIN_CODES. Each thread takes every
-- nth line, so no two requests share a code; a thread that runs out starts
-- again, and the reused codes show as non-2xx answers in wrk's report.
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

function init(args)
  local n = tonumber(os.getenv("WXLOGIN_THREADS"))
  codes = {}
  local i = 0
  for line in io.lines(os.getenv("WXLOGIN_CODES")) do
    if i % n == id then
      table.insert(codes, line)
    end
    i = i + 1
  end
  next_code = 1
end

function request()
  local code = codes[next_code]
  next_code = next_code % #codes + 1
  return wrk.format("POST", "/login", { ["Content-Type"] = "application/json" }, '{"code":"' .. code .. '"}')
end
