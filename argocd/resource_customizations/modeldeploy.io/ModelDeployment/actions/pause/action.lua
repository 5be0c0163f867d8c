-- Set modeldeploy.io/pause=true on the ModelDeployment; the operator acts on it at its next reconcile:
-- the canary holds its weight until the annotation is removed (action "resume").
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["modeldeploy.io/pause"] = "true"
return obj
