-- Argo CD resource actions for a ModelDeployment: each sets one of the operator's control annotations
-- (modeldeploy.io/promote|abort act once and are removed by the operator; modeldeploy.io/pause holds the
-- canary until removed). Actions that would do nothing are shown disabled.
local actions = {}
local phase = nil
if type(obj.status) == "table" then
  phase = obj.status.phase
end
local annotations = obj.metadata.annotations or {}
local paused = annotations["modeldeploy.io/pause"] == "true"
local canary_running = phase == "Canary" or phase == "Paused"

actions["promote"] = {
  ["disabled"] = not canary_running,
  ["iconClass"] = "fa fa-fw fa-forward",
  ["displayName"] = "Promote canary now",
}
actions["abort"] = {
  ["disabled"] = not canary_running,
  ["iconClass"] = "fa fa-fw fa-undo",
  ["displayName"] = "Abort canary (roll back)",
}
actions["pause"] = {
  ["disabled"] = paused or not canary_running,
  ["iconClass"] = "fa fa-fw fa-pause",
  ["displayName"] = "Pause canary",
}
actions["resume"] = {
  ["disabled"] = not paused,
  ["iconClass"] = "fa fa-fw fa-play",
  ["displayName"] = "Resume canary",
}
return actions
