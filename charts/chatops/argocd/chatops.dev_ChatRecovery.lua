-- Argo CD health check for chatops.dev/ChatRecovery.
--
-- Argo CD runs it with the resource in the global `obj`, in gopher-lua (Lua 5.1) with only
-- the base, table and os libraries loaded: no string or math library here.
--
-- A ChatRecovery runs once:
--   Succeeded                      -> Healthy
--   Failed                         -> Degraded    (with the step that failed and why)
--   Pending .. Resuming            -> Progressing (with the step running)
--   status older than the spec     -> Progressing the operator has not looked at it yet
--   condition Accepted=False       -> Degraded    the spec cannot be acted on

local function condition(status, kind)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function text(value, default)
  if value == nil or value == "" then
    return default
  end
  return tostring(value)
end

local function step_in(status, state)
  if status.steps == nil then
    return nil
  end
  for _, s in ipairs(status.steps) do
    if s.state == state then
      return s
    end
  end
  return nil
end

local hs = {}
local status = obj.status
if status == nil or status.observedGeneration == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe the spec"
  return hs
end

local observed = tonumber(status.observedGeneration)
local generation = tonumber(obj.metadata.generation)
if observed ~= nil and generation ~= nil and observed < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe the spec (generation "
    .. tostring(generation) .. ", observed " .. tostring(observed) .. ")"
  return hs
end

local accepted = condition(status, "Accepted")
if accepted ~= nil and accepted.status == "False" then
  hs.status = "Degraded"
  hs.message = "Invalid spec: " .. text(accepted.message, text(accepted.reason, "not accepted"))
  return hs
end

local phase = status.phase
if phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = "Succeeded: " .. text(status.message, "the database is restored and the app is back")
  return hs
end

if phase == "Failed" then
  hs.status = "Degraded"
  local why = text(status.message, "")
  local failed = step_in(status, "Failed")
  if why == "" and failed ~= nil then
    why = text(failed.name, "?") .. " failed: " .. text(failed.message, "no reason given")
  end
  hs.message = "Failed: " .. text(why, "the restore failed")
  return hs
end

hs.status = "Progressing"
if phase == nil then
  hs.message = "Waiting for the operator to start the restore"
  return hs
end
local running = step_in(status, "Running")
local doing = text(status.message, "")
if doing == "" and running ~= nil then
  doing = "step " .. text(running.name, "?") .. " running"
end
if doing == "" then
  hs.message = phase
else
  hs.message = phase .. ": " .. doing
end
return hs
