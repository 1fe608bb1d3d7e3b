-- Argo CD health check for chatops.dev/ChatBackup.
--
-- Argo CD runs it with the resource in the global `obj`, in gopher-lua (Lua 5.1) with only
-- the base, table and os libraries loaded: no string or math library here.
--
-- Judged on the latest run, as Argo CD judges a CronJob on its last Job:
--   last run Failed                -> Degraded    (even when suspended: the data is not safe)
--   last run Running               -> Progressing
--   spec.suspend                   -> Suspended
--   one-off backup not started yet -> Progressing
--   otherwise                      -> Healthy
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

local function last_good(status)
  if status.lastSuccessfulTime == nil then
    return "no backup has succeeded yet"
  end
  return "last good backup at " .. tostring(status.lastSuccessfulTime)
end

local function next_run(status)
  if status.nextScheduleTime == nil then
    return ""
  end
  return "; next run at " .. tostring(status.nextScheduleTime)
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

local last = status.lastBackup
if last ~= nil and last.result == "Failed" then
  hs.status = "Degraded"
  hs.message = "Backup " .. text(last.id, "?") .. " failed: " .. text(last.message, "no reason given")
    .. "; " .. last_good(status)
  return hs
end

if last ~= nil and last.result == "Running" then
  hs.status = "Progressing"
  hs.message = "Backup " .. text(last.id, "?") .. " running"
  if last.startedAt ~= nil then
    hs.message = hs.message .. " since " .. tostring(last.startedAt)
  end
  if last.message ~= nil and last.message ~= "" then
    hs.message = hs.message .. ": " .. tostring(last.message)
  end
  return hs
end

local spec = obj.spec or {}
if spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "Schedule suspended; " .. last_good(status)
  return hs
end

if last == nil then
  if spec.schedule == nil or spec.schedule == "" then
    hs.status = "Progressing"
    hs.message = "Waiting for the one-off backup to start"
  else
    hs.status = "Healthy"
    hs.message = "No backup has run yet" .. next_run(status)
  end
  return hs
end

hs.status = "Healthy"
hs.message = "Backup " .. text(last.id, "?") .. " succeeded"
if last.documents ~= nil and last.size ~= nil then
  hs.message = hs.message .. ": " .. tostring(last.documents) .. " documents, "
    .. tostring(last.size) .. " bytes"
end
hs.message = hs.message .. next_run(status)
return hs
