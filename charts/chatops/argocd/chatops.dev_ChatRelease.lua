-- Argo CD health check for chatops.dev/ChatRelease.
--
-- Argo CD runs it with the resource in the global `obj`, in gopher-lua (Lua 5.1) with only
-- the base, table and os libraries loaded: no string or math library here.
--
--   Succeeded                      -> Healthy     the new version serves all traffic
--   Progressing, Promoting         -> Progressing a release is moving
--   Paused                         -> Suspended   waiting for `chatops promote` (or abort)
--   Degraded, RolledBack, Failed   -> Degraded    the stable version is down, or the new
--                                                 version was rolled back / never came up
--   status older than the spec     -> Progressing the operator has not looked at it yet
--   condition Accepted=False       -> Degraded    the spec cannot be acted on
--   condition Reconciled=False     -> Degraded    an action the cluster refuses (or an
--                                                 unexpected error) holds the release

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

local HEALTH = {
  Succeeded = "Healthy",
  Progressing = "Progressing",
  Promoting = "Progressing",
  Paused = "Suspended",
  Degraded = "Degraded",
  RolledBack = "Degraded",
  Failed = "Degraded",
}

local DEFAULT_MESSAGE = {
  Succeeded = "the new version serves all traffic",
  Progressing = "a release is in progress",
  Promoting = "the new version is being promoted",
  Paused = "paused: promote with `chatops promote` or roll back with `chatops abort`",
  Degraded = "the stable version is not available",
  RolledBack = "the new version was rolled back",
  Failed = "the release failed",
}

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

local reconciled = condition(status, "Reconciled")
if reconciled ~= nil and reconciled.status == "False" then
  hs.status = "Degraded"
  hs.message = text(reconciled.reason, "ActionFailed") .. ": " .. text(reconciled.message, "an action failed")
  return hs
end

local phase = status.phase
if phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to start the release"
  return hs
end

local health = HEALTH[phase]
if health == nil then
  hs.status = "Unknown"
  hs.message = "Unknown phase " .. tostring(phase) .. ": " .. text(status.message, "no message")
  return hs
end

hs.status = health
hs.message = phase .. ": " .. text(status.message, DEFAULT_MESSAGE[phase])
return hs
