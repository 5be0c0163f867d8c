-- Argo CD health of a modeldeploy.io/v1alpha1 ModelDeployment (Argo CD runs it in gopher-lua, Lua 5.1;
-- only the base library is used). `obj` is the live object; the phases and conditions are the operator's
-- (docs/architecture.md: Phases, conditions, annotations).
local hs = {}

local function find_condition(status, condition_type)
  if type(status.conditions) ~= "table" then
    return nil
  end
  for _, condition in ipairs(status.conditions) do
    if condition.type == condition_type then
      return condition
    end
  end
  return nil
end

-- The condition's message when it has one, else the fallback.
local function message_of(condition, fallback)
  if condition ~= nil and type(condition.message) == "string" and condition.message ~= "" then
    return condition.message
  end
  return fallback
end

local function revision_text(revision)
  if revision == nil or revision == "" then
    return "(none)"
  end
  return tostring(revision)
end

local status = obj.status
local generation = obj.metadata.generation

if type(status) ~= "table" or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the modeldeploy operator to accept the ModelDeployment"
  return hs
end

-- A status written for an older spec says nothing about the current one.
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local phase = status.phase
local ready = find_condition(status, "Ready")
local degraded = find_condition(status, "Degraded")

if phase == "Failed" then
  hs.status = "Degraded"
  hs.message = message_of(ready, message_of(degraded, "No revision can serve"))
  return hs
end

-- The phase decides: a Degraded condition left from an earlier rollback must not hide a new revision
-- that is optimizing or in canary. In phase Ready a True Degraded condition still counts.
local degraded_now = degraded ~= nil and degraded.status == "True"
if phase == "Degraded" or (phase == "Ready" and degraded_now) then
  hs.status = "Degraded"
  local fallback = "Newest revision failed; stable revision " .. revision_text(status.stableRevision) .. " serves"
  if type(status.lastRollback) == "table" and status.lastRollback.revision ~= nil then
    fallback = "Revision " .. tostring(status.lastRollback.revision) .. " rolled back: "
      .. tostring(status.lastRollback.reason or "no reason recorded")
  end
  hs.message = message_of(degraded, fallback)
  return hs
end

if phase == "Paused" then
  hs.status = "Suspended"
  hs.message = "Canary " .. revision_text(status.canaryRevision) .. " paused at weight "
    .. tostring(status.canaryWeight or 0) .. "% (remove the modeldeploy.io/pause annotation to resume)"
  return hs
end

if phase == "Canary" then
  hs.status = "Progressing"
  hs.message = "Canary " .. revision_text(status.canaryRevision) .. " at weight "
    .. tostring(status.canaryWeight or 0) .. "%, stable " .. revision_text(status.stableRevision)
  return hs
end

if phase == "Optimizing" then
  local revision = status.canaryRevision
  if type(status.optimization) == "table" and status.optimization.revision ~= nil then
    revision = status.optimization.revision
  end
  hs.status = "Progressing"
  hs.message = "Optimizing revision " .. revision_text(revision)
  return hs
end

if phase == "Pending" or phase == "Deploying" then
  hs.status = "Progressing"
  hs.message = message_of(find_condition(status, "Progressing"), phase)
  return hs
end

if phase == "Ready" then
  local current = ready ~= nil and ready.status == "True"
    and (generation == nil or ready.observedGeneration == nil or ready.observedGeneration >= generation)
  if current then
    hs.status = "Healthy"
    hs.message = "Serving revision " .. revision_text(status.stableRevision)
  else
    hs.status = "Progressing"
    hs.message = message_of(ready, "Waiting for the Ready condition of generation " .. tostring(generation))
  end
  return hs
end

hs.status = "Unknown"
hs.message = "Unknown phase " .. tostring(phase)
return hs
