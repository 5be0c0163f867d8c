-- Set modeldeploy.io/abort=true on the ModelDeployment; the operator acts on it at its next reconcile
-- and removes the annotation once done.
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["modeldeploy.io/abort"] = "true"
return obj
