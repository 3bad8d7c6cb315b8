-- Builds every request of a scenario from a file, one entry a line, taken in turn.
--
--   wrk -s requests.lua URL -- <entries> <mode> [<cursors> <query parameter>]
--
-- An entry is "<user id> <token>" or a bare token. Modes:
--   bearer   GET the URL with "Authorization: Bearer <token>"
--   anonymous  GET the URL with no Authorization header (entries are only counted)
--   refresh  POST {"refresh_token": <token>}, from an address of its own (X-Forwarded-For)
--   patch    PATCH /api/v1/users/<user id> {"nickname": ...} as that user, a new name each time
--   list     GET the URL plus "<parameter>=<cursor>", the cursor picked at random per request
local entries = {}
local cursors = {}
local index = 0
local mode = "bearer"
local parameter = "cursor"

function init(args)
  for line in io.lines(args[1]) do
    if line ~= "" then
      local id, token = line:match("^(%S+) (%S+)$")
      entries[#entries + 1] = { id = id, token = token or line }
    end
  end
  mode = args[2] or "bearer"
  if mode == "list" then
    for line in io.lines(args[3]) do
      if line ~= "" then
        cursors[#cursors + 1] = line
      end
    end
    parameter = args[4] or "cursor"
    math.randomseed(os.time())
  end
end

local function escape(value)
  return (value:gsub("[^%w%-%._~]", function(c)
    return string.format("%%%02X", string.byte(c))
  end))
end

function request()
  index = index + 1
  local position = ((index - 1) % #entries) + 1
  local entry = entries[position]
  if mode == "refresh" then
    -- Each token is a client of its own, so a per-address limit sees many clients, as live.
    local address = string.format("10.%d.%d.%d", math.floor(position / 65536) % 256,
      math.floor(position / 256) % 256, position % 256)
    local headers = { ["Content-Type"] = "application/json", ["X-Forwarded-For"] = address }
    return wrk.format("POST", nil, headers, '{"refresh_token":"' .. entry.token .. '"}')
  end
  if mode == "anonymous" then
    return wrk.format("GET", nil, {})
  end
  local headers = { ["Authorization"] = "Bearer " .. entry.token }
  if mode == "patch" then
    headers["Content-Type"] = "application/json"
    local body = '{"nickname":"bench ' .. index .. '"}'
    return wrk.format("PATCH", "/api/v1/users/" .. entry.id, headers, body)
  end
  if mode == "list" then
    local cursor = cursors[math.random(#cursors)]
    local separator = wrk.path:find("?", 1, true) and "&" or "?"
    return wrk.format("GET", wrk.path .. separator .. parameter .. "=" .. escape(cursor), headers)
  end
  return wrk.format("GET", nil, headers)
end
