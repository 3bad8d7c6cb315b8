-- Sends each request with the next token of a file: a bearer header, or a refresh body.
-- wrk -s tokens.lua URL -- <token file> <bearer|refresh>
local tokens = {}
local index = 0
local mode = "bearer"

function init(args)
  for line in io.lines(args[1]) do
    tokens[#tokens + 1] = line
  end
  mode = args[2] or "bearer"
end

function request()
  index = index + 1
  local token = tokens[((index - 1) % #tokens) + 1]
  if mode == "refresh" then
    local body = '{"refresh_token":"' .. token .. '"}'
    return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
  end
  return wrk.format("GET", nil, {["Authorization"] = "Bearer " .. token})
end
