-- understudy's script environment, run once per Lua VM (src/script/vm.rs).
-- It builds what Redis 7.0.15 gives a script around the libraries and the
-- `redis` table (made in Rust): Redis's pcall, read-only globals and tables
-- (Redis patches its Lua to have read-only tables; here they are proxies
-- whose writes fail with Redis's message). It also hides what would make
-- two replicas differ: addresses in tostring, the collector's figures.
-- Frames of this chunk are skipped when an error's position is reported.
local G, host, slot = ...

local error, type, select, tostring_, getmetatable_, setmetatable_ =
  error, type, select, tostring, getmetatable, setmetatable
local rawget_, rawset_, next_, pairs_, ipairs_ = rawget, rawset, next, pairs, ipairs
local pcall_, xpcall_, loadstring_, load_, collectgarbage_ = pcall, xpcall, loadstring, load, collectgarbage
local format, byte = string.format, string.byte
local over, unwrap = host.over, host.unwrap

-- Redis's own message, positioned at the code that did the write.
local function readonly() error("Attempt to modify a readonly table", 2) end

-- proxy -> the table it stands for
local real = {}
local function protect(t)
  local p = setmetatable_({}, { __index = t, __newindex = readonly })
  real[p] = t
  return p
end

-- Errors raised by the Rust functions (redis.call, math.random, ...)
-- travel as mlua's error objects; `unwrap` gives back the Lua value Redis
-- raises. Once the budget is spent, no pcall may swallow the error.
local function after(ok, ...)
  if ok then return ok, ... end
  if over() then error((...), 0) end
  return ok, unwrap((...))
end
-- Redis 7.0's pcall (luaRedisPcall) gives an error table's `err` instead
-- of the table.
local function err_of(ok, ...)
  if ok then return ok, ... end
  local e = ...
  if type(e) == 'table' then
    local msg = e.err
    local t = type(msg)
    if t == 'string' or t == 'number' then return false, msg end
  end
  return false, e
end
G.pcall = function(...) return err_of(after(pcall_(...))) end
G.xpcall = function(f, h) return after(xpcall_(f, function(e) return h(unwrap(e)) end)) end
local resume_ = coroutine.resume
coroutine.resume = function(...) return after(resume_(...)) end

-- Redis's Lua reads a binary chunk as text (and refuses it as such).
G.loadstring = function(s, name)
  if type(s) == 'string' and byte(s, 1) == 27 then return loadstring_(' ' .. s, name or s) end
  return loadstring_(s, name)
end
G.load = function(f, name)
  if type(f) ~= 'function' then return load_(f, name) end
  local first = true
  return load_(function()
    local piece = f()
    if first then
      first = false
      if type(piece) == 'string' and byte(piece, 1) == 27 then return ' ' .. piece end
    end
    return piece
  end, name or '=(load)')
end

-- Figures of this VM's collector differ between replicas.
G.gcinfo = function() return 0 end
G.collectgarbage = function(opt, arg)
  if opt == 'count' then return 0 end
  if opt == 'setpause' or opt == 'setstepmul' then return 200 end
  if opt == 'step' then collectgarbage_('step', arg) return true end
  return collectgarbage_(opt, arg)
end

-- tostring of a table, function, coroutine or userdata shows an address,
-- which differs between replicas: number them in order of first sight,
-- afresh for each script (slot.reset; the table only once a script asks).
local ids, nid
local weak_keys = { __mode = 'k' }
function slot.reset()
  ids, nid = nil, 0
end
G.tostring = function(...)
  local v = ...
  local t = type(v)
  if select('#', ...) > 0 and (t == 'table' or t == 'function' or t == 'thread' or t == 'userdata') then
    local mt = getmetatable_(v)
    if not (type(mt) == 'table' and rawget_(mt, '__tostring') ~= nil) then
      if not ids then ids = setmetatable_({}, weak_keys) end
      local id = ids[v]
      if not id then
        nid = nid + 1
        id = nid
        ids[v] = id
      end
      return format('%s: 0x%08x', t, id)
    end
  end
  return tostring_(...)
end

-- Raw access and iteration see through the proxies; raw writes fail as
-- Redis's do (without a position: the error is raised in C there).
G.rawset = function(t, k, v)
  if real[t] then error("Attempt to modify a readonly table", 0) end
  return rawset_(t, k, v)
end
G.rawget = function(t, k) return rawget_(real[t] or t, k) end
G.next = function(t, k) return next_(real[t] or t, k) end
G.pairs = function(t)
  if real[t] then return next_, real[t], nil end
  return pairs_(t)
end
G.ipairs = function(t) return ipairs_(real[t] or t) end
G.setmetatable = function(t, mt)
  if real[t] then error("Attempt to modify a readonly table", 0) end
  return setmetatable_(t, mt)
end

-- math.random and math.randomseed (rand48, replicated state) and the
-- redis table are Rust functions (vm.rs): a C function keeps its
-- caller's frame even in a tail call, so errors are positioned as Redis's.
G.redis = host.redis
G.__redis__err__handler = host.handler

-- What Redis 7.0.15 does not offer.
for _, name in ipairs_({ 'print', 'dofile', 'loadfile', 'getfenv', 'setfenv', 'newproxy', 'module', 'require', 'package', 'os', 'io', 'debug' }) do
  G[name] = nil
end

-- Read-only from here on: the libraries, the string metatable, the globals.
for _, name in ipairs_({ 'string', 'math', 'table', 'coroutine', 'redis' }) do
  G[name] = protect(G[name])
end
local strmeta = getmetatable_('')
strmeta.__index = G.string
local strmeta_view = protect(strmeta)
G.getmetatable = function(v)
  if type(v) == 'string' then return strmeta_view end
  if real[v] then return nil end
  return getmetatable_(v)
end

local globals = setmetatable_({}, {
  __index = function(_, k)
    local v = G[k]
    if v ~= nil then return v end
    local t = type(k)
    if t ~= 'string' and t ~= 'number' then
      error("Second argument to luaProtectedTableError must be a string or number", 2)
    end
    error("Script attempted to access nonexistent global variable '" .. k .. "'", 2)
  end,
  __newindex = readonly,
})
real[globals] = G
G._G = globals
return globals
